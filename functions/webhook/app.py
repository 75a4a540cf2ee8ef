"""The PBX's webhook: API Gateway HTTP API -> pbxbridge.webhook.handle_push."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from pbxbridge.webhook import handle_push

logger = Logger()
metrics = Metrics()


# log_event=False, not the default: POWERTOOLS_LOGGER_LOG_EVENT would log bodies, and they carry the key.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=APIGatewayProxyEventV2)
def lambda_handler(event: APIGatewayProxyEventV2, context: LambdaContext) -> dict[str, Any]:
    return handle_push(event)
