"""The calls' change stream -> the live card in the widgets (pbxbridge.widget.push.handle_card_stream)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.widget.push import handle_card_stream

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_card_stream(event, context)
