"""The PBX simulator's crmapi/v1 side, through real HTTP on loopback, against its old API's side.

Both APIs are served on one port over one state: what one writes, the other reads (DND and
subscriptions, with v1's inverted meaning), and a call started on either is played to the CRM the
same way. The tenant modes (v1-only, legacy-only, `Domain disabled`, 501 history, history read once)
are what a client has to cope with on live tenants.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from local.aws import free_port
from local.pbx_simulator import HistoryRecord, PbxSimulator, SimulatorServer
from local.stack import pbx_parameters

KEY = "5b0f3c4e-2d7a-4f8e-9a61-v1-simulator-key"
REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HISTORY_FIELDS = {
    "uid",
    "type",
    "status",
    "client",
    "diversion",
    "telnum_name",
    "destination",
    "user",
    "user_name",
    "group_name",
    "start",
    "wait",
    "duration",
    "record",
    "rating",
    "note",
}


class _Crm(BaseHTTPRequestHandler):
    """A CRM's webhook: keeps what the PBX pushes (content type and form) and answers 200 {}."""

    server: CrmServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        with self.server.lock:
            self.server.pushes.append((self.headers.get("Content-Type") or "", dict(parse_qsl(body))))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CrmServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Crm)
        self.pushes: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/pbx"

    def forms(self) -> list[dict[str, str]]:
        with self.lock:
            return [form for _, form in self.pushes]


@dataclass
class Pbx:
    sim: PbxSimulator
    server: SimulatorServer
    crm: CrmServer

    @property
    def v1(self) -> str:
        return self.server.v1_url

    def get(self, route: str, key: str | None = KEY, **params: Any) -> requests.Response:
        headers = {} if key is None else {"X-API-KEY": key}
        return requests.get(self.v1 + route, params=params, headers=headers, timeout=5)

    def send(self, method: str, route: str, body: Any = None, **params: Any) -> requests.Response:
        return requests.request(
            method, self.v1 + route, json=body, params=params, headers={"X-API-KEY": KEY}, timeout=5
        )

    def legacy(self, cmd: str, **form: str) -> requests.Response:
        return requests.post(self.server.api_url, data={"cmd": cmd, "token": KEY, **form}, timeout=5)

    def control(self, path: str, order: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.server.url}/_simulator/{path}", json=order, timeout=5)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SimulatorServer, CrmServer]]:
    crm = CrmServer()
    threading.Thread(target=crm.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server = PbxSimulator(token=KEY).serve()
    yield server, crm
    server.stop()
    crm.shutdown()
    crm.server_close()


@pytest.fixture
def pbx(servers: tuple[SimulatorServer, CrmServer]) -> Pbx:
    """A fresh simulator (state, modes, history) behind the module's server, pushing to a fresh CRM log."""
    server, crm = servers
    with crm.lock:
        crm.pushes.clear()
    sim = PbxSimulator(token=KEY, base_url=server.url, crm_url=crm.url, crm_token="crm-secret")
    server.simulator = sim
    return Pbx(sim, server, crm)


def walk(pbx: Pbx, route: str, limit: int, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every item of a list, page by page as a client reads it; and the pages' `info`."""
    items: list[dict[str, Any]] = []
    infos: list[dict[str, Any]] = []
    start = 0
    while True:
        answer = pbx.get(route, start=start, limit=limit, **params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"items", "info"}
        items += page["items"]
        infos.append(page["info"])
        if page["info"]["next"] is None:
            return items, infos
        start = page["info"]["next"]
        assert len(infos) < 20


# The key


def test_the_api_key_is_the_old_apis_token(pbx: Pbx) -> None:
    assert pbx.get("/users").status_code == 200
    assert pbx.legacy("accounts").status_code == 200
    for key in (None, "", "wrong", KEY.upper()):
        answer = pbx.get("/users", key=key)
        assert answer.status_code == 401
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {"error": "Invalid API key"}
    # Kept as received, but never the key itself.
    assert [seen["api_key_sent"] for seen in pbx.sim.v1_requests_seen] == [True, False, True, True, True]
    assert KEY not in json.dumps(pbx.sim.v1_requests_seen)
    # The key in the old API's place (`token` in the query) is not v1's way.
    assert requests.get(pbx.v1 + "/users", params={"token": KEY}, timeout=5).status_code == 401


def test_unknown_routes_and_methods(pbx: Pbx) -> None:
    assert pbx.get("/nothing").status_code == 404
    assert pbx.get("/nothing").json() == {"error": "Not found"}
    answer = pbx.send("PUT", "/users")
    assert (answer.status_code, answer.json()) == (405, {"error": "Method Not Allowed"})
    assert pbx.send("GET", "/makecall").status_code == 405
    bad = requests.post(pbx.v1 + "/makecall", data=b"{not json", headers={"X-API-KEY": KEY}, timeout=5)
    assert bad.status_code == 400
    assert "error" in bad.json()


# Lists: the envelope and paging


def test_users_page_by_page_with_next_and_total(pbx: Pbx) -> None:
    users, infos = walk(pbx, "/users", limit=1)
    assert [info["start"] for info in infos] == [0, 1, 2, 3]
    assert [info["next"] for info in infos] == [1, 2, 3, None]
    assert {info["total"] for info in infos} == {4}
    assert {info["limit"] for info in infos} == {1}
    legacy = pbx.legacy("accounts").json()
    assert [u["login"] for u in users] == [a["name"] for a in legacy]
    andy = users[0]
    assert andy == {
        "login": "andy",
        "name": "Петров Андрей",
        "ext": "708",
        "telnum": "79261234567",
        "mobile": "79161112233",
        "email": "andy@example.ru",
        "position": "Менеджер",
        "role": "user",
        "mobile_redirect": {"enabled": True, "forward": "79161112233", "delay": 15},
    }
    assert {u["role"] for u in users} == {"user", "admin", "group_head", "restricted_user"}
    # A page of three, then the rest.
    first = pbx.get("/users", limit=3).json()
    assert [len(first["items"]), first["info"]["next"]] == [3, 3]
    assert len(pbx.get("/users", start=3, limit=3).json()["items"]) == 1
    past = pbx.get("/users", start=10).json()
    assert past == {"items": [], "info": {"start": 10, "limit": 50, "total": 4, "next": None}}


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "x"}, {"limit": "1001"}, {"start": "-1"}])
def test_bad_paging_is_a_400(pbx: Pbx, params: dict[str, str]) -> None:
    answer = pbx.get("/users", **params)
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}


