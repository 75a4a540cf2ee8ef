"""The PBX client: one class speaking `https://<tenant>/sys/crm_api.wcgp`.

Commands that are safe to repeat are retried with backoff (connect, read and 5xx). `makeCall` is
retried only when the connection failed before the request was sent: a click-to-call must never
dial the client twice. Redirects are not followed: live PBXs answer 301 for a wrong tenant.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pbxbridge.pbx.errors import (
    PbxError,
    PbxInvalidParametersError,
    PbxInvalidTokenError,
    PbxUnavailableError,
    PbxWrongTenantError,
)
from pbxbridge.pbx.models import (
    HistoryPeriod,
    HistoryRow,
    HistoryType,
    MakeCallResult,
    PbxAccount,
    PbxGroup,
    RejectedHistoryRow,
)
from pbxbridge.phones import Phone, normalize_phone

API_PATH = "/sys/crm_api.wcgp"
_RETRY_STATUSES = (500, 502, 503, 504)


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


def _session(retry: Retry) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class PbxClient:
    """Typed access to the eight PBX commands."""

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
        parts = urlsplit(self.url)
        self.where = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
        self._token = token
        self._region = region
        self._timeout = (connect_timeout, read_timeout)
        self._history_timeout = (connect_timeout, history_read_timeout)
        post = frozenset({"POST"})
        self._safe = _session(
            Retry(
                total=retries,
                connect=retries,
                read=retries,
                status=retries,
                other=0,
                backoff_factor=backoff,
                status_forcelist=_RETRY_STATUSES,
                allowed_methods=post,
                raise_on_status=False,
                redirect=0,
            )
        )
        # makeCall: only a connection that never opened is tried again.
        self._dial = _session(
            Retry(
                total=retries,
                connect=retries,
                read=0,
                status=0,
                other=0,
                backoff_factor=backoff,
                allowed_methods=post,
                raise_on_status=False,
                redirect=0,
            )
        )

    def close(self) -> None:
        self._safe.close()
        self._dial.close()

    def __enter__(self) -> PbxClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Transport

    def _post(
        self,
        cmd: str,
        params: Mapping[str, str | None],
        *,
        dial: bool = False,
        stream: bool = False,
    ) -> requests.Response:
        form = {"cmd": cmd, **{k: v for k, v in params.items() if v is not None}, "token": self._token}
        session = self._dial if dial else self._safe
        try:
            response = session.post(
                self.url,
                data=form,
                timeout=self._history_timeout if stream else self._timeout,
                allow_redirects=False,
                stream=stream,
            )
        except requests.ConnectTimeout as exc:
            raise self._unavailable("the PBX did not accept a connection in time", request_sent=False) from exc
        except requests.ConnectionError as exc:
            # After retries, requests reports a read timeout as a ConnectionError too.
            what = "did not answer in time" if "ReadTimeout" in repr(exc) else "connection failed"
            raise self._unavailable(f"the PBX {what}", request_sent=not _never_connected(exc)) from exc
        except requests.Timeout as exc:
            raise self._unavailable("the PBX did not answer in time") from exc
        except requests.RequestException as exc:
            raise self._unavailable(f"the request to the PBX failed ({type(exc).__name__})") from exc
        if response.status_code >= 300:
            self._raise_for(response)
        return response

    def _unavailable(
        self, message: str, *, status: int | None = None, request_sent: bool = True
    ) -> PbxUnavailableError:
        """The error, naming the PBX it is about: a wrong PBX_URL is the first thing to rule out."""
        return PbxUnavailableError(f"{message} ({self.where})", status=status, request_sent=request_sent)

    def _raise_for(self, response: requests.Response) -> None:
        status = response.status_code
        message = self._message(response)
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            raise PbxWrongTenantError(f"the PBX redirects ({status} {where}): wrong tenant domain?", status=status)
        if status == 401:
            raise PbxInvalidTokenError(message or "Invalid token", status=status)
        if status == 400:
            raise PbxInvalidParametersError(message or "Invalid parameters", status=status)
        if status >= 500:
            raise self._unavailable(message or f"the PBX answered {status}", status=status)
        raise PbxError(message or f"the PBX answered {status}", status=status)

    def _message(self, response: requests.Response) -> str:
        """The PBX's own error message (its JSON `error`, or a short text), with our key masked."""
        text = response.text[:500]
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        message = str(data.get("error", "")) if isinstance(data, dict) else ""
        if not message and "<html" not in text.lower():
            message = text.strip()
        return message.replace(self._token, "***") if self._token else message

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._unavailable(
                "the PBX answered something that is not JSON", status=response.status_code
            ) from None

    def _phone(self, phone: Phone | str) -> str:
        # Some tenants reject a leading `+`: digits only.
        return (phone if isinstance(phone, Phone) else normalize_phone(phone, self._region)).digits

    # Commands

    def accounts(self) -> list[PbxAccount]:
        data = self._json(self._post("accounts", {}))
        return [PbxAccount.model_validate(item) for item in _list(data)]

    def groups(self, user: str | None = None) -> list[PbxGroup]:
        data = self._json(self._post("groups", {"user": user}))
        return [PbxGroup.model_validate(item) for item in _list(data)]

    def make_call(self, phone: Phone | str, user: str, clid: str | None = None) -> MakeCallResult:
        response = self._post("makeCall", {"phone": self._phone(phone), "user": user, "clid": clid}, dial=True)
        if "html" in response.headers.get("Content-Type", "").lower():
            # A gateway's page, not the PBX's answer: whether it dialled is unknown.
            raise self._unavailable("the PBX answered an HTML page, not a call id", status=response.status_code)
        return _make_call_result(response.text)

    def subscribe_on_calls(self, user: str, on: bool, group_id: str | None = None) -> None:
        response = self._post("subscribeOnCalls", {"user": user, "group_id": group_id, "status": "on" if on else "off"})
        text = response.text.strip()
        if text.strip('"').upper() != "OK":
            # A JSON answer is tolerated too; anything else is not the PBX we know.
            data = _maybe_json(text)
            if not isinstance(data, dict) or "error" in data:
                raise PbxUnavailableError(f"unexpected subscribeOnCalls answer: {text[:100]!r}")

    def subscription_status(self, user: str, group_id: str) -> bool:
        data = self._json(self._post("subscriptionStatus", {"user": user, "group_id": group_id}))
        return _switch(data, "status")

    def set_dnd(self, user: str, state: bool) -> None:
        self._post("set_dnd", {"user": user, "state": "true" if state else "false"})

    def get_dnd(self, user: str) -> bool:
        return _switch(self._json(self._post("get_dnd", {"user": user})), "state")

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
            lines = _lines(response.iter_content(chunk_size=64 * 1024))
            try:
                yield from parse_history_csv(lines)
            except (requests.RequestException, OSError) as exc:
                raise self._unavailable(f"the history stream broke ({type(exc).__name__})") from exc
        finally:
            response.close()


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Lines of a byte stream ending in LF or CRLF. Not requests' iter_lines: it splits a CRLF that
    straddles two chunks into two line ends, which shifts every later line number by one."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", "replace")


