"""The PBX's webhook: API Gateway HTTP API -> pbxbridge.webhook.handle_push."""

from __future__ import annotations

import gc

# Init creates ~115,000 objects that live as long as the container (modules, models, clients) and
# almost no garbage (~800 objects). With the cyclic GC on, it scans them again and again while they
# are created: about 60 ms of a cold start's CPU, for nothing. Off during init; frozen after it, so
# later collections skip them too (the little garbage init made is kept, not collected).
gc.disable()

from typing import TYPE_CHECKING, Any  # noqa: E402

from aws_lambda_powertools import Logger, Metrics  # noqa: E402

from pbxbridge.webhook import handle_push, prepare  # noqa: E402

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
metrics = Metrics()
# At init, not on the first push: settings, the one boto3 Session and its clients, the models. No
# request is made (with SnapStart, nothing fetched or connected is kept in the snapshot).
prepare()
gc.freeze()
gc.enable()


# log_event=False, not the default: POWERTOOLS_LOGGER_LOG_EVENT would log bodies, and they carry the key.
# The event is read as the plain dict it is: Powertools' data classes cost the cold start ~20 ms.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_push(event)