@pytest.mark.parametrize(
    ("route", "key", "expected"),
    [
        ("/groups", "id", ["sales", "gr001"]),
        ("/telnums", "telnum", ["74996861574", "79261234567", "74951234567"]),
        ("/sims", "sim", ["79160000001", "79160000002"]),
    ],
)
def test_every_list_is_an_envelope(pbx: Pbx, route: str, key: str, expected: list[str]) -> None:
    items, infos = walk(pbx, route, limit=2)
    assert [item[key] for item in items] == expected
    assert infos[0]["total"] == len(expected)
    one = pbx.get(f"{route}/{expected[-1]}")
    assert one.status_code == 200
    assert one.json()[key] == expected[-1]
    assert pbx.get(f"{route}/nope").status_code == 404


def test_search_one_user_and_their_groups(pbx: Pbx) -> None:
    found = pbx.get("/users", search="иванова").json()
    assert [u["login"] for u in found["items"]] == ["daria"]
    assert found["info"]["total"] == 1
    for given in ("andy", "708", "79261234567", "andy@tenant.example.ru"):
        assert pbx.get(f"/users/{given}").json()["login"] == "andy", given
    assert "status" not in pbx.get("/users/andy").json()
    assert pbx.get("/users/nobody").json() == {"error": "User not found"}
    groups = pbx.get("/users/andy/groups").json()
    assert groups["items"] == [{"id": "sales", "name": "Отдел продаж", "ext": "701"}]
    legacy = pbx.legacy("groups", user="andy").json()
    assert [g["id"] for g in groups["items"]] == [g["id"] for g in legacy]
    assert pbx.get("/groups/sales").json() == {
        "id": "sales",
        "name": "Отдел продаж",
        "ext": "701",
        "users": ["andy", "mike", "serg"],
    }


