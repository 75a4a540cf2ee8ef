"""The tables' change streams -> pbxbridge.stream.handle_stream (call events, recordings to fetch)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.stream import handle_stream

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_stream(event, context)
