"""A PBX simulator: a real HTTP server that behaves like the live cloud PBX, quirks included.

It keeps users, groups, DND and subscriptions in memory and serves the eight commands on
`/sys/crm_api.wcgp` (POST form or GET query) with the spec's 400/401 bodies, and the newer `crmapi/v1`
(`/crmapi/v1/...`, JSON and `X-API-KEY`; see local.pbx_simulator_v1) on the same port over the same
state: a DND set through one API reads back through the other. It plays calls: to a
CRM URL it sends `contact`, then the `event`s of every leg, then `history`, and records the call in
its history CSV. It can drop or duplicate a chosen share of pushes, and scripted faults (5xx pages,
hangs, dropped connections, redirects) let tests see how a client copes.

It only ever talks to loopback addresses.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

API_PATH = "/sys/crm_api.wcgp"
V1_PATH = "/crmapi/v1"
MSK = timezone(timedelta(hours=3))
INVALID_PARAMETERS = {"error": "Invalid parameters"}
INVALID_TOKEN = {"error": "Invalid token"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class SimUser:
    name: str
    real_name: str
    ext: str
    telnum: str | None = None
    email: str | None = None
    # Only crmapi/v1 shows these.
    mobile: str | None = None
    position: str | None = None
    role: str = "user"  # user / admin / group_head / restricted_user


@dataclass
class SimGroup:
    id: str
    real_name: str
    ext: str
    members: list[str]


@dataclass
class HistoryRecord:
    uid: str
    type: str  # in / out / missed
    client: str  # +7...
    account: str
    via: str
    start: datetime
    wait: int
    duration: int
    record: str
    rating: str | None = None
    # What crmapi/v1's JSON history shows beside the CSV's columns.
    status: str | None = None  # Success / missed / Busy ...; None: from `type`
    group: str | None = None  # the group id an inbound call rang

    @property
    def outcome(self) -> str:
        return self.status or ("missed" if self.type == "missed" else "Success")

    @property
    def answered(self) -> bool:
        return self.outcome.lower() == "success"

    def csv_line(self, index: int) -> str:
        # Live rows carry either an offset or Z: alternate, so both are always exercised.
        start = self.start.astimezone(MSK).isoformat() if index % 2 else self.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = [
            self.uid,
            self.type,
            self.client,
            self.account,
            self.via,
            start,
            str(self.wait),
            str(self.duration),
            self.record,
        ]
        if self.rating is not None:
            fields.append(self.rating)
        return ",".join(fields) + "\r\n"


@dataclass
class Push:
    fields: dict[str, str]
    status: int | None
    dropped: bool = False


DEFAULT_USERS = [
    SimUser("andy", "Петров Андрей", "708", "79261234567", "andy@example.ru", "79161112233", "Менеджер"),
    SimUser("daria", "Иванова Дария", "705", None, "daria@example.ru", role="admin", position="Главный бухгалтер"),
    SimUser("mike", "Семенов Михаил", "702", role="group_head"),
    SimUser("serg", "Чижиков Сергей", "709", role="restricted_user"),
]
# Presence, as crmapi/v1's `with=status` shows it (settable: PbxSimulator.presence, /_simulator/presence).
DEFAULT_PRESENCE = {"andy": "online", "daria": "offline", "mike": "online", "serg": "away"}
PRESENCE_STATES = ("online", "offline", "away", "busy")
# The tenant's numbers (crmapi/v1 /telnums) and which of them may be an outgoing caller id.
DEFAULT_TELNUMS: list[dict[str, Any]] = [
    {"telnum": "74996861574", "name": "Основной номер", "user": None},
    {"telnum": "79261234567", "name": "Прямой Петрова", "user": "andy"},
    {"telnum": "74951234567", "name": "Реклама", "user": None},
]
DEFAULT_CALLER_IDS = {"74996861574": True, "79261234567": True, "74951234567": False}
DEFAULT_SIMS: list[dict[str, Any]] = [
    {"sim": "79160000001", "user": "andy", "iccid": "8970199000000000001", "enabled": True},
    {"sim": "79160000002", "user": "mike", "iccid": "8970199000000000002", "enabled": False},
]
API_MODES = ("both", "v1", "legacy")


@dataclass
class TenantModes:
    """How this tenant behaves, as live tenants differ (CLI flags, /_simulator/tenant)."""

    api: str = "both"  # both / v1 (the old path answers 404) / legacy (crmapi/v1 answers 404 pages)
    history_json_501: bool = False  # GET /history/json answers 501 Not Implemented
    domain_disabled: bool = False  # every crmapi/v1 request: 401 {"error": "Domain disabled"}
    history_once: bool = False  # a crmapi/v1 history record is returned once, never again
    endless_pages: bool = False  # crmapi/v1 lists always claim one more page
    forbidden: list[str] = field(default_factory=list)  # crmapi/v1 routes ("/history/json") answering 403

    def update(self, order: dict[str, Any]) -> None:
        """Apply a JSON order; a wrong name or value raises ValueError and changes nothing."""
        unknown = set(order) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown modes: {sorted(unknown)}")
        if "api" in order and order["api"] not in API_MODES:
            raise ValueError(f"api must be one of {API_MODES}")
        if "forbidden" in order and not (
            isinstance(order["forbidden"], list) and all(isinstance(p, str) for p in order["forbidden"])
        ):
            raise ValueError("forbidden must be a list of paths")
        flags = set(order) - {"api", "forbidden"}
        if any(not isinstance(order[name], bool) for name in flags):
            raise ValueError(f"{sorted(flags)} take true or false")
        for name, value in order.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Dial:
    """One call the PBX started on a command (either API): what tests count to see "dialled once"."""

    api: str  # legacy / v1
    user: str
    phone: str
    callid: str
    clid: str | None


DEFAULT_GROUPS = [
    SimGroup("sales", "Отдел продаж", "701", ["andy", "mike", "serg"]),
    SimGroup("gr001", "Бухгалтерия", "706", ["daria"]),
]


@dataclass
class PbxSimulator:
    """The PBX's state and behaviour; `serve()` puts it behind a real HTTP server."""

    token: str
    tenant: str = "tenant.example.ru"
    crm_url: str | None = None
    crm_token: str | None = None
    make_call_shape: str = "uuid"  # uuid | CallID | text | empty
    reject_plus: bool = True
    play_make_call: bool = True
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    seed: int = 0
    via: str = "+74996861574"
    users: list[SimUser] = field(default_factory=lambda: list(DEFAULT_USERS))
    groups: list[SimGroup] = field(default_factory=lambda: list(DEFAULT_GROUPS))
    history_records: list[HistoryRecord] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    requests_seen: list[dict[str, str]] = field(default_factory=list)
    dnd: dict[str, bool] = field(default_factory=dict)
    subscriptions: dict[tuple[str, str], bool] = field(default_factory=dict)
    faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    base_url: str = ""
    presence: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PRESENCE))
    telnums: list[dict[str, Any]] = field(default_factory=lambda: [dict(t) for t in DEFAULT_TELNUMS])
    caller_ids: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_CALLER_IDS))
    sims: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SIMS])
    modes: TenantModes = field(default_factory=TenantModes)
    dials: list[Dial] = field(default_factory=list)
    # crmapi/v1 requests as received (method, route, query, body), the key left out; see `requests_seen`.
    v1_requests_seen: list[dict[str, Any]] = field(default_factory=list)
    # history_once: the records crmapi/v1 has returned already.
    history_served: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.RLock()
        # Set while play_mix plays its batch: `all` for a call whose every push is lost, `drop` and
        # `duplicate` for the batch's shares.
        self._losing = threading.local()
        self._players: list[threading.Thread] = []

    # The API

    def fail_next(self, cmd: str, *faults: str) -> None:
        """Script the next answers to `cmd`: `502`, `500`, `301`, `garbage`, `drop`, `hang:SECONDS`, each
        instead of acting; `after:502`, `after:drop`, `after:hang:SECONDS` ... after acting (a call placed,
        then the answer lost). For crmapi/v1, `cmd` is the method and route: `POST /makecall`, `GET /users`."""
        self.faults[cmd].extend(faults)

    def handle(self, form: dict[str, str], record: bool = True) -> tuple[int, str, bytes, dict[str, str]]:
        """One API request -> (status, content type, body, extra headers)."""
        if record:
            with self._lock:
                self.requests_seen.append(dict(form))
        cmd = form.get("cmd", "")
        if form.get("token") != self.token:
            return _json(401, INVALID_TOKEN)
        handler = getattr(self, f"_cmd_{cmd}", None) if cmd in _COMMANDS else None
        if handler is None:
            return _json(400, {"error": "Invalid parameters: [cmd]"})
        try:
            return handler(form)  # type: ignore[no-any-return]
        except _Invalid as exc:
            return _json(400, {"error": f"Invalid parameters: [{exc}]"} if str(exc) else INVALID_PARAMETERS)

    def _user(self, form: dict[str, str], key: str = "user") -> SimUser:
        """`user` as login, login@tenant, extension or direct number."""
        user = self.find_user(form.get(key, ""))
        if user is None:
            raise _Invalid(key)
        return user

    def find_user(self, given: str) -> SimUser | None:
        """A user by login, login@tenant, extension or direct number."""
        given = given.split("@", 1)[0]
        return next((u for u in self.users if given and given in (u.name, u.ext, u.telnum)), None)

    def group_of(self, group_id: str | None) -> SimGroup | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def _cmd_accounts(self, form: dict[str, str]) -> Any:
        # Live quirk: `ext` is a number for some tenants, a string for others.
        return _json(
            200,
            [
                {
                    "name": u.name,
                    "realName": u.real_name,
                    "ext": int(u.ext) if i % 2 else u.ext,
                    **({"telnum": u.telnum} if u.telnum else {}),
                    **({"email": u.email} if u.email else {}),
                }
                for i, u in enumerate(self.users)
            ],
        )

    def _cmd_groups(self, form: dict[str, str]) -> Any:
        groups = self.groups
        if form.get("user"):
            login = self._user(form).name
            groups = [g for g in groups if login in g.members]
        return _json(200, [{"id": g.id, "realName": g.real_name, "ext": int(g.ext)} for g in groups])

    def _cmd_makeCall(self, form: dict[str, str]) -> Any:
        callid, _ = self.dial("legacy", self._user(form), form.get("phone", ""), form.get("clid") or None)
        shapes: dict[str, Any] = {
            "uuid": lambda: _json(200, {"uuid": callid}),
            "CallID": lambda: _json(200, {"CallID": callid}),
            "text": lambda: (200, "text/plain", callid.encode(), {}),
            "empty": lambda: _json(200, {"result": "ok"}),
        }
        return shapes[self.make_call_shape]()

    def dial(self, api: str, user: SimUser, phone: str, clid: str | None) -> tuple[str, str | None]:
        """A click-to-call on either API: the user's phone, then the client's, played to the CRM.
        Returns the call id and the caller id used (None: the asked one is not allowed, the default)."""
        if not phone or (self.reject_plus and phone.startswith("+")) or not phone.lstrip("+").isdigit():
            raise _Invalid("phone")
        allowed = self.allowed_caller_id(clid)
        callid = str(uuid.uuid4())
        with self._lock:
            self.dials.append(Dial(api, user.name, phone, callid, allowed))
        if self.play_make_call and self.crm_url:
            via = "+" + allowed if allowed else None
            self._in_background(self.play_outbound, user.name, phone, callid=callid, via=via)
        return callid, allowed

    def allowed_caller_id(self, clid: str | None) -> str | None:
        """The tenant's number `clid` names (any `+`, spaces or dashes aside), if it is enabled as a caller id."""
        digits = "".join(ch for ch in clid or "" if ch.isdigit())
        return digits if digits and self.caller_ids.get(digits) else None

    def _cmd_history(self, form: dict[str, str]) -> Any:
        rows = self.history_rows({k: form[k] for k in ("start", "end", "period", "type", "limit") if k in form})
        body = "".join(row.csv_line(i) for i, row in enumerate(rows)).encode()
        return 200, "text/csv", body, {}

    def history_rows(self, filters: dict[str, str]) -> list[HistoryRecord]:
        """The history's records that the filters select, oldest first. The old API's filters (`start`,
        `end`, `period`, `type`, `limit`) and crmapi/v1's further ones (`uid`, `user`, `client`,
        `diversion`, `groups`; `first_answered` is accepted and changes nothing here)."""
        start, end = self._range(filters)
        kind = filters.get("type", "all").lower()
        if kind not in ("all", "in", "out", "missed"):
            raise _Invalid("type")
        limit = filters.get("limit")
        if limit is not None and not limit.isdecimal():
            raise _Invalid("limit")
        user = self.find_user(filters["user"]) if filters.get("user") else None
        if filters.get("user") and user is None:
            raise _Invalid("user")
        groups = {g for g in filters.get("groups", "").split(",") if g}
        client = _digits(filters.get("client", ""))
        diversion = _digits(filters.get("diversion", ""))

        def selected(r: HistoryRecord) -> bool:
            return (
                start <= r.start < end
                and kind in ("all", r.type)
                and filters.get("uid", r.uid) == r.uid
                and (user is None or r.account.split("@", 1)[0] == user.name)
                and (not groups or r.group in groups)
                and (not client or _digits(r.client) == client)
                and (not diversion or _digits(r.via) == diversion)
            )

        with self._lock:
            rows = sorted((r for r in self.history_records if selected(r)), key=lambda r: r.start)
        if limit is not None:
            rows = rows[: int(limit)]
        return rows

    def missed_statuses(self, records: list[HistoryRecord]) -> dict[str, int]:
        """The PBX's verdict on each missed call among `records`, by uid, from the calls with that
        client after it: the first answered one decides (`1` the client called back, `2` we called
        back); else `4` if we tried, `3` if nobody called. Calls that were not missed have none."""
        wanted = {_digits(r.client) for r in records if r.type == "missed"}
        by_client: dict[str, list[HistoryRecord]] = defaultdict(list)
        with self._lock:
            for call in self.history_records:
                if _digits(call.client) in wanted:
                    by_client[_digits(call.client)].append(call)
        verdicts = {}
        for record in records:
            if record.type != "missed":
                continue
            later = sorted(
                (c for c in by_client[_digits(record.client)] if c.start > record.start), key=lambda c: c.start
            )
            answered = next((c for c in later if c.answered), None)
            if answered is not None:
                verdicts[record.uid] = 2 if answered.type == "out" else 1
            else:
                verdicts[record.uid] = 4 if any(c.type == "out" for c in later) else 3
        return verdicts

    def _range(self, form: dict[str, str]) -> tuple[datetime, datetime]:
        now = datetime.now(tz=UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        periods = {
            "today": (today, today + timedelta(days=1)),
            "yesterday": (today - timedelta(days=1), today),
            "this_week": (today - timedelta(days=today.weekday()), today + timedelta(days=1)),
            "last_week": (today - timedelta(days=today.weekday() + 7), today - timedelta(days=today.weekday())),
            "this_month": (today.replace(day=1), today + timedelta(days=1)),
            "last_month": ((today.replace(day=1) - timedelta(days=1)).replace(day=1), today.replace(day=1)),
        }
        if form.get("period"):
            if form["period"] not in periods:
                raise _Invalid("period")
            return periods[form["period"]]
        if not form.get("start"):
            raise _Invalid("start")
        try:
            start = datetime.strptime(form["start"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            end = datetime.strptime(form["end"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if form.get("end") else now
        except (KeyError, ValueError):
            raise _Invalid("start") from None
        return start, end

    def _cmd_subscribeOnCalls(self, form: dict[str, str]) -> Any:
        user = self._user(form)
        status = form.get("status", "").lower()
        if status not in ("on", "off"):
            raise _Invalid("status")
        # Live PBXs read `group_id`; the document's `group` is ignored, as there.
        group_ids = (
            [form["group_id"]] if form.get("group_id") else [g.id for g in self.groups if user.name in g.members]
        )
        with self._lock:
            for group_id in group_ids:
                self.subscriptions[(user.name, group_id)] = status == "on"
        return 200, "text/plain", b"OK", {}

    def _cmd_subscriptionStatus(self, form: dict[str, str]) -> Any:
        user = self._user(form)
        if not form.get("group_id"):
            raise _Invalid("group_id")
        on = self.subscriptions.get((user.name, form["group_id"]), True)
        return _json(200, {"status": "on" if on else "off"})

    def _cmd_set_dnd(self, form: dict[str, str]) -> Any:
        user = self._user(form)
        state = form.get("state", "").lower()
        if state not in ("true", "false"):
            raise _Invalid("state")
        self.dnd[user.name] = state == "true"
        return _json(200, {})

    def _cmd_get_dnd(self, form: dict[str, str]) -> Any:
        return _json(200, {"state": self.dnd.get(self._user(form).name, False)})

    def set_presence(self, login: str, status: str) -> None:
        user = self.find_user(login)
        if user is None:
            raise ValueError(f"no user {login!r}")
        if status not in PRESENCE_STATES:
            raise ValueError(f"status must be one of {PRESENCE_STATES}")
        with self._lock:
            self.presence[user.name] = status

    # Calls

    def _in_background(self, target: Any, *args: Any, **kwargs: Any) -> None:
        thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        self._players.append(thread)
        thread.start()

    def wait_for_calls(self, timeout: float = 30) -> None:
        """Wait until every call played in the background has sent its pushes."""
        deadline = time.monotonic() + timeout
        for thread in list(self._players):
            thread.join(max(0.0, deadline - time.monotonic()))

    def push(self, **fields: str) -> None:
        """Send one push to the CRM, unless the drop share says it is lost; maybe twice."""
        if not self.crm_url:
            return
        if urlsplit(self.crm_url).hostname not in _LOOPBACK:
            raise ValueError("the simulator only pushes to loopback addresses")
        form = {**fields, "crm_token": self.crm_token or ""}
        # A batch of play_mix brings its own shares (thread-local): calls played later, such as the
        # widget demo's, are not lost to a reconciliation demo that ran before them.
        drop_rate = getattr(self._losing, "drop", None)
        duplicate_rate = getattr(self._losing, "duplicate", None)
        with self._lock:
            drop_rate = self.drop_rate if drop_rate is None else drop_rate
            duplicate_rate = self.duplicate_rate if duplicate_rate is None else duplicate_rate
            dropped = getattr(self._losing, "all", False) or self._random.random() < drop_rate
            copies = 0 if dropped else 2 if self._random.random() < duplicate_rate else 1
        if dropped:
            with self._lock:
                self.pushes.append(Push(fields=fields, status=None, dropped=True))
            return
        for _ in range(copies):
            try:
                status: int | None = requests.post(self.crm_url, data=form, timeout=10).status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.pushes.append(Push(fields=fields, status=status))

    def _record(self, record: HistoryRecord) -> None:
        with self._lock:
            self.history_records.append(record)

    def _link(self, callid: str) -> str:
        return f"{self.base_url or 'https://' + self.tenant}/records/{callid}.mp3"

    def play_inbound(
        self,
        phone: str,
        *,
        group: str | None = "sales",
        answered_by: str | None = "andy",
        duration: int = 42,
        wait: int = 5,
        callid: str | None = None,
        start: datetime | None = None,
        rings: str | None = None,
        pace: float = 0,
    ) -> str:
        """An inbound call ringing a group's members (or one user, `rings`): answered by one, or missed.
        `pace` seconds pass between ringing, answering and hanging up (for a person watching)."""
        callid = callid or str(uuid.uuid4())
        start = start or datetime.now(tz=UTC).replace(microsecond=0)
        target = next((g for g in self.groups if g.id == group), None)
        legs = target.members if target else [rings or answered_by or self.users[0].name]
        digits = phone.lstrip("+")
        common = {"phone": digits, "callid": callid, "diversion": self.via.lstrip("+")}
        if target:
            common["groupRealName"] = target.real_name
        self.push(cmd="contact", phone=digits, callid=callid)
        for leg in legs:
            self.push(cmd="event", type="INCOMING", user=leg, **common)
        time.sleep(pace)
        answered = answered_by in legs if answered_by else False
        if answered and answered_by:
            self.push(cmd="event", type="ACCEPTED", user=answered_by, **common)
        for leg in legs:
            if leg != answered_by or not answered:
                self.push(cmd="event", type="CANCELLED", user=leg, **common)
        if answered and answered_by:
            time.sleep(pace)
            self.push(cmd="event", type="COMPLETED", user=answered_by, **common)
        account = f"{answered_by}@{self.tenant}" if answered else (f"g_{target.id}@{self.tenant}" if target else "pbx")
        link = self._link(callid) if answered else ""
        history = {
            "cmd": "history",
            "type": "in",
            "status": "Success" if answered else "missed",
            "user": account,
            "start": start.strftime("%Y%m%dT%H%M%SZ"),
            "duration": str(duration if answered else wait),
            **common,
        }
        if link:
            history["link"] = link
        self.push(**history)
        self._record(
            HistoryRecord(
                callid,
                "in" if answered else "missed",
                "+" + digits,
                account,
                self.via,
                start,
                wait,
                duration if answered else 0,
                link,
                status="Success" if answered else "missed",
                group=target.id if target else None,
            )
        )
        return callid

    def play_outbound(
        self,
        user: str,
        phone: str,
        *,
        answered: bool = True,
        duration: int = 30,
        callid: str | None = None,
        start: datetime | None = None,
        via: str | None = None,
    ) -> str:
        """An outbound call (what `makeCall` starts): the user's phone, then the client's, shown the
        caller id `via` (the tenant's default number when None)."""
        callid = callid or str(uuid.uuid4())
        start = start or datetime.now(tz=UTC).replace(microsecond=0)
        digits = phone.lstrip("+")
        # Seen live: an outbound call to a number whose missed call nobody has returned yet is
        # pushed with missedStatus=2, a call-back attempt.
        calling_back = self._open_missed_call(digits, start)
        common = {"phone": digits, "callid": callid, "user": user}
        self.push(cmd="event", type="OUTGOING", **common)
        if answered:
            self.push(cmd="event", type="ACCEPTED", **common)
            self.push(cmd="event", type="COMPLETED", **common)
        else:
            self.push(cmd="event", type="CANCELLED", **common)
        link = self._link(callid) if answered else ""
        history = {
            "cmd": "history",
            "type": "out",
            "status": "Success" if answered else "Busy",
            "start": start.strftime("%Y%m%dT%H%M%SZ"),
            "duration": str(duration if answered else 0),
            **common,
            "user": f"{user}@{self.tenant}",
        }
        if calling_back:
            history["missedStatus"] = "2"
        if link:
            history["link"] = link
        self.push(**history)
        self._record(
            HistoryRecord(
                callid,
                "out",
                "+" + digits,
                f"{user}@{self.tenant}",
                via or self.via,
                start,
                0,
                duration if answered else 0,
                link,
                status="Success" if answered else "Busy",
            )
        )
        return callid

    def _open_missed_call(self, digits: str, before: datetime) -> bool:
        """Whether a missed call from this number waits for a call back (nobody answered one since)."""
        with self._lock:
            calls = sorted(
                (r for r in self.history_records if _digits(r.client) == digits and r.start <= before),
                key=lambda r: r.start,
            )
        waiting = False
        for call in calls:
            waiting = call.type == "missed" or (waiting and not call.answered)
        return waiting

    def play_mix(
        self,
        count: int,
        *,
        drop: float | None = None,
        duplicate: float | None = None,
        lose_calls: float = 0.0,
        lost: list[str] | None = None,
        clients: int | None = None,
    ) -> list[str]:
        """`count` calls of every kind, with the given share of pushes dropped and duplicated, and a
        `lose_calls` share of whole calls whose every push is lost (only the history knows them; their
        ids are appended to `lost`). The shares hold for these calls only (the simulator's own
        `drop_rate` and `duplicate_rate` when not given). Each call is with a new number, or with
        `clients` given, with one of that many numbers (an office's regular clients, who call again)."""
        self._losing.drop, self._losing.duplicate = drop, duplicate
        try:
            return self._play_mix(count, lose_calls=lose_calls, lost=lost, clients=clients)
        finally:
            self._losing.drop = self._losing.duplicate = None

    def _play_mix(self, count: int, *, lose_calls: float, lost: list[str] | None, clients: int | None) -> list[str]:
        callids = []
        for index in range(count):
            with self._lock:
                number = self._random.randrange(clients) if clients else self._random.randrange(10**7)
            phone = f"7910{number:07d}"
            with self._lock:
                losing = self._random.random() < lose_calls
            self._losing.all = losing
            try:
                kind = index % 4
                if kind == 0:
                    callids.append(self.play_inbound(phone, answered_by="andy"))
                elif kind == 1:
                    callids.append(self.play_inbound(phone, answered_by=None))
                elif kind == 2:
                    callids.append(self.play_outbound("mike", phone))
                else:
                    callids.append(self.play_outbound("mike", phone, answered=False))
            finally:
                self._losing.all = False
            if losing and lost is not None:
                lost.append(callids[-1])
        return callids

    # Serving

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> SimulatorServer:
        server = SimulatorServer((host, port), self)
        self.base_url = server.url
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return server


class _Invalid(Exception):
    """A parameter the PBX rejects (named in its message)."""


_COMMANDS = {
    "accounts",
    "groups",
    "makeCall",
    "history",
    "subscribeOnCalls",
    "subscriptionStatus",
    "set_dnd",
    "get_dnd",
}


def _json(status: int, body: Any) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(body, ensure_ascii=False).encode(), {}


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


NOT_FOUND_PAGE = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: PbxSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _SimulatorHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    @property
    def v1_url(self) -> str:
        return self.url + V1_PATH

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a scripted hang is expected, not an error.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _SimulatorHandler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle and delayed ACKs add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, status: int, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _next_fault(self, key: str) -> str | None:
        queue = self.server.simulator.faults.get(key)
        return queue.popleft() if queue else None

    def _serve_with_faults(self, key: str, redirect_path: str, handle: Any) -> None:
        """Answer `handle()` unless a fault is scripted for `key` (a legacy `cmd`, or `METHOD /route`
        for crmapi/v1); an `after:` fault lets the PBX act first (a call is placed) and then fails."""
        fault = self._next_fault(key)
        if fault and fault.startswith("after:"):
            handle()
            fault = fault.removeprefix("after:")
        if not self._fault(fault, redirect_path):
            self._answer(*handle())

    def _fault(self, fault: str | None, redirect_path: str) -> bool:
        """Play a fault; whether it answered (or dropped) the request."""
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if fault and fault.startswith("hang:"):
            time.sleep(float(fault.split(":", 1)[1]))
        if fault in ("500", "502", "503"):
            page = f"<html><body><h1>{fault} Bad Gateway</h1></body></html>".encode()
            self._answer(int(fault), "text/html", page, {})
            return True
        if fault == "301":
            self._answer(301, "text/html", b"", {"Location": "https://other-tenant.example.ru" + redirect_path})
            return True
        if fault == "garbage":
            self._answer(200, "text/html", b"<html>maintenance</html>", {})
            return True
        return False

    def _serve(self, form: dict[str, str]) -> None:
        simulator = self.server.simulator
        # Seen, even when the answer will be a fault: tests count retries by it.
        with simulator._lock:
            simulator.requests_seen.append(dict(form))
        self._serve_with_faults(form.get("cmd", ""), API_PATH, lambda: simulator.handle(form, record=False))

    def _serve_v1(self, method: str, path: str, query: str, body: bytes) -> None:
        from local.pbx_simulator_v1 import V1Request, handle_v1

        simulator = self.server.simulator
        request = V1Request.read(method, path, query, body, self.headers)
        with simulator._lock:
            simulator.v1_requests_seen.append(request.seen())
        self._serve_with_faults(
            f"{method} {request.route}", V1_PATH + request.route, lambda: handle_v1(simulator, request)
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self, method: str) -> None:
        """One request: the old API, crmapi/v1, the simulator's own control, or a recording."""
        path, _, query = self.path.partition("?")
        body = self._body()
        modes = self.server.simulator.modes
        if path.startswith("/_simulator/"):
            self._control(method, path, body.decode("utf-8", "replace"))
        elif path == API_PATH and method in ("GET", "POST") and modes.api != "v1":
            text = body.decode("utf-8", "replace") if method == "POST" else query
            self._serve(dict(parse_qsl(text, keep_blank_values=True)))
        elif (path == V1_PATH or path.startswith(V1_PATH + "/")) and modes.api != "legacy":
            self._serve_v1(method, path[len(V1_PATH) :] or "/", query, body)
        elif method == "GET" and path.startswith("/records/"):
            self._answer(200, "audio/mpeg", b"ID3" + b"\x00" * 1024, {})
        else:
            # The web server's own page, as a tenant that does not serve an API answers.
            self._answer(404, "text/html", NOT_FOUND_PAGE, {})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _control(self, method: str, path: str, body: str) -> None:
        controls = {
            "/_simulator/calls": self._play,
            "/_simulator/inbound": self._inbound,
            "/_simulator/tenant": self._tenant,
            "/_simulator/presence": self._presence,
            "/_simulator/webhook": self._webhook,
        }
        control = controls.get(path)
        if control is None:
            self._answer(404, "text/plain", b"not found", {})
        elif method == "GET" and path == "/_simulator/tenant":
            self._answer(*_json(200, self.server.simulator.modes.as_dict()))
        elif method != "POST":
            self._answer(*_json(405, {"error": "POST a JSON order"}))
        else:
            control(body)

    def _order(self, body: str) -> dict[str, Any] | None:
        """The control's JSON object, or None once a 400 is answered."""
        try:
            order = json.loads(body or "{}")
        except ValueError as exc:
            self._answer(*_json(400, {"error": f"not JSON: {exc}"}))
            return None
        if not isinstance(order, dict):
            self._answer(*_json(400, {"error": "a JSON object, please"}))
            return None
        return order

    def _tenant(self, body: str) -> None:
        """`{"api": "v1", "history_json_501": true, "domain_disabled": true, "history_once": true,
        "endless_pages": true, "forbidden": ["/history/json"]}`: the tenant's behaviour from now on."""
        order = self._order(body)
        if order is None:
            return
        modes = self.server.simulator.modes
        try:
            modes.update(order)
        except ValueError as exc:
            self._answer(*_json(400, {"error": str(exc)}))
            return
        self._answer(*_json(200, modes.as_dict()))

    def _presence(self, body: str) -> None:
        """`{"user": "andy", "status": "offline"}`: what crmapi/v1's `with=status` shows for the user."""
        order = self._order(body)
        if order is None:
            return
        try:
            self.server.simulator.set_presence(str(order.get("user", "")), str(order.get("status", "")))
        except ValueError as exc:
            self._answer(*_json(400, {"error": str(exc)}))
            return
        self._answer(*_json(200, self.server.simulator.presence))

    def _webhook(self, body: str) -> None:
        """`{"type": "sipregs_error", "id": "...", "data": "..."}`: a `cmd=webhook` push to the CRM now
        (form-encoded like every push; a `data` object goes as its JSON text)."""
        order = self._order(body)
        if order is None:
            return
        kind = str(order.get("type") or "sipregs_error")
        event_id = str(order.get("id") or uuid.uuid4())
        data = order.get("data", "SIP registration failed: 708@tenant.example.ru (timeout)")
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        simulator = self.server.simulator
        if not simulator.crm_url:
            self._answer(*_json(409, {"error": "no CRM URL to push to (--crm-url)"}))
            return
        before = len(simulator.pushes)
        simulator.push(cmd="webhook", type=kind, id=event_id, data=text)
        statuses = [p.status for p in simulator.pushes[before:]]
        self._answer(*_json(200, {"id": event_id, "statuses": statuses}))

    def _play(self, body: str) -> None:
        """The simulator's own control: `{"count": 20, "drop": 0.3, "duplicate": 0.1, "lose_calls": 0.25}`
        plays calls now: `drop` loses single pushes, `lose_calls` whole calls (every push of theirs);
        `"clients": 40` plays them with 40 numbers that call again, instead of a new number each."""
        try:
            order = json.loads(body or "{}")
            count = int(order.get("count", 10))
            drop, duplicate = order.get("drop"), order.get("duplicate")
            lose_calls = float(order.get("lose_calls", 0.0))
            clients = int(order["clients"]) if order.get("clients") is not None else None
            if clients is not None and not 0 < clients <= 10**7:
                raise ValueError("clients must be 1..10000000")
            if not 0 < count <= 1000:
                raise ValueError("count must be 1..1000")
            if not 0.0 <= lose_calls <= 1.0:
                raise ValueError("lose_calls must be 0..1")
        except (ValueError, TypeError, AttributeError) as exc:
            self._answer(400, "application/json", json.dumps({"error": str(exc)}).encode(), {})
            return
        simulator = self.server.simulator
        before = len(simulator.pushes)
        lost: list[str] = []
        callids = simulator.play_mix(
            count, drop=drop, duplicate=duplicate, lose_calls=lose_calls, lost=lost, clients=clients
        )
        played = simulator.pushes[before:]
        answer = {
            "callids": callids,
            "calls_lost": lost,
            "pushes_sent": sum(1 for p in played if not p.dropped),
            "pushes_dropped": sum(1 for p in played if p.dropped),
        }
        self._answer(200, "application/json", json.dumps(answer).encode(), {})

    def _inbound(self, body: str) -> None:
        """`{"phone": "79101234567", "user": "andy", "answer": true, "pace": 2}` (or `"group": "sales"`)
        rings one user or a group now, in the background; answers the call's id at once."""
        try:
            order = json.loads(body or "{}")
            phone = str(order["phone"]).lstrip("+")
            user, group = order.get("user"), order.get("group")
            answer = bool(order.get("answer", True))
            pace = float(order.get("pace", 0))
            if not phone.isdigit() or not 0 <= pace <= 30 or (user is None) == (group is None):
                raise ValueError("give a phone, one of user and group, and pace 0..30 s")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._answer(400, "application/json", json.dumps({"error": str(exc)}).encode(), {})
            return
        simulator = self.server.simulator
        members = next((g.members for g in simulator.groups if g.id == group), [user])
        callid = str(uuid.uuid4())
        simulator._in_background(
            simulator.play_inbound,
            phone,
            group=group,
            rings=user,
            answered_by=(user or members[0]) if answer else None,
            callid=callid,
            pace=pace,
        )
        self._answer(200, "application/json", json.dumps({"callid": callid}).encode(), {})

    def log_message(self, format: str, *args: Any) -> None:
        pass


def seeded_history(count: int, via: str) -> Iterator[HistoryRecord]:
    """`--history-rows`: `count` calls a second apart from 2026-01-01, a third each in, out and missed
    (the benchmarks build their floors from the same records)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(count):
        yield HistoryRecord(
            f"{index:08d}-9f0c-4c1b-8a55-0242ac120002",
            ("in", "out", "missed")[index % 3],
            f"+7910{index % 10_000_000:07d}",
            "andy@tenant.example.ru",
            via,
            start + timedelta(seconds=index),
            index % 30,
            index % 600,
            f"https://tenant.example.ru/records/{index}.mp3" if index % 3 != 2 else "",
        )


def main() -> None:
    """`python -m local.pbx_simulator`: the simulator alone, for benchmarks and manual tries."""
    import argparse

    parser = argparse.ArgumentParser(
        description="The PBX simulator, on loopback: the old API at /sys/crm_api.wcgp (form, `token`) and "
        "crmapi/v1 at /crmapi/v1/... (JSON, the X-API-KEY header), both on one port over the same state.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""Its own control (JSON bodies), besides the PBX's APIs:
  POST /_simulator/calls    {"count": 20, "drop": 0.3, "duplicate": 0.1, "lose_calls": 0.25}
                            plays calls now, losing that share of single pushes and of whole calls
                            (the shares hold for these calls only); answers their ids and calls_lost
  POST /_simulator/inbound  {"phone": "79101234567", "user": "andy", "answer": true, "pace": 2}
                            ("group": "sales" instead of "user") rings now, a step every `pace` s
  POST /_simulator/presence {"user": "andy", "status": "offline"}   (online, offline, away, busy)
                            what crmapi/v1 shows as the user's presence (GET /users?with=status)
  POST /_simulator/webhook  {"type": "sipregs_error", "id": "reg-1", "data": "708: registration lost"}
                            sends a cmd=webhook push (form-encoded, with crm_token) to --crm-url now
  GET|POST /_simulator/tenant  {"api": "both"|"v1"|"legacy", "history_json_501": true,
                            "domain_disabled": true, "history_once": true, "endless_pages": true,
                            "forbidden": ["/history/json"]}   the tenant's modes (as the flags below)
Calls are pushed to --crm-url only. Keys: the old API's `token` and crmapi/v1's X-API-KEY are --token.""",
    )
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument("--token", default="local-pbx-token", help="the PBX's key, for both APIs")
    parser.add_argument("--crm-url", help="where to push calls (loopback only)")
    parser.add_argument("--crm-token")
    parser.add_argument("--history-rows", type=int, default=0, help="seed the history with this many calls")
    parser.add_argument(
        "--api",
        choices=API_MODES,
        default="both",
        help="which APIs the tenant serves: both (default); v1 (the old path answers 404, as on tenants "
        "that no longer serve it); legacy (crmapi/v1 answers 404 pages, so an auto-probe picks the old API)",
    )
    parser.add_argument("--history-json-501", action="store_true", help="GET /crmapi/v1/history/json answers 501")
    parser.add_argument(
        "--domain-disabled",
        action="store_true",
        help='the CRM integration switched off: every crmapi/v1 request answers 401 {"error": "Domain disabled"}',
    )
    parser.add_argument(
        "--history-once", action="store_true", help="a crmapi/v1 history record is returned once, never again"
    )
    parser.add_argument("--endless-pages", action="store_true", help="crmapi/v1 lists always promise one more page")
    args = parser.parse_args()
    simulator = PbxSimulator(token=args.token, crm_url=args.crm_url, crm_token=args.crm_token, play_make_call=False)
    simulator.modes.update(
        {
            "api": args.api,
            "history_json_501": args.history_json_501,
            "domain_disabled": args.domain_disabled,
            "history_once": args.history_once,
            "endless_pages": args.endless_pages,
        }
    )
    simulator.history_records.extend(seeded_history(args.history_rows, simulator.via))
    server = simulator.serve(args.port)
    apis = {"both": f"{server.api_url} and {server.v1_url}", "v1": server.v1_url, "legacy": server.api_url}
    print(f"PBX simulator on {apis[args.api]} (key {args.token})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