def test_presence_with_status_and_its_control(pbx: Pbx) -> None:
    statuses = {u["login"]: u["status"] for u in pbx.get("/users", **{"with": "status"}).json()["items"]}
    assert statuses == {"andy": "online", "daria": "offline", "mike": "online", "serg": "away"}
    changed = pbx.control("presence", {"user": "708", "status": "offline"})
    assert changed.status_code == 200
    assert changed.json()["andy"] == "offline"
    assert pbx.get("/users/andy", **{"with": "status"}).json()["status"] == "offline"
    assert pbx.control("presence", {"user": "andy", "status": "asleep"}).status_code == 400
    assert pbx.control("presence", {"user": "nobody", "status": "online"}).status_code == 400


# DND and subscriptions: one state, read and written through both APIs, v1's meaning inverted


def legacy_dnd(pbx: Pbx, user: str) -> bool:
    state: bool = pbx.legacy("get_dnd", user=user).json()["state"]
    return state


def test_dnd_written_through_v1_is_read_through_the_old_api(pbx: Pbx) -> None:
    assert pbx.get("/users/mike/dnd").json() == {"state": True}  # available: DND off
    assert legacy_dnd(pbx, "mike") is False
    turned_on = pbx.send("DELETE", "/users/mike/dnd")
    assert (turned_on.status_code, turned_on.content) == (204, b"")
    assert legacy_dnd(pbx, "mike") is True
    assert pbx.get("/users/mike/dnd").json() == {"state": False}
    assert pbx.send("POST", "/users/702/dnd").status_code == 204  # by extension
    assert legacy_dnd(pbx, "mike") is False


def test_dnd_written_through_the_old_api_is_read_through_v1(pbx: Pbx) -> None:
    assert pbx.legacy("set_dnd", user="andy", state="true").status_code == 200
    assert pbx.get("/users/andy/dnd").json() == {"state": False}
    assert pbx.legacy("set_dnd", user="andy", state="false").status_code == 200
    assert pbx.get("/users/andy/dnd").json() == {"state": True}
    assert pbx.get("/users/nobody/dnd").status_code == 404


def test_subscription_both_ways(pbx: Pbx) -> None:
    assert pbx.get("/users/andy/subscription", group_id="sales").json() == {"state": True}
    assert pbx.send("DELETE", "/users/andy/subscription", group_id="sales").status_code == 204
    assert pbx.legacy("subscriptionStatus", user="andy", group_id="sales").json() == {"status": "off"}
    assert pbx.get("/users/andy/subscription", group_id="sales").json() == {"state": False}
    # POST switches receiving ON; group_id may come in the JSON body too.
    assert pbx.send("POST", "/users/andy/subscription", {"group_id": "sales"}).status_code == 204
    assert pbx.legacy("subscriptionStatus", user="andy", group_id="sales").json() == {"status": "on"}
    # And the other way: the old API's `off` is v1's `state: false`.
    assert pbx.legacy("subscribeOnCalls", user="serg", group_id="sales", status="off").text == "OK"
    assert pbx.get("/users/serg/subscription", group_id="sales").json() == {"state": False}
    # Without group_id: every group of the user.
    assert pbx.send("POST", "/users/serg/subscription").status_code == 204
    assert pbx.get("/users/serg/subscription").json() == {"state": True}
    assert pbx.get("/users/serg/subscription", group_id="nope").status_code == 400


# Calls


def push_steps(forms: list[dict[str, str]], callid: str) -> list[tuple[str, str]]:
    return [(f["cmd"], f.get("type", "")) for f in forms if f.get("callid") == callid]


