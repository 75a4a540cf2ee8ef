"""The PBX's webhook: API Gateway HTTP API -> pbxbridge.webhook.handle_push."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from pbxbridge.webhook import handle_push, prepare

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
metrics = Metrics()
# At init, not on the first push: settings, the one boto3 Session and its clients, the models. No
# request is made (with SnapStart, nothing fetched or connected is kept in the snapshot).
prepare()


# log_event=False, not the default: POWERTOOLS_LOGGER_LOG_EVENT would log bodies, and they carry the key.
# The event is read as the plain dict it is: Powertools' data classes cost the cold start ~20 ms.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_push(event)
