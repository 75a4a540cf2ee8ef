"""History reconciliation: EventBridge Scheduler (or a backfill invoke) -> pbxbridge.history_sync.handle_sync."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.history_sync import handle_sync

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True, log_event=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sync(event, context)