def test_makecall_plays_the_call_as_the_old_makecall_does(pbx: Pbx) -> None:
    started = pbx.send("POST", "/makecall", {"phone": "79101234567", "user": "andy"})
    assert started.status_code == 200
    assert set(started.json()) == {"callid"}  # no clid asked, none returned
    old = pbx.legacy("makeCall", user="andy", phone="79101234568")
    pbx.sim.wait_for_calls()
    v1_callid, old_callid = started.json()["callid"], old.json()["uuid"]
    forms = pbx.crm.forms()
    steps = [("event", "OUTGOING"), ("event", "ACCEPTED"), ("event", "COMPLETED"), ("history", "out")]
    assert push_steps(forms, v1_callid) == steps
    assert push_steps(forms, old_callid) == steps
    history = next(f for f in forms if f["callid"] == v1_callid and f["cmd"] == "history")
    assert history["crm_token"] == "crm-secret"
    assert history["user"] == "andy@tenant.example.ru"
    assert [(d.api, d.user, d.callid) for d in pbx.sim.dials] == [
        ("v1", "andy", v1_callid),
        ("legacy", "andy", old_callid),
    ]
    # Both calls are in the history, whichever API reads it.
    today = pbx.get("/history/json", period="today").json()
    assert {r["uid"] for r in today} == {v1_callid, old_callid}


def test_makecall_returns_clid_only_when_it_is_an_allowed_caller_id(pbx: Pbx) -> None:
    allowed = pbx.get("/caller-ids/telnums").json()
    assert allowed == [
        {"telnum": "74996861574", "enabled": True},
        {"telnum": "79261234567", "enabled": True},
        {"telnum": "74951234567", "enabled": False},
    ]
    assert pbx.get("/caller-ids").json()["default"] == "74996861574"
    shown = pbx.send("POST", "/makecall", {"phone": "79101234567", "user": "mike", "clid": "+7 926 123-45-67"}).json()
    assert shown["clid"] == "79261234567"  # the tenant's spelling, not the one asked for
    refused = pbx.send("POST", "/makecall", {"phone": "79101234567", "user": "mike", "clid": "74951234567"}).json()
    assert "clid" not in refused
    pbx.sim.wait_for_calls()
    via = {r.uid: r.via for r in pbx.sim.history_records}
    assert via == {shown["callid"]: "+79261234567", refused["callid"]: "+74996861574"}


def test_makecall_to_a_group_and_its_400s(pbx: Pbx) -> None:
    pbx.send("DELETE", "/users/andy/dnd")  # andy in DND: the group call goes to the next member
    group_call = pbx.send("POST", "/makecall", {"phone": "79101234567", "group": "sales"})
    assert group_call.status_code == 200
    assert pbx.sim.dials[-1].user == "mike"
    for body, field in [
        ({"phone": "79101234567"}, "user"),
        ({"phone": "79101234567", "user": "andy", "group": "sales"}, "user"),
        ({"phone": "79101234567", "user": "nobody"}, "user"),
        ({"phone": "79101234567", "group": "nope"}, "group"),
        ({"phone": "", "user": "andy"}, "phone"),
        ({"phone": "+79101234567", "user": "andy"}, "phone"),  # as the old API on this tenant
    ]:
        answer = pbx.send("POST", "/makecall", body)
        assert (answer.status_code, answer.json()) == (400, {"error": f"Invalid parameters: [{field}]"}), body
    assert len(pbx.sim.dials) == 1


def test_a_scripted_fault_answers_before_anything_is_dialled(pbx: Pbx) -> None:
    pbx.sim.fail_next("POST /makecall", "502")
    answer = pbx.send("POST", "/makecall", {"phone": "79101234567", "user": "andy"})
    assert answer.status_code == 502
    assert answer.headers["Content-Type"] == "text/html"
    assert pbx.sim.dials == []
    assert [s["route"] for s in pbx.sim.v1_requests_seen] == ["/makecall"]
    assert pbx.send("POST", "/makecall", {"phone": "79101234567", "user": "andy"}).status_code == 200
    assert len(pbx.sim.dials) == 1


