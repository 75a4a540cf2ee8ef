"""The v1 PBX client: `https://<tenant>/crmapi/v1`, JSON with an `X-API-KEY` header, paged lists.

It has the legacy client's interface and keeps its promises (the same errors, `makecall` never sent
twice once it may have reached the PBX), so whatever is built on a PBX client works on either API.
What differs on the wire stays here: paging, the v1 history (JSON, or CSV where the tenant answers
`501` for JSON), and the switches whose v1 meaning is the inverse of ours (`_DND`, below).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from pbxbridge.pbx.client import compact_utc, phone_digits
from pbxbridge.pbx.errors import (
    PbxError,
    PbxIntegrationDisabledError,
    PbxInvalidParametersError,
    PbxInvalidTokenError,
    PbxKeyMisplacedError,
    PbxPagingError,
    PbxUnavailableError,
)
from pbxbridge.pbx.models import (
    CallerId,
    HistoryPeriod,
    HistoryRow,
    HistoryType,
    MakeCallResult,
    PbxAccount,
    PbxGroup,
    RejectedHistoryRow,
    V1HistoryRow,
)
from pbxbridge.pbx.transport import (
    PbxClientBase,
    PbxHttp,
    byte_lines,
    is_html,
    make_call_result,
    public_address,
    read_switch,
)
from pbxbridge.phones import Phone

log = logging.getLogger(__name__)

API_ROOT = "/crmapi/v1"
LEGACY_PATH = "/sys/crm_api.wcgp"
PAGE_SIZE = 100
# A list longer than this many pages is a server whose paging never ends, not a directory.
MAX_PAGES = 100
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def v1_url(base: str) -> str:
    """`https://tenant`, `https://tenant/crmapi/v1` or even the legacy API's URL -> the v1 root."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("the PBX URL must be http(s)://host[/crmapi/v1]")
    path = parts.path.rstrip("/")
    if path.endswith(LEGACY_PATH):
        path = path.removesuffix(LEGACY_PATH)
    if not path.endswith(API_ROOT):
        path += API_ROOT
    return f"{parts.scheme}://{parts.netloc}{path}"


def looks_like_api_key(key: str) -> bool:
    """v1 API keys are UUIDs issued in the PBX cabinet; our crm_token (hex from `openssl rand`) is not."""
    return bool(_UUID.match(key.strip()))


@dataclass(frozen=True)
class _Switch:
    """A per-user on/off resource of v1 (`GET` its state, `POST` or `DELETE` to switch it), read in our
    terms. The one place where v1's meaning is turned into ours: `post_means` is the value, in our
    words, that `POST` sets and that `state: true` reports."""

    resource: str
    post_means: bool

    def method_for(self, ours: bool) -> str:
        return "POST" if ours == self.post_means else "DELETE"

    def ours(self, state: bool) -> bool:
        return state == self.post_means


# Ours: `True` = DND is on. v1: `POST` makes the user available and `state: true` means available.
_DND = _Switch("dnd", post_means=False)
# Ours: `True` = the user takes the group's calls. v1: `POST` switches receiving them on.
_SUBSCRIPTION = _Switch("subscription", post_means=True)


