"""Which of the PBX's two CRM APIs to command it through, and the client for it.

`PBX_API` is `legacy`, `v1` or `auto`. `auto` reads the URL: one ending in `/crmapi/v1` is v1, one
ending in `/sys/crm_api.wcgp` is legacy; a bare `https://<tenant>` is asked once per process with a
read that can never dial (`GET /crmapi/v1/users?limit=1`): a 404, 405, 501 or an HTML page means the
tenant has no v1 (legacy), a JSON answer means v1. The verdict is logged and kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from pbxbridge.pbx.client import API_PATH as LEGACY_PATH
from pbxbridge.pbx.client import LegacyPbxClient
from pbxbridge.pbx.errors import PbxUnavailableError
from pbxbridge.pbx.models import (
    CallerId,
    HistoryPeriod,
    HistoryRow,
    HistoryType,
    MakeCallResult,
    PbxAccount,
    PbxApiKind,
    PbxGroup,
    RejectedHistoryRow,
)
from pbxbridge.pbx.transport import PbxHttp, is_html, public_address
from pbxbridge.pbx.v1 import API_ROOT, V1PbxClient, v1_url
from pbxbridge.phones import Phone

log = logging.getLogger(__name__)


class PbxApi(Protocol):
    """What a PBX client does, whichever API it speaks (LegacyPbxClient and V1PbxClient are two)."""

    url: str

    def accounts(self) -> list[PbxAccount]: ...
    def groups(self, user: str | None = None) -> list[PbxGroup]: ...
    def make_call(self, phone: Phone | str, user: str, clid: str | None = None) -> MakeCallResult: ...
    def subscribe_on_calls(self, user: str, on: bool, group_id: str | None = None) -> None: ...
    def subscription_status(self, user: str, group_id: str) -> bool: ...
    def set_dnd(self, user: str, state: bool) -> None: ...
    def get_dnd(self, user: str) -> bool: ...
    def list_caller_ids(self) -> list[CallerId]: ...
    def history(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        period: HistoryPeriod | None = None,
        call_type: HistoryType = HistoryType.ALL,
        limit: int | None = None,
    ) -> Iterator[HistoryRow | RejectedHistoryRow]: ...
    def close(self) -> None: ...


def api_from_url(url: str) -> PbxApiKind | None:
    """The API a URL names by its path; None for a bare tenant address (or any other path)."""
    path = urlsplit(url.strip()).path.rstrip("/")
    if path.endswith(API_ROOT):
        return PbxApiKind.V1
    if path.endswith(LEGACY_PATH):
        return PbxApiKind.LEGACY
    return None


_verdicts: dict[str, PbxApiKind] = {}
_verdicts_lock = threading.Lock()


def detect_api(url: str, key: str, *, connect_timeout: float = 3.05, read_timeout: float = 10.0) -> PbxApiKind:
    """Which API the tenant at `url` speaks: from its path, or asked of it once per process.

    Raises PbxError when the PBX cannot say (unreachable, 5xx, a redirect): nothing is kept then, so
    the next command asks again.
    """
    named = api_from_url(url)
    if named is not None:
        return named
    root = v1_url(url)
    with _verdicts_lock:
        known = _verdicts.get(root)
    if known is not None:
        return known
    try:
        verdict = _probe(root, key, connect_timeout=connect_timeout, read_timeout=read_timeout)
    except PbxUnavailableError as exc:
        # The probe is a read: whatever became of it, nothing was dialled (a makeCall may be retried).
        raise PbxUnavailableError(exc.message, status=exc.status, request_sent=False) from None
    with _verdicts_lock:
        _verdicts[root] = verdict
    log.info("the PBX's API detected", extra={"pbx": public_address(root), "pbx_api": verdict.value})
    return verdict


def forget_detected() -> None:
    """Forget every verdict (tests; a process whose PBX changed API)."""
    with _verdicts_lock:
        _verdicts.clear()


def _probe(root: str, key: str, *, connect_timeout: float, read_timeout: float) -> PbxApiKind:
    http = PbxHttp(
        public_address(root),
        key,
        safe_methods=("GET",),
        headers={"X-API-KEY": key, "Accept": "application/json"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries=1,
    )
    try:
        # A read of one user: it can never dial, whatever the tenant makes of it.
        response = http.send("GET", root + "/users", params={"limit": "1"}, ok=range(300, 600))
        status = response.status_code
        if status in (404, 405, 501):
            return PbxApiKind.LEGACY
        if 300 <= status < 400 or status >= 500:
            # A wrong tenant, or a PBX (or its gateway's HTML page) that is down: undecided.
            http.raise_for(response)
        if is_html(response):
            return PbxApiKind.LEGACY  # a web server's page where an API would answer JSON
        return PbxApiKind.V1  # an API's JSON: the list, or its 401/403 for our key
    finally:
        http.close()


def make_client(
    url: str,
    key: str,
    api: PbxApiKind | str = PbxApiKind.AUTO,
    *,
    region: str = "RU",
    connect_timeout: float = 3.05,
    read_timeout: float = 10.0,
    history_read_timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 0.3,
) -> LegacyPbxClient | V1PbxClient:
    """The client for `api` (`auto`: detected, see `detect_api`)."""
    kind = PbxApiKind(api)
    if kind is PbxApiKind.AUTO:
        kind = detect_api(url, key, connect_timeout=connect_timeout, read_timeout=read_timeout)
    client = V1PbxClient if kind is PbxApiKind.V1 else LegacyPbxClient
    return client(
        url,
        key,
        region=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        history_read_timeout=history_read_timeout,
        retries=retries,
        backoff=backoff,
    )


__all__ = ["PbxApi", "api_from_url", "detect_api", "forget_detected", "make_client"]