@pytest.mark.parametrize("fault", ["after:502", "after:drop"])
def test_a_fault_after_the_call_is_placed(pbx: Pbx, fault: str) -> None:
    """The PBX dialled, then the answer was lost: what a client must never dial again for."""
    pbx.sim.fail_next("POST /makecall", fault)
    pbx.sim.fail_next("makeCall", fault)
    with pytest.raises(requests.RequestException) if fault == "after:drop" else contextlib.nullcontext():
        answer = pbx.send("POST", "/makecall", {"phone": "79101234567", "user": "andy"})
        assert answer.status_code == 502
    with pytest.raises(requests.RequestException) if fault == "after:drop" else contextlib.nullcontext():
        old = pbx.legacy("makeCall", user="andy", phone="79101234567")
        assert old.status_code == 502
    assert [d.api for d in pbx.sim.dials] == ["v1", "legacy"]


def test_a_call_back_after_a_missed_call_is_pushed_with_missed_status_2(pbx: Pbx) -> None:
    pbx.sim.play_inbound("79035550123", answered_by=None, start=T0)
    first = pbx.sim.play_outbound("andy", "79035550123", answered=False, start=T0 + timedelta(minutes=1))
    second = pbx.sim.play_outbound("andy", "79035550123", start=T0 + timedelta(minutes=2))
    third = pbx.sim.play_outbound("andy", "79035550123", start=T0 + timedelta(minutes=3))
    history = {f["callid"]: f for f in pbx.crm.forms() if f["cmd"] == "history"}
    assert history[first]["missedStatus"] == "2"
    assert history[second]["missedStatus"] == "2"
    assert "missedStatus" not in history[third]  # the second reached them: nothing waits any more


# History


def seed(sim: PbxSimulator) -> dict[str, str]:
    """Missed calls with each of the PBX's verdicts, and the calls that decide them."""
    return {
        "called-us-back": sim.play_inbound("79100000001", answered_by=None, start=T0),
        "their-call-back": sim.play_inbound("79100000001", answered_by="andy", start=T0 + timedelta(minutes=5)),
        "we-called-back": sim.play_inbound("79100000002", answered_by=None, start=T0),
        "our-call-back": sim.play_outbound("mike", "79100000002", start=T0 + timedelta(minutes=5)),
        "nobody-called": sim.play_inbound("79100000003", answered_by=None, start=T0),
        "we-tried": sim.play_inbound("79100000004", answered_by=None, start=T0),
        "our-attempt": sim.play_outbound("mike", "79100000004", answered=False, start=T0 + timedelta(minutes=5)),
    }