class V1PbxClient(PbxClientBase):
    """Typed access to the PBX through `crmapi/v1`, with the legacy client's methods and results."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        region: str = "RU",
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        history_read_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.3,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.url = v1_url(base_url)
        self.where = public_address(self.url)
        self._key = key
        self._region = region
        self._page_size = page_size
        self._max_pages = max_pages
        # Set on the first 501 for `/history/json`: this tenant serves the CSV only.
        self._history_csv = False
        self._http = PbxHttp(
            self.where,
            key,
            # Reads, and the switches (setting a state twice leaves it set): all safe to repeat.
            safe_methods=("GET", "POST", "DELETE"),
            headers={"X-API-KEY": key, "Accept": "application/json"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            slow_read_timeout=history_read_timeout,
            retries=retries,
            backoff=backoff,
        )

    # Transport

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | None] | None = None,
        body: Mapping[str, Any] | None = None,
        dial: bool = False,
        slow: bool = False,
        stream: bool = False,
        ok: tuple[int, ...] = (),
        accept: str | None = None,
    ) -> requests.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            return self._http.send(
                method,
                self.url + path,
                params=query or None,
                json=dict(body) if body is not None else None,
                dial=dial,
                slow=slow,
                stream=stream,
                ok=ok,
                headers={"Accept": accept} if accept else None,
            )
        except PbxIntegrationDisabledError:
            raise
        except PbxInvalidTokenError as exc:
            if looks_like_api_key(self._key):
                raise
            raise PbxKeyMisplacedError(
                "the PBX refused the API key, and what is stored as the key is not one: v1 API keys are "
                "UUIDs (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) issued in the PBX cabinet. Put that key in the "
                "PBX key's parameter (PbxTokenParameterName, PBX_TOKEN); the crm_token belongs in "
                "CrmTokenParameterName and in the PBX cabinet's CRM settings, never in its place",
                status=exc.status,
            ) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if is_html(response):
            raise self._http.unavailable("the PBX answered an HTML page, not JSON", status=response.status_code)
        return self._http.json(response)

    def _user_path(self, login: str, *rest: str) -> str:
        return "/".join(["/users", quote(login, safe=""), *rest])

    def _pages(self, path: str, params: Mapping[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged list: `{"items": [...], "info": {"start", "limit", "total"}}`, read until
        `start >= total` or a page comes back empty; a bare JSON list is the whole list."""
        start = 0
        for _ in range(self._max_pages):
            query = {**(params or {}), "start": str(start), "limit": str(self._page_size)}
            data = self._json("GET", path, params=query)
            if isinstance(data, list):
                yield from _objects(data, path)
                return
            items, info = _envelope(data, path)
            yield from _objects(items, path)
            start += len(items)
            total = info.get("total")
            if not items or (isinstance(total, int) and start >= total):
                return
            if not isinstance(total, int) and len(items) < self._page_size:
                return
        raise PbxPagingError(
            f"the PBX's {path} list did not end within {self._max_pages} pages of {self._page_size}; "
            f"stopped there and used none of it ({self.where})"
        )

    def _login(self, user: str) -> str:
        """The login in a user's path. Ours may be `andy@tenant`, an extension or a direct number, as on
        the legacy API; v1 paths take the login, so the others are looked up (`search`)."""
        login = user.split("@", 1)[0].strip()
        digits = login.lstrip("+")
        if not digits.isdecimal():
            return login
        for item in self._json_items("/users", {"search": digits, "limit": str(self._page_size)}):
            if digits in (_digits(item.get("ext")), _digits(item.get("telnum"))) and item.get("login"):
                return str(item["login"])
        return login  # the PBX's own answer (404) says it knows no such user

    def _json_items(self, path: str, params: Mapping[str, str | None]) -> list[dict[str, Any]]:
        data = self._json("GET", path, params=params)
        return list(_objects(data if isinstance(data, list) else _envelope(data, path)[0], path))

    def _for_user(self, user: str, method: str, *rest: str, **kwargs: Any) -> Any:
        """A request about one user; a user the PBX does not know is a bad parameter, as on legacy."""
        login = self._login(user)
        try:
            return self._send(method, self._user_path(login, *rest), **kwargs)
        except PbxError as exc:
            if exc.status == 404:
                raise PbxInvalidParametersError(
                    f"Invalid parameters: [user] (no PBX user {login!r})", status=404
                ) from None
            raise

    # Commands

    def accounts(self) -> list[PbxAccount]:
        return [_account(item) for item in self._pages("/users", {"with": "status"})]

    def groups(self, user: str | None = None) -> list[PbxGroup]:
        if user is None:
            items = list(self._pages("/groups"))
        else:
            response = self._for_user(user, "GET", "groups")
            data = self._http.json(response)
            items = list(_objects(data if isinstance(data, list) else _envelope(data, "groups")[0], "groups"))
        return [_group(item) for item in items]

    def list_caller_ids(self) -> list[CallerId]:
        """The numbers the PBX allows as the caller id of `makecall`."""
        data = self._json("GET", "/caller-ids/telnums")
        items = data if isinstance(data, list) else _envelope(data, "/caller-ids/telnums")[0]
        return [CallerId.model_validate(item) for item in _objects(items, "/caller-ids/telnums")]

    def make_call(self, phone: Phone | str, user: str, clid: str | None = None) -> MakeCallResult:
        digits = phone_digits(phone, self._region)
        try:
            # Everything asked before the dial may fail freely: nothing has rung yet.
            login = self._login(user)
            if clid is not None:
                clid = self._allowed_clid(clid)
        except PbxUnavailableError as exc:
            raise PbxUnavailableError(exc.message, status=exc.status, request_sent=False) from None
        body = {"phone": digits, "user": login, **({"clid": clid} if clid else {})}
        response = self._send("POST", "/makecall", body=body, dial=True)
        if is_html(response, body=False):
            # A gateway's page, not the PBX's answer: whether it dialled is unknown.
            raise self._http.unavailable("the PBX answered an HTML page, not a call id", status=response.status_code)
        result = make_call_result(response.text)
        shown = result.raw.get("clid") if isinstance(result.raw, dict) else None
        if shown is not None:
            shown = str(shown)
            if clid and _digits(shown) != _digits(clid):
                log.warning(
                    "the PBX shows another caller id than the one asked for", extra={"asked": clid, "shown": shown}
                )
            result = result.model_copy(update={"clid": shown})
        return result

    def _allowed_clid(self, clid: str) -> str:
        """The caller id as digits, or a 400 listing the ones the PBX allows (before anything is dialled)."""
        wanted = _digits(clid)
        allowed = [c.telnum for c in self.list_caller_ids() if c.enabled]
        if wanted not in {_digits(number) for number in allowed}:
            listed = ", ".join(allowed) or "none"
            raise PbxInvalidParametersError(
                f"Invalid parameters: [clid] ({clid!r} is not a caller id the PBX allows; allowed: {listed})"
            )
        return wanted

    def subscribe_on_calls(self, user: str, on: bool, group_id: str | None = None) -> None:
        self._for_user(user, _SUBSCRIPTION.method_for(on), _SUBSCRIPTION.resource, params={"group_id": group_id})

    def subscription_status(self, user: str, group_id: str) -> bool:
        response = self._for_user(user, "GET", _SUBSCRIPTION.resource, params={"group_id": group_id})
        return _SUBSCRIPTION.ours(read_switch(self._http.json(response), "state"))

    def set_dnd(self, user: str, state: bool) -> None:
        self._for_user(user, _DND.method_for(state), _DND.resource)

    def get_dnd(self, user: str) -> bool:
        return _DND.ours(read_switch(self._http.json(self._for_user(user, "GET", _DND.resource)), "state"))

    def history(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        period: HistoryPeriod | None = None,
        call_type: HistoryType = HistoryType.ALL,
        limit: int | None = None,
    ) -> Iterator[HistoryRow | RejectedHistoryRow]:
        """The PBX's call history from `/history/json`; from `/history/csv` where the tenant answers
        `501` for JSON (remembered for this client). `period` wins over `start`/`end`."""
        params = {
            "period": period.value if period else None,
            "start": compact_utc(start) if start and not period else None,
            "end": compact_utc(end) if end and not period else None,
            "type": call_type.value,
            "limit": str(limit) if limit is not None else None,
        }
        if not self._history_csv:
            # `process_missed`: each missed call comes with the PBX's verdict on it (`missed_status`).
            json_params = {**params, "process_missed": "1"}
            response = self._send("GET", "/history/json", params=json_params, slow=True, ok=(501,))
            if response.status_code != 501:
                if is_html(response):
                    raise self._http.unavailable("the PBX answered an HTML page, not its history", status=200)
                yield from parse_v1_history_json(self._http.json(response))
                return
            response.close()
            self._history_csv = True
            log.warning("the PBX answers 501 for /history/json: reading /history/csv (no user column)")
        response = self._send("GET", "/history/csv", params=params, slow=True, stream=True, accept="text/csv")
        try:
            try:
                yield from parse_v1_history_csv(byte_lines(response.iter_content(chunk_size=64 * 1024)))
            except (requests.RequestException, OSError) as exc:
                raise self._http.unavailable(f"the history stream broke ({type(exc).__name__})") from exc
        finally:
            response.close()


