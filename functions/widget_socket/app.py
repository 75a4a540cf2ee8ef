"""The widget's WebSocket API ($connect, $disconnect, $default) -> pbxbridge.widget.socket.handle_socket."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.widget.socket import handle_socket

logger = Logger()
metrics = Metrics()


# log_event=False: the $connect event carries the token in its query string.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_socket(event)