def test_history_json_fields_and_missed_status(pbx: Pbx) -> None:
    calls = seed(pbx.sim)
    window = {"start": "20261102T000000Z", "end": "20261103T000000Z"}
    plain = pbx.get("/history/json", **window)
    assert plain.status_code == 200
    assert plain.headers["Content-Type"] == "application/json"
    assert isinstance(plain.json(), list)
    assert len(plain.json()) == 7
    assert all(set(record) == HISTORY_FIELDS for record in plain.json())
    records = {r["uid"]: r for r in pbx.get("/history/json", process_missed="1", **window).json()}
    verdicts = {name: records[calls[name]].get("missed_status") for name in calls}
    assert verdicts == {
        "called-us-back": 1,
        "their-call-back": None,
        "we-called-back": 2,
        "our-call-back": None,
        "nobody-called": 3,
        "we-tried": 4,
        "our-attempt": None,
    }
    answered = records[calls["their-call-back"]]
    assert answered == {
        "uid": calls["their-call-back"],
        "type": "in",
        "status": "Success",
        "client": "+79100000001",
        "diversion": "+74996861574",
        "telnum_name": "Основной номер",
        "destination": "708",
        "user": "andy",
        "user_name": "Петров Андрей",
        "group_name": "Отдел продаж",
        "start": "2026-11-02T09:05:00Z",
        "wait": 5,
        "duration": 42,
        "record": f"{pbx.server.url}/records/{calls['their-call-back']}.mp3",
        "rating": None,
        "note": "",
    }
    missed = records[calls["nobody-called"]]
    assert (missed["type"], missed["status"], missed["user"], missed["group_name"]) == (
        "in",
        "missed",
        "",
        "Отдел продаж",
    )
    busy = records[calls["our-attempt"]]
    assert (busy["type"], busy["status"], busy["user"], busy["destination"]) == ("out", "Busy", "mike", "79100000004")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": "missed"}, {"called-us-back", "we-called-back", "nobody-called", "we-tried"}),
        ({"type": "out"}, {"our-call-back", "our-attempt"}),
        ({"type": "in"}, {"their-call-back"}),
        ({"user": "mike"}, {"our-call-back", "our-attempt"}),
        ({"user": "708"}, {"their-call-back"}),
        ({"client": "+7 910 000-00-01"}, {"called-us-back", "their-call-back"}),
        ({"groups": "sales"}, {"called-us-back", "their-call-back", "we-called-back", "nobody-called", "we-tried"}),
        ({"diversion": "74996861574", "type": "out"}, {"our-call-back", "our-attempt"}),
        ({"end": "20261102T090100Z"}, {"called-us-back", "we-called-back", "nobody-called", "we-tried"}),
    ],
)
def test_history_filters(pbx: Pbx, filters: dict[str, str], expected: set[str]) -> None:
    calls = seed(pbx.sim)
    names = {uid: name for name, uid in calls.items()}
    window = {"start": "20261102T000000Z", "end": "20261103T000000Z", **filters}
    got = {names[r["uid"]] for r in pbx.get("/history/json", **window).json()}
    assert got == expected
    csv_uids = {row[0] for row in csv.reader(io.StringIO(pbx.get("/history/csv", **window).text))}
    assert {names[uid] for uid in csv_uids} == expected


def test_history_uid_limit_period_and_400s(pbx: Pbx) -> None:
    calls = seed(pbx.sim)
    window = {"start": "20261102T000000Z", "end": "20261103T000000Z"}
    assert [r["uid"] for r in pbx.get("/history/json", uid=calls["we-tried"], **window).json()] == [calls["we-tried"]]
    assert len(pbx.get("/history/json", limit="2", **window).json()) == 2
    now = pbx.sim.play_inbound("79100000009", start=datetime.now(tz=UTC).replace(microsecond=0))
    assert [r["uid"] for r in pbx.get("/history/json", period="today").json()] == [now]
    assert pbx.get("/history/json", first_answered="1", **window).status_code == 200
    for bad in (
        {"type": "odd", **window},
        {"period": "someday"},
        {},
        {"start": "2026-11-02"},
        {"user": "nobody", **window},
    ):
        answer = pbx.get("/history/json", **bad)
        assert (answer.status_code, set(answer.json())) == (400, {"error"}), bad


def test_history_csv_has_no_header_and_no_account_column(pbx: Pbx) -> None:
    pbx.sim.history_records.append(
        HistoryRecord(
            "rated-1", "in", "+79101234567", "andy@tenant.example.ru", "+74996861574", T0, 3, 60, "", rating="5"
        )
    )
    calls = seed(pbx.sim)
    answer = pbx.get("/history/csv", start="20261102T000000Z", end="20261103T000000Z")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv"
    assert answer.text.endswith("\r\n")
    assert "\r\n" in answer.text
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert len(rows) == 8
    assert all(len(row) == 9 for row in rows)
    assert rows[0] == ["rated-1", "in", "+79101234567", "+74996861574", "2026-11-02T09:00:00Z", "3", "60", "", "5"]
    assert not any("@" in cell for row in rows for cell in row)
    by_uid = {row[0]: row for row in rows}
    assert by_uid[calls["nobody-called"]][1] == "missed"
    assert by_uid[calls["our-call-back"]][1] == "out"
    # Rows alternate Z and +03:00 starts, as the old CSV does.
    assert {row[4][-6:] for row in rows} >= {"+03:00"}