# Reading v1 answers


def _envelope(data: Any, path: str) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        info = data.get("info")
        return data["items"], info if isinstance(info, dict) else {}
    raise PbxUnavailableError(f"the PBX's answer for {path} is neither a list nor a page of items")


def _objects(items: list[Any], path: str) -> Iterator[dict[str, Any]]:
    for item in items:
        if not isinstance(item, dict):
            raise PbxUnavailableError(f"the PBX's list {path} holds something that is not an object")
        yield item


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdecimal())


def _presence(value: Any) -> Any:
    # `status` is a word (`online`) on the tenants seen; an object carrying one is read too.
    if isinstance(value, dict):
        return next((value[k] for k in ("status", "state", "name") if isinstance(value.get(k), str)), None)
    return value


def _account(item: dict[str, Any]) -> PbxAccount:
    return PbxAccount.model_validate(
        {
            "name": item.get("login"),
            "realName": item.get("name"),
            "ext": item.get("ext"),
            "telnum": item.get("telnum"),
            "email": item.get("email"),
            "presence": _presence(item.get("status")),
            "role": item.get("role"),
        }
    )


def _group(item: dict[str, Any]) -> PbxGroup:
    return PbxGroup.model_validate({"id": item.get("id"), "realName": item.get("name"), "ext": item.get("ext")})


