"""A PBX simulator: a real HTTP server that behaves like the live cloud PBX, quirks included.

It keeps users, groups, DND and subscriptions in memory and serves the eight commands on
`/sys/crm_api.wcgp` (POST form or GET query) with the spec's 400/401 bodies. It plays calls: to a
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
MSK = timezone(timedelta(hours=3))
INVALID_PARAMETERS = {"error": "Invalid parameters"}
INVALID_TOKEN = {"error": "Invalid token"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class SimUser:
    name: str
    real_name: str
    ext: str
    telnum: str | None = None
    email: str | None = None


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
    SimUser("andy", "Петров Андрей", "708", "79261234567", "andy@example.ru"),
    SimUser("daria", "Иванова Дария", "705", None, "daria@example.ru"),
    SimUser("mike", "Семенов Михаил", "702"),
    SimUser("serg", "Чижиков Сергей", "709"),
]
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

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.RLock()
        # Set while play_mix plays its batch: `all` for a call whose every push is lost, `drop` and
        # `duplicate` for the batch's shares.
        self._losing = threading.local()
        self._players: list[threading.Thread] = []

    # The API

    def fail_next(self, cmd: str, *faults: str) -> None:
        """Script the next answers to `cmd`: `502`, `500`, `301`, `garbage`, `drop`, `hang:SECONDS`."""
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
        given = form.get(key, "").split("@", 1)[0]
        for user in self.users:
            if given and given in (user.name, user.ext, user.telnum):
                return user
        raise _Invalid(key)

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
        user = self._user(form)
        phone = form.get("phone", "")
        if not phone or (self.reject_plus and phone.startswith("+")) or not phone.lstrip("+").isdigit():
            raise _Invalid("phone")
        callid = str(uuid.uuid4())
        if self.play_make_call and self.crm_url:
            self._in_background(self.play_outbound, user.name, phone, callid=callid)
        shapes: dict[str, Any] = {
            "uuid": lambda: _json(200, {"uuid": callid}),
            "CallID": lambda: _json(200, {"CallID": callid}),
            "text": lambda: (200, "text/plain", callid.encode(), {}),
            "empty": lambda: _json(200, {"result": "ok"}),
        }
        return shapes[self.make_call_shape]()

    def _cmd_history(self, form: dict[str, str]) -> Any:
        start, end = self._range(form)
        kind = form.get("type", "all").lower()
        if kind not in ("all", "in", "out", "missed"):
            raise _Invalid("type")
        limit = form.get("limit")
        if limit is not None and not limit.isdecimal():
            raise _Invalid("limit")
        with self._lock:
            rows = sorted(
                (r for r in self.history_records if start <= r.start < end and kind in ("all", r.type)),
                key=lambda r: r.start,
            )
        if limit is not None:
            rows = rows[: int(limit)]
        body = "".join(row.csv_line(i) for i, row in enumerate(rows)).encode()
        return 200, "text/csv", body, {}

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
    ) -> str:
        """An outbound call (what `makeCall` starts): the user's phone, then the client's."""
        callid = callid or str(uuid.uuid4())
        start = start or datetime.now(tz=UTC).replace(microsecond=0)
        digits = phone.lstrip("+")
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
        if link:
            history["link"] = link
        self.push(**history)
        self._record(
            HistoryRecord(
                callid,
                "out",
                "+" + digits,
                f"{user}@{self.tenant}",
                self.via,
                start,
                0,
                duration if answered else 0,
                link,
            )
        )
        return callid

    def play_mix(
        self,
        count: int,
        *,
        drop: float | None = None,
        duplicate: float | None = None,
        lose_calls: float = 0.0,
        lost: list[str] | None = None,
    ) -> list[str]:
        """`count` calls of every kind, with the given share of pushes dropped and duplicated, and a
        `lose_calls` share of whole calls whose every push is lost (only the history knows them; their
        ids are appended to `lost`). The shares hold for these calls only (the simulator's own
        `drop_rate` and `duplicate_rate` when not given)."""
        self._losing.drop, self._losing.duplicate = drop, duplicate
        try:
            return self._play_mix(count, lose_calls=lose_calls, lost=lost)
        finally:
            self._losing.drop = self._losing.duplicate = None

    def _play_mix(self, count: int, *, lose_calls: float, lost: list[str] | None) -> list[str]:
        callids = []
        for index in range(count):
            phone = f"7910{self._random.randrange(10**7):07d}"
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

    def _serve(self, form: dict[str, str]) -> None:
        simulator = self.server.simulator
        fault = None
        # Seen, even when the answer will be a fault: tests count retries by it.
        with simulator._lock:
            simulator.requests_seen.append(dict(form))
        queue = simulator.faults.get(form.get("cmd", ""))
        if queue:
            fault = queue.popleft()
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault and fault.startswith("hang:"):
            time.sleep(float(fault.split(":", 1)[1]))
        if fault in ("500", "502", "503"):
            page = f"<html><body><h1>{fault} Bad Gateway</h1></body></html>".encode()
            self._answer(int(fault), "text/html", page, {})
            return
        if fault == "301":
            self._answer(301, "text/html", b"", {"Location": "https://other-tenant.example.ru" + API_PATH})
            return
        if fault == "garbage":
            self._answer(200, "text/html", b"<html>maintenance</html>", {})
            return
        self._answer(*simulator.handle(form, record=False))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if path == "/_simulator/calls":
            self._play(body)
            return
        if path == "/_simulator/inbound":
            self._inbound(body)
            return
        if path != API_PATH:
            self._answer(404, "text/plain", b"not found", {})
            return
        self._serve(dict(parse_qsl(body, keep_blank_values=True)))

    def _play(self, body: str) -> None:
        """The simulator's own control: `{"count": 20, "drop": 0.3, "duplicate": 0.1, "lose_calls": 0.25}`
        plays calls now: `drop` loses single pushes, `lose_calls` whole calls (every push of theirs)."""
        try:
            order = json.loads(body or "{}")
            count = int(order.get("count", 10))
            drop, duplicate = order.get("drop"), order.get("duplicate")
            lose_calls = float(order.get("lose_calls", 0.0))
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
        callids = simulator.play_mix(count, drop=drop, duplicate=duplicate, lose_calls=lose_calls, lost=lost)
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

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith("/records/"):
            self._answer(200, "audio/mpeg", b"ID3" + b"\x00" * 1024, {})
            return
        if path != API_PATH:
            self._answer(404, "text/plain", b"not found", {})
            return
        self._serve(dict(parse_qsl(query, keep_blank_values=True)))

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
        description="The PBX simulator, on loopback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""Its own control (JSON bodies), besides the PBX's API at /sys/crm_api.wcgp:
  POST /_simulator/calls    {"count": 20, "drop": 0.3, "duplicate": 0.1, "lose_calls": 0.25}
                            plays calls now, losing that share of single pushes and of whole calls
                            (the shares hold for these calls only); answers their ids and calls_lost
  POST /_simulator/inbound  {"phone": "79101234567", "user": "andy", "answer": true, "pace": 2}
                            ("group": "sales" instead of "user") rings now, a step every `pace` s
Calls are pushed to --crm-url only.""",
    )
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument("--token", default="local-pbx-token")
    parser.add_argument("--crm-url", help="where to push calls (loopback only)")
    parser.add_argument("--crm-token")
    parser.add_argument("--history-rows", type=int, default=0, help="seed the history with this many calls")
    args = parser.parse_args()
    simulator = PbxSimulator(token=args.token, crm_url=args.crm_url, crm_token=args.crm_token, play_make_call=False)
    simulator.history_records.extend(seeded_history(args.history_rows, simulator.via))
    server = simulator.serve(args.port)
    print(f"PBX simulator on {server.api_url} (key {args.token})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
