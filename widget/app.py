"""The widget's page and assets (this folder) -> pbxbridge.widget.page.serve_page."""

from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.widget.page import serve_page

logger = Logger()
metrics = Metrics()
ROOT = Path(__file__).resolve().parent


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return serve_page(event, ROOT)
