"""The widget's own API (token-authorized HTTP API routes) -> pbxbridge.widget.api.handle_widget_api."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.widget.api import handle_widget_api

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return handle_widget_api(event, context)