def test_inner_history_is_served_empty(pbx: Pbx) -> None:
    seed(pbx.sim)
    assert pbx.get("/history/inner/json", period="today").json() == []
    assert pbx.get("/history/inner/csv", period="today").text == ""
    assert pbx.get("/history/inner/json", period="someday").status_code == 400


# Tenant modes


def test_history_json_501_falls_back_to_csv(pbx: Pbx) -> None:
    seed(pbx.sim)
    assert pbx.control("tenant", {"history_json_501": True}).json()["history_json_501"] is True
    answer = pbx.get("/history/json", start="20261102T000000Z")
    assert (answer.status_code, answer.json()) == (501, {"error": "Not Implemented"})
    assert len(pbx.get("/history/csv", start="20261102T000000Z").text.splitlines()) == 7


def test_domain_disabled_answers_every_v1_request_401(pbx: Pbx) -> None:
    pbx.control("tenant", {"domain_disabled": True})
    for method, route in [
        ("GET", "/users"),
        ("POST", "/makecall"),
        ("GET", "/history/json"),
        ("DELETE", "/users/andy/dnd"),
    ]:
        answer = pbx.send(method, route, {"phone": "79101234567", "user": "andy"} if method == "POST" else None)
        assert (answer.status_code, answer.json()) == (401, {"error": "Domain disabled"}), route
    assert pbx.sim.dials == []
    assert legacy_dnd(pbx, "andy") is False
    assert pbx.legacy("accounts").status_code == 200  # the old API is another matter


def test_a_v1_only_tenant_does_not_serve_the_old_path(pbx: Pbx) -> None:
    pbx.control("tenant", {"api": "v1"})
    old = pbx.legacy("accounts")
    assert old.status_code == 404
    assert old.headers["Content-Type"] == "text/html"
    assert requests.get(pbx.server.api_url, params={"cmd": "accounts", "token": KEY}, timeout=5).status_code == 404
    assert pbx.get("/users", limit=1).status_code == 200


def test_a_legacy_only_tenant_answers_v1_with_a_404_page(pbx: Pbx) -> None:
    """What an auto-probe (`GET /crmapi/v1/users?limit=1`) reads as "the old API"."""
    pbx.control("tenant", {"api": "legacy"})
    probe = pbx.get("/users", limit=1)
    assert probe.status_code == 404
    assert probe.headers["Content-Type"] == "text/html"
    assert probe.text.lstrip().startswith("<html>")
    assert pbx.legacy("accounts").status_code == 200
    pbx.control("tenant", {"api": "both"})
    assert pbx.get("/users", limit=1).status_code == 200


def test_history_once_returns_a_record_a_single_time(pbx: Pbx) -> None:
    calls = seed(pbx.sim)
    pbx.control("tenant", {"history_once": True})
    window = {"start": "20261102T000000Z", "end": "20261103T000000Z"}
    first = pbx.get("/history/json", type="missed", **window).json()
    assert len(first) == 4
    assert pbx.get("/history/json", type="missed", **window).json() == []
    # Read once through JSON, gone from the CSV too; what was not read yet still comes, once.
    rows = pbx.get("/history/csv", **window).text.splitlines()
    assert {row.split(",")[0] for row in rows} == {
        calls["their-call-back"],
        calls["our-call-back"],
        calls["our-attempt"],
    }
    assert pbx.get("/history/csv", **window).text == ""
    # The old API keeps answering every read.
    assert len(pbx.legacy("history", **window).text.splitlines()) == 7


def test_endless_pages_and_forbidden_routes(pbx: Pbx) -> None:
    pbx.control("tenant", {"endless_pages": True, "forbidden": ["/history"]})
    for start in (0, 40, 4000):
        page = pbx.get("/users", start=start, limit=2).json()
        assert len(page["items"]) == 2
        assert page["info"]["next"] == start + 2
        assert page["info"]["total"] > start + 2
    forbidden = pbx.get("/history/json", period="today")
    assert (forbidden.status_code, forbidden.json()) == (403, {"error": "Forbidden"})
    assert pbx.get("/groups").status_code == 200


