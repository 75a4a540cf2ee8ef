"""The legacy PBX client: `https://<tenant>/sys/crm_api.wcgp`, form posts with `cmd` and `token`.

Commands that are safe to repeat are retried with backoff (connect, read and 5xx). `makeCall` is
retried only when the connection failed before the request was sent: a click-to-call must never
dial the client twice. Redirects are not followed: live PBXs answer 301 for a wrong tenant. The
sessions, timeouts and error mapping are the ones the v1 client uses too (`pbx/transport.py`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from pbxbridge.pbx.errors import PbxUnavailableError, PbxUnsupportedError
from pbxbridge.pbx.models import (
    CallerId,
    HistoryPeriod,
    HistoryRow,
    HistoryType,
    MakeCallResult,
    PbxAccount,
    PbxGroup,
    RejectedHistoryRow,
)
from pbxbridge.pbx.transport import (
    PbxClientBase,
    PbxHttp,
    byte_lines,
    is_html,
    make_call_result,
    maybe_json,
    public_address,
    read_switch,
)
from pbxbridge.phones import Phone, normalize_phone

API_PATH = "/sys/crm_api.wcgp"


def api_url(base: str) -> str:
    """`https://tenant.example.ru` or the full API URL -> the full API URL."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the PBX URL must be http(s)://host[/sys/crm_api.wcgp]")
    path = parts.path.rstrip("/") or API_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


def compact_utc(moment: datetime) -> str:
    """The API's time format: `YYYYmmddTHHMMSSZ` in UTC (naive times are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def phone_digits(phone: Phone | str, region: str) -> str:
    # Some tenants reject a leading `+`: digits only (both APIs).
    return (phone if isinstance(phone, Phone) else normalize_phone(phone, region)).digits


class LegacyPbxClient(PbxClientBase):
    """Typed access to the eight commands of `/sys/crm_api.wcgp`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        region: str = "RU",
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        history_read_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.3,
    ) -> None:
        self.url = api_url(base_url)
        # What error messages name: the address without any user:password part (the key is in the body).
        self.where = public_address(self.url)
        self._token = token
        self._region = region
        self._http = PbxHttp(
            self.where,
            token,
            safe_methods=("POST",),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            slow_read_timeout=history_read_timeout,
            retries=retries,
            backoff=backoff,
        )

    def _post(
        self,
        cmd: str,
        params: Mapping[str, str | None],
        *,
        dial: bool = False,
        stream: bool = False,
    ) -> requests.Response:
        form = {"cmd": cmd, **{k: v for k, v in params.items() if v is not None}, "token": self._token}
        return self._http.send("POST", self.url, data=form, dial=dial, slow=stream, stream=stream)

    def _json(self, response: requests.Response) -> Any:
        return self._http.json(response)

    # Commands

    def accounts(self) -> list[PbxAccount]:
        data = self._json(self._post("accounts", {}))
        return [PbxAccount.model_validate(item) for item in _list(data)]

    def groups(self, user: str | None = None) -> list[PbxGroup]:
        data = self._json(self._post("groups", {"user": user}))
        return [PbxGroup.model_validate(item) for item in _list(data)]

    def make_call(self, phone: Phone | str, user: str, clid: str | None = None) -> MakeCallResult:
        digits = phone_digits(phone, self._region)
        response = self._post("makeCall", {"phone": digits, "user": user, "clid": clid}, dial=True)
        if is_html(response, body=False):
            # A gateway's page, not the PBX's answer: whether it dialled is unknown.
            raise self._http.unavailable("the PBX answered an HTML page, not a call id", status=response.status_code)
        return make_call_result(response.text)

    def subscribe_on_calls(self, user: str, on: bool, group_id: str | None = None) -> None:
        response = self._post("subscribeOnCalls", {"user": user, "group_id": group_id, "status": "on" if on else "off"})
        text = response.text.strip()
        if text.strip('"').upper() != "OK":
            # A JSON answer is tolerated too; anything else is not the PBX we know.
            data = maybe_json(text)
            if not isinstance(data, dict) or "error" in data:
                raise PbxUnavailableError(f"unexpected subscribeOnCalls answer: {text[:100]!r}")

    def subscription_status(self, user: str, group_id: str) -> bool:
        data = self._json(self._post("subscriptionStatus", {"user": user, "group_id": group_id}))
        return read_switch(data, "status")

    def set_dnd(self, user: str, state: bool) -> None:
        self._post("set_dnd", {"user": user, "state": "true" if state else "false"})

    def list_caller_ids(self) -> list[CallerId]:
        raise PbxUnsupportedError(
            f"the PBX's legacy API has no list of caller ids; it needs crmapi/v1 (PbxApi v1, or auto) ({self.where})"
        )

    def get_dnd(self, user: str) -> bool:
        return read_switch(self._json(self._post("get_dnd", {"user": user})), "state")

    def history(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        period: HistoryPeriod | None = None,
        call_type: HistoryType = HistoryType.ALL,
        limit: int | None = None,
    ) -> Iterator[HistoryRow | RejectedHistoryRow]:
        """The PBX's call history, streamed row by row (the CSV is never held whole).

        `period` wins over `start`/`end`, as on the PBX. `limit` caps the rows and there is no offset:
        to walk a long range, ask for it in windows.
        """
        params = {
            "period": period.value if period else None,
            "start": compact_utc(start) if start and not period else None,
            "end": compact_utc(end) if end and not period else None,
            "type": call_type.value,
            "limit": str(limit) if limit is not None else None,
        }
        response = self._post("history", params, stream=True)
        try:
            # Streamed line by line: memory stays flat however long the history is (fields are never
            # quoted across lines). The PBX writes UTF-8 whatever it declares.
            lines = byte_lines(response.iter_content(chunk_size=64 * 1024))
            try:
                yield from parse_history_csv(lines)
            except (requests.RequestException, OSError) as exc:
                raise self._http.unavailable(f"the history stream broke ({type(exc).__name__})") from exc
        finally:
            response.close()


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise PbxUnavailableError("the PBX answered an object where a list was due")
    return data


