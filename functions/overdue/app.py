"""Overdue call-backs: EventBridge Scheduler (every minute) -> pbxbridge.overdue.handle_check."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.overdue import handle_check

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_check(event, context)
