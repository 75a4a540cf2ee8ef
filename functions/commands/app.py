"""The commands function: Lambda Invoke or IAM-signed POST /commands -> pbxbridge.commands.handle_command."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.commands import handle_command

logger = Logger()
metrics = Metrics()


# log_event=False, not the default: payloads carry clients' phone numbers.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_command(event, context)