def _never_connected(exc: requests.ConnectionError) -> bool:
    text = repr(exc)
    return "NewConnectionError" in text or "Failed to establish a new connection" in text or "ConnectTimeout" in text


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise PbxUnavailableError("the PBX answered an object where a list was due")
    return data


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _switch(data: Any, key: str) -> bool:
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "true", "off", "false"):
        return value.lower() in ("on", "true")
    raise PbxUnavailableError(f"the PBX's answer has no {key!r}")


def _make_call_result(text: str) -> MakeCallResult:
    """`makeCall` answers plain text, `{"uuid": ...}`, `{"CallID": ...}` or an object with neither."""
    body = text.strip()
    data = _maybe_json(body)
    if isinstance(data, dict):
        for key in ("uuid", "CallID", "callid", "call_id", "id"):
            if data.get(key):
                return MakeCallResult(call_id=str(data[key]), id_known=True, raw=data)
        return MakeCallResult(call_id=None, id_known=False, raw=data)
    if isinstance(data, str | int) and str(data):
        return MakeCallResult(call_id=str(data), id_known=True, raw=data)
    if body and data is None and len(body) <= 200 and "<" not in body:
        return MakeCallResult(call_id=body, id_known=True, raw=body)
    return MakeCallResult(call_id=None, id_known=False, raw=body or None)


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