def _moment(value: Any) -> datetime | None:
    """A v1 time: ISO 8601 (with an offset, `Z`, or none: then UTC, as every v1 filter is),
    the compact `YYYYmmddTHHMMSSZ`, or Unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.strptime(text, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    text = str(value if value is not None else "0").strip() or "0"
    return int(text) if text.isdecimal() else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def parse_v1_history_json(data: Any) -> Iterator[HistoryRow | RejectedHistoryRow]:
    """`/history/json`: a bare array of calls (an envelope is read too), into HistoryRows whose `type`
    is `in`, `out` or `missed` (an inbound call that did not end in `Success`), as the legacy CSV's."""
    records = data.get("items") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise PbxUnavailableError("the PBX's history is not a list of calls")
    for line, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            yield RejectedHistoryRow(line=line, reason="not an object")
            continue
        uid = _text(record.get("uid"))
        kind = (_text(record.get("type")) or "").lower()
        status = _text(record.get("status"))
        started = _moment(record.get("start"))
        wait, duration = _seconds(record.get("wait")), _seconds(record.get("duration"))
        if not uid:
            yield RejectedHistoryRow(line=line, reason="no uid")
            continue
        if kind not in ("in", "out", "missed"):
            yield RejectedHistoryRow(line=line, reason=f"type {kind[:20]!r} is neither in nor out")
            continue
        if started is None:
            yield RejectedHistoryRow(line=line, reason=f"start {str(record.get('start'))[:40]!r} is not a time")
            continue
        if wait is None or duration is None:
            yield RejectedHistoryRow(line=line, reason="wait and duration must be whole seconds")
            continue
        if kind == "in" and status and status.lower() != "success":
            kind = "missed"
        missed_status = _seconds(record.get("missed_status"))
        yield V1HistoryRow(
            uid=uid,
            type=kind,
            client=_text(record.get("client")) or "",
            # Who took (or was rung by) the call; `pbx` where no user is named, as the legacy CSV says.
            account=_text(record.get("user")) or "pbx",
            via=_text(record.get("diversion")) or "",
            start=started,
            wait=wait,
            duration=duration,
            record=_text(record.get("record")),
            rating=_text(record.get("rating")),
            line=line,
            status=status,
            missed_status=missed_status or None,
        )


def parse_v1_history_csv(source: Any) -> Iterator[HistoryRow | RejectedHistoryRow]:
    """`/history/csv`: no header, `uid,type,client,via,start,wait,duration,record[,rating]`. Unlike the
    legacy CSV there is no `account` column: its rows name no user (`account` is empty)."""
    for line, fields in enumerate(csv.reader(source), start=1):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) not in (8, 9):
            yield RejectedHistoryRow(line=line, reason=f"{len(fields)} columns, 8 or 9 expected")
            continue
        uid, kind, client, via, start, wait, duration, record = (f.strip() for f in fields[:8])
        started = _moment(start)
        if started is None:
            yield RejectedHistoryRow(line=line, reason=f"start {start[:40]!r} is not a time")
            continue
        if not (wait or "0").isdecimal() or not (duration or "0").isdecimal():
            yield RejectedHistoryRow(line=line, reason="wait and duration must be whole seconds")
            continue
        if not uid:
            yield RejectedHistoryRow(line=line, reason="no uid")
            continue
        rating = fields[8].strip() if len(fields) == 9 else ""
        kind = kind.lower()
        if kind == "in" and int(duration or 0) == 0:
            kind = "missed"  # no status column here: an inbound call nobody talked on was missed
        yield HistoryRow(
            uid=uid,
            type=kind,
            client=client,
            account="",
            via=via,
            start=started,
            wait=int(wait or 0),
            duration=int(duration or 0),
            record=record or None,
            rating=rating or None,
            line=line,
        )


__all__ = ["V1PbxClient", "looks_like_api_key", "parse_v1_history_csv", "parse_v1_history_json", "v1_url"]
