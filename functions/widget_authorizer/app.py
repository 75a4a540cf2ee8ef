"""The widget token's authorizer (WebSocket $connect and the widget's HTTP API) -> pbxbridge.widget.socket.authorize."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.widget.socket import authorize

logger = Logger()
metrics = Metrics()


# log_event=False: the event carries the token.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event)
