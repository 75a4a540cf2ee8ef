"""The PBX simulator's `crmapi/v1` side, over the same state as its old API (local.pbx_simulator).

`/crmapi/v1/...` with an `X-API-KEY` header (the key the old API checks as `token`), JSON bodies and
answers, `{"error": "..."}` bodies, lists in the `{"items", "info"}` envelope paged by `start` and
`limit`, and the inverted DND and subscription meaning (`state: true` = available / receiving). What
live tenants are not known to do is a documented choice here, pinned by tests/test_pbx_simulator_v1.py:

- `info.next` is the `start` of the next page, `null` on the last one; `limit` defaults to 50 (1..1000).
- `/users/{login}` takes a login, login@tenant, extension or direct number, like the old API's `user`.
- `/users/{login}/groups` is an envelope too; `/caller-ids/telnums` is a bare list, as clients read it.
- DND and subscription writes answer `204` with no body.
- A history record's `user` is the login; `start` is ISO 8601 UTC (`2026-01-01T09:00:00Z`) in the JSON,
  and in the CSV alternates `Z` and `+03:00` rows as the old CSV does; `missed_status` (with
  `process_missed`) is on missed calls only.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from local.pbx_simulator import V1_PATH, HistoryRecord, SimGroup, SimUser, _digits, _Invalid, _json

if TYPE_CHECKING:
    from local.pbx_simulator import PbxSimulator

__all__ = ["V1_PATH", "V1Request", "handle_v1"]
Answer = tuple[int, str, bytes, dict[str, str]]
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
HISTORY_FILTERS = (
    "uid",
    "start",
    "end",
    "period",
    "type",
    "limit",
    "user",
    "diversion",
    "client",
    "groups",
    "first_answered",
)
NO_CONTENT: Answer = (204, "application/json", b"", {})


class _V1Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class V1Request:
    method: str
    route: str  # the path after /crmapi/v1: `/users/andy/dnd`
    query: dict[str, str]
    body: Any  # the JSON (or form) body, {} when empty; None when it is not JSON
    api_key: str | None

    @classmethod
    def read(cls, method: str, route: str, query: str, body: bytes, headers: Message) -> V1Request:
        parsed: Any = {}
        if body.strip():
            if "x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
                parsed = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            else:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
        return cls(
            method,
            route.rstrip("/") or "/",
            dict(parse_qsl(query, keep_blank_values=True)),
            parsed,
            headers.get("X-API-KEY"),
        )

    def seen(self) -> dict[str, Any]:
        """What tests read back: never the key, only whether one came."""
        return {
            "method": self.method,
            "route": self.route,
            "query": dict(self.query),
            "body": self.body,
            "api_key_sent": self.api_key is not None,
        }

    def param(self, name: str) -> str | None:
        """A parameter from the query or the body (writes may send either)."""
        if name in self.query:
            return self.query[name]
        if isinstance(self.body, dict) and self.body.get(name) is not None:
            return str(self.body[name])
        return None


def handle_v1(simulator: PbxSimulator, request: V1Request) -> Answer:
    """One crmapi/v1 request -> (status, content type, body, extra headers)."""
    modes = simulator.modes
    try:
        if modes.domain_disabled:
            raise _V1Error(401, "Domain disabled")
        if request.api_key is None or not hmac.compare_digest(
            request.api_key.encode("utf-8", "replace"), simulator.token.encode()
        ):
            raise _V1Error(401, "Invalid API key")
        if request.body is None:
            raise _V1Error(400, "The body is not valid JSON")
        for pattern, methods in _ROUTES:
            match = pattern.fullmatch(request.route)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                raise _V1Error(405, "Method Not Allowed")
            if any(request.route == p or request.route.startswith(p.rstrip("/") + "/") for p in modes.forbidden):
                raise _V1Error(403, "Forbidden")
            return handler(simulator, request, *(unquote(part) for part in match.groups()))
        raise _V1Error(404, "Not found")
    except _V1Error as exc:
        return _json(exc.status, {"error": str(exc)})
    except _Invalid as exc:
        return _json(400, {"error": f"Invalid parameters: [{exc}]" if str(exc) else "Invalid parameters"})


# Lists


def _int(request: V1Request, name: str, default: int, low: int, high: int) -> int:
    given = request.query.get(name)
    if given is None or given == "":
        return default
    if not given.isdecimal() or not low <= int(given) <= high:
        raise _Invalid(name)
    return int(given)


def _envelope(simulator: PbxSimulator, request: V1Request, items: list[Any]) -> Answer:
    start = _int(request, "start", 0, 0, 10**9)
    limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if simulator.modes.endless_pages and items:
        # A server whose paging never ends: every page is full and one more is always promised.
        page = (items * (limit // len(items) + 1))[:limit]
        return _json(
            200,
            {
                "items": page,
                "info": {"start": start, "limit": limit, "total": start + 2 * limit, "next": start + limit},
            },
        )
    page = items[start : start + limit]
    following = start + limit if start + limit < len(items) else None
    info = {"start": start, "limit": limit, "total": len(items), "next": following}
    return _json(200, {"items": page, "info": info})


def _with(request: V1Request) -> set[str]:
    return {part.strip() for part in (request.query.get("with") or "").split(",") if part.strip()}


# Users and groups


def _user_item(simulator: PbxSimulator, user: SimUser, with_status: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "login": user.name,
        "name": user.real_name,
        "ext": user.ext,
        "telnum": user.telnum,
        "mobile": user.mobile,
        "email": user.email,
        "position": user.position,
        "role": user.role,
        "mobile_redirect": {"enabled": bool(user.mobile), "forward": user.mobile, "delay": 15 if user.mobile else 0},
    }
    if with_status:
        item["status"] = simulator.presence.get(user.name, "offline")
    return item


def _group_item(group: SimGroup, members: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"id": group.id, "name": group.real_name, "ext": group.ext}
    if members:
        item["users"] = list(group.members)
    return item


def _known_user(simulator: PbxSimulator, login: str) -> SimUser:
    user = simulator.find_user(login)
    if user is None:
        raise _V1Error(404, "User not found")
    return user


def _users(simulator: PbxSimulator, request: V1Request) -> Answer:
    search = (request.query.get("search") or "").lower()
    users = [
        u
        for u in simulator.users
        if not search
        or any(search in (value or "").lower() for value in (u.name, u.real_name, u.ext, u.telnum, u.email))
    ]
    with_status = "status" in _with(request)
    return _envelope(simulator, request, [_user_item(simulator, u, with_status) for u in users])


def _user(simulator: PbxSimulator, request: V1Request, login: str) -> Answer:
    user = _known_user(simulator, login)
    return _json(200, _user_item(simulator, user, "status" in _with(request)))


def _user_groups(simulator: PbxSimulator, request: V1Request, login: str) -> Answer:
    user = _known_user(simulator, login)
    return _envelope(simulator, request, [_group_item(g) for g in simulator.groups if user.name in g.members])


def _groups(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _envelope(simulator, request, [_group_item(g) for g in simulator.groups])


def _group(simulator: PbxSimulator, request: V1Request, group_id: str) -> Answer:
    group = simulator.group_of(group_id)
    if group is None:
        raise _V1Error(404, "Group not found")
    return _json(200, _group_item(group, members=True))


# DND and subscriptions: v1's `state: true` is the opposite of DND ("available"), and means
# "receives the group's calls" for a subscription. The simulator keeps one state for both APIs.


def _dnd(simulator: PbxSimulator, request: V1Request, login: str) -> Answer:
    user = _known_user(simulator, login)
    with simulator._lock:
        if request.method == "GET":
            return _json(200, {"state": not simulator.dnd.get(user.name, False)})
        simulator.dnd[user.name] = request.method == "DELETE"  # POST: available; DELETE: do not disturb
    return NO_CONTENT


def _subscription(simulator: PbxSimulator, request: V1Request, login: str) -> Answer:
    user = _known_user(simulator, login)
    group_id = request.param("group_id")
    mine = [g.id for g in simulator.groups if user.name in g.members]
    if group_id is not None and simulator.group_of(group_id) is None:
        raise _Invalid("group_id")
    group_ids = [group_id] if group_id else mine
    with simulator._lock:
        if request.method == "GET":
            return _json(200, {"state": all(simulator.subscriptions.get((user.name, g), True) for g in group_ids)})
        for group in group_ids:
            simulator.subscriptions[(user.name, group)] = request.method == "POST"
    return NO_CONTENT


# Calls


def _makecall(simulator: PbxSimulator, request: V1Request) -> Answer:
    body = request.body if isinstance(request.body, dict) else {}
    login, group_id = body.get("user"), body.get("group")
    if (login is None) == (group_id is None):
        raise _Invalid("user")
    if login is not None:
        user = simulator.find_user(str(login))
        if user is None:
            raise _Invalid("user")
    else:
        group = simulator.group_of(str(group_id))
        if group is None or not group.members:
            raise _Invalid("group")
        # A group call rings its members; the first one not in DND takes it here.
        free = [m for m in group.members if not simulator.dnd.get(m, False)] or group.members
        user = _known_user(simulator, free[0])
    clid = body.get("clid")
    callid, allowed = simulator.dial("v1", user, str(body.get("phone") or ""), str(clid) if clid else None)
    return _json(200, {"callid": callid, **({"clid": allowed} if allowed else {})})


def _history_filters(request: V1Request) -> dict[str, str]:
    return {name: request.query[name] for name in HISTORY_FILTERS if name in request.query}


def _served_once(simulator: PbxSimulator, rows: list[HistoryRecord]) -> list[HistoryRecord]:
    """history_once: a record read once is never returned again."""
    if not simulator.modes.history_once:
        return rows
    with simulator._lock:
        fresh = [r for r in rows if r.uid not in simulator.history_served]
        simulator.history_served.update(r.uid for r in fresh)
    return fresh


def _history_item(simulator: PbxSimulator, record: HistoryRecord, missed: dict[str, int] | None) -> dict[str, Any]:
    login = record.account.split("@", 1)[0]
    user = simulator.find_user(login) if not login.startswith("g_") else None
    group = simulator.group_of(record.group or (login[2:] if login.startswith("g_") else None))
    inbound = record.type != "out"
    telnum = next((t for t in simulator.telnums if t["telnum"] == _digits(record.via)), None)
    destination = (user.ext if user else group.ext if group else "") if inbound else _digits(record.client)
    item: dict[str, Any] = {
        "uid": record.uid,
        "type": "in" if inbound else "out",
        "status": record.outcome,
        "client": record.client,
        "diversion": record.via if inbound else "",
        "telnum_name": telnum["name"] if telnum else "",
        "destination": destination,
        "user": user.name if user else "",
        "user_name": user.real_name if user else "",
        "group_name": group.real_name if group else "",
        "start": record.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wait": record.wait,
        "duration": record.duration,
        "record": record.record,
        "rating": int(record.rating) if record.rating and record.rating.isdecimal() else None,
        "note": "",
    }
    if missed is not None and record.uid in missed:
        item["missed_status"] = missed[record.uid]
    return item


def _flag(request: V1Request, name: str) -> bool:
    return (request.query.get(name) or "").lower() in ("1", "true", "yes", "on")


def _history_json(simulator: PbxSimulator, request: V1Request) -> Answer:
    if simulator.modes.history_json_501:
        raise _V1Error(501, "Not Implemented")
    rows = _served_once(simulator, simulator.history_rows(_history_filters(request)))
    missed = simulator.missed_statuses(rows) if _flag(request, "process_missed") else None
    return _json(200, [_history_item(simulator, r, missed) for r in rows])


def _history_csv(simulator: PbxSimulator, request: V1Request) -> Answer:
    rows = _served_once(simulator, simulator.history_rows(_history_filters(request)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for index, row in enumerate(rows):
        # The old CSV's row without its `account` column, `rating` always there (empty when none).
        old = next(csv.reader([row.csv_line(index).rstrip("\r\n")]))
        writer.writerow([*old[:3], *old[4:9], row.rating or ""])
    return 200, "text/csv", out.getvalue().encode(), {}


def _inner_json(simulator: PbxSimulator, request: V1Request) -> Answer:
    simulator.history_rows(_history_filters(request))  # the same filters, the same 400s
    return _json(200, [])  # the simulator plays no calls between its users


def _inner_csv(simulator: PbxSimulator, request: V1Request) -> Answer:
    simulator.history_rows(_history_filters(request))
    return 200, "text/csv", b"", {}


# The tenant


def _telnums(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _envelope(simulator, request, [dict(t) for t in simulator.telnums])


def _telnum(simulator: PbxSimulator, request: V1Request, number: str) -> Answer:
    found = next((t for t in simulator.telnums if t["telnum"] == _digits(number)), None)
    if found is None:
        raise _V1Error(404, "Telnum not found")
    return _json(200, dict(found))


def _sims(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _envelope(simulator, request, [dict(s) for s in simulator.sims])


def _sim(simulator: PbxSimulator, request: V1Request, number: str) -> Answer:
    found = next((s for s in simulator.sims if s["sim"] == _digits(number)), None)
    if found is None:
        raise _V1Error(404, "SIM not found")
    return _json(200, dict(found))


def _caller_ids(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _json(200, {"default": _digits(simulator.via), "users_may_choose": True})


def _caller_id_telnums(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _json(200, [{"telnum": telnum, "enabled": enabled} for telnum, enabled in simulator.caller_ids.items()])


def _record(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _json(200, {"enabled": True, "storage_days": 7})


def _domain(simulator: PbxSimulator, request: V1Request) -> Answer:
    return _json(200, {"domain": simulator.tenant, "name": "ООО Пример", "crm_enabled": True})


_Handler = Callable[..., Answer]
_ROUTE_TABLE: list[tuple[str, dict[str, _Handler]]] = [
    (r"/users", {"GET": _users}),
    (r"/users/([^/]+)", {"GET": _user}),
    (r"/users/([^/]+)/groups", {"GET": _user_groups}),
    (r"/users/([^/]+)/dnd", {"GET": _dnd, "POST": _dnd, "DELETE": _dnd}),
    (r"/users/([^/]+)/subscription", {"GET": _subscription, "POST": _subscription, "DELETE": _subscription}),
    (r"/groups", {"GET": _groups}),
    (r"/groups/([^/]+)", {"GET": _group}),
    (r"/makecall", {"POST": _makecall}),
    (r"/history/json", {"GET": _history_json}),
    (r"/history/csv", {"GET": _history_csv}),
    (r"/history/inner/json", {"GET": _inner_json}),
    (r"/history/inner/csv", {"GET": _inner_csv}),
    (r"/telnums", {"GET": _telnums}),
    (r"/telnums/([^/]+)", {"GET": _telnum}),
    (r"/sims", {"GET": _sims}),
    (r"/sims/([^/]+)", {"GET": _sim}),
    (r"/caller-ids", {"GET": _caller_ids}),
    (r"/caller-ids/telnums", {"GET": _caller_id_telnums}),
    (r"/record", {"GET": _record}),
    (r"/domain", {"GET": _domain}),
]
_ROUTES = [(re.compile(pattern), methods) for pattern, methods in _ROUTE_TABLE]