def parse_history_csv(source: Any) -> Iterator[HistoryRow | RejectedHistoryRow]:
    """Rows of the history CSV (no header, CRLF, ISO 8601 `start`, optional 10th column)."""
    for line, fields in enumerate(csv.reader(source), start=1):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) not in (9, 10):
            yield RejectedHistoryRow(line=line, reason=f"{len(fields)} columns, 9 or 10 expected")
            continue
        uid, kind, client, account, via, start, wait, duration, record = (f.strip() for f in fields[:9])
        try:
            started = datetime.fromisoformat(start)
        except ValueError:
            yield RejectedHistoryRow(line=line, reason=f"start {start[:40]!r} is not ISO 8601")
            continue
        if started.tzinfo is None:
            yield RejectedHistoryRow(line=line, reason="start has no UTC offset")
            continue
        if not (wait or "0").isdecimal() or not (duration or "0").isdecimal():
            yield RejectedHistoryRow(line=line, reason="wait and duration must be whole seconds")
            continue
        if not uid:
            yield RejectedHistoryRow(line=line, reason="no UID")
            continue
        rating = fields[9].strip() if len(fields) == 10 else ""
        # Checked above, field by field: constructing without a second validation keeps 100k rows fast.
        yield HistoryRow.model_construct(
            uid=uid,
            type=kind.lower(),
            client=client,
            account=account,
            via=via,
            start=started.astimezone(UTC),
            wait=int(wait or 0),
            duration=int(duration or 0),
            record=record or None,
            rating=rating or None,
            line=line,
        )


# The name the rest of pbxbridge has always used for the legacy client.
PbxClient = LegacyPbxClient