def test_the_tenant_control_reads_and_refuses(pbx: Pbx) -> None:
    modes = requests.get(f"{pbx.server.url}/_simulator/tenant", timeout=5).json()
    assert modes == {
        "api": "both",
        "history_json_501": False,
        "domain_disabled": False,
        "history_once": False,
        "endless_pages": False,
        "forbidden": [],
    }
    for order in ({"api": "v2"}, {"history_once": "yes"}, {"colour": "red"}, {"forbidden": "/history"}):
        assert pbx.control("tenant", order).status_code == 400, order
    assert requests.post(f"{pbx.server.url}/_simulator/tenant", data=b"[1]", timeout=5).status_code == 400
    assert requests.get(f"{pbx.server.url}/_simulator/tenant", timeout=5).json() == modes


# The cmd=webhook push


def test_the_webhook_control_sends_a_sipregs_error_push(pbx: Pbx) -> None:
    answer = pbx.control(
        "webhook", {"type": "sipregs_error", "id": "reg-1", "data": {"ext": "708", "reason": "timeout"}}
    )
    assert answer.json() == {"id": "reg-1", "statuses": [200]}
    content_type, form = pbx.crm.pushes[-1]
    assert content_type == "application/x-www-form-urlencoded"
    assert form == {
        "cmd": "webhook",
        "type": "sipregs_error",
        "id": "reg-1",
        "data": '{"ext": "708", "reason": "timeout"}',
        "crm_token": "crm-secret",
    }
    default = pbx.control("webhook", {}).json()
    assert pbx.crm.forms()[-1]["type"] == "sipregs_error"
    assert pbx.crm.forms()[-1]["id"] == default["id"]


# The command line and the local stack


def test_the_simulator_command_line_describes_and_sets_the_modes() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "local.pbx_simulator", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for flag in (
        "--api",
        "--history-json-501",
        "--domain-disabled",
        "--history-once",
        "/_simulator/webhook",
        "/_simulator/presence",
        "/_simulator/tenant",
        "crmapi/v1",
        "X-API-KEY",
    ):
        assert flag in help_text, flag
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local.pbx_simulator", "--port", str(port), "--api", "v1", "--domain-disabled"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/crmapi/v1" in banner
        assert "/sys/crm_api.wcgp" not in banner
        modes = requests.get(f"http://127.0.0.1:{port}/_simulator/tenant", timeout=5).json()
        assert (modes["api"], modes["domain_disabled"]) == ("v1", True)
        answer = requests.get(
            f"http://127.0.0.1:{port}/crmapi/v1/users", headers={"X-API-KEY": "local-pbx-token"}, timeout=5
        )
        assert (answer.status_code, answer.json()) == (401, {"error": "Domain disabled"})
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_make_run_pbx_api_picks_the_url_the_functions_get(pbx: Pbx) -> None:
    server = pbx.server
    assert pbx_parameters(server, None) == {"PbxUrl": server.api_url}
    assert pbx_parameters(server, "legacy") == {"PbxUrl": server.api_url, "PbxApi": "legacy"}
    assert pbx_parameters(server, "v1") == {"PbxUrl": f"{server.url}/crmapi/v1", "PbxApi": "v1"}
    assert pbx_parameters(server, "auto") == {"PbxUrl": server.url, "PbxApi": "auto"}
    with pytest.raises(ValueError, match="v2"):
        pbx_parameters(server, "v2")
    # The URL each one gives reaches the simulator's API of that name.
    assert requests.get(pbx_parameters(server, "v1")["PbxUrl"] + "/users", headers={"X-API-KEY": KEY}, timeout=5).ok


def test_make_run_refuses_an_unknown_pbx_api() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local.stack"],
        cwd=REPO,
        env={**os.environ, "PBX_API": "v2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "PBX_API=v2 is not one of legacy, v1, auto" in result.stdout
