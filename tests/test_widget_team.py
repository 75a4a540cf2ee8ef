"""The team view's server side: roles on the widget's API, the team's report and live board, and the
board's WebSocket messages, through the handlers with real API Gateway events, the card function on
the real change streams, and the local stack over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from local.lambdas import LocalFunction
from local.stack import LocalStack
from local.widget import issue_token
from tests.test_widget import api_request, functions, pbx, token_for, widget

__all__ = ["functions", "pbx", "widget"]  # the fixtures this module borrows


def make_team(widget: dict[str, LocalFunction]) -> None:
    """The simulator's tenant (sales: andy, mike, serg; gr001: daria) with roles mapped: mike
    supervises sales, daria is an admin, andy and serg are managers."""
    commands = widget["CommandsFunction"]
    for mapping in (
        {"cmd": "mapUser", "login": "mike", "role": "supervisor", "departments": ["sales"]},
        {"cmd": "mapUser", "login": "daria", "role": "admin"},
    ):
        answer = commands.invoke(mapping)
        assert answer["ok"], answer
    from tests.conftest import drop_process_caches

    drop_process_caches(keep_clients=True)  # the widget API's directory cache, as after its minutes


def get(widget: dict[str, LocalFunction], user: str, path: str, query: str = "") -> tuple[int, Any]:
    status, _, answer = api_request(widget, token_for(widget, user), "GET", path, path, None, query)
    return status, answer


# --- roles: /api/me and /api/team/report ------------------------------------------------------------


def test_me_says_the_users_name_role_and_departments_from_the_directory(widget: dict[str, LocalFunction]) -> None:
    make_team(widget)
    status, answer = get(widget, "mike", "/api/me")
    assert status == 200, answer
    me = answer["result"]
    assert (me["login"], me["name"], me["role"], me["departments"]) == (
        "mike",
        "Семенов Михаил",
        "supervisor",
        ["sales"],
    )
    assert isinstance(me["expires_at"], int)
    andy = get(widget, "andy", "/api/me")[1]["result"]
    assert (andy["name"], andy["role"], andy["departments"]) == ("Петров Андрей", "manager", [])
    daria = get(widget, "daria", "/api/me")[1]["result"]
    assert (daria["role"], daria["departments"]) == ("admin", [])


def test_a_manager_is_refused_the_team_report_and_a_supervisor_sees_their_department(
    widget: dict[str, LocalFunction],
) -> None:
    make_team(widget)
    status, answer = get(widget, "andy", "/api/team/report", "period=today")
    assert (status, answer["ok"], answer["error"]["code"]) == (403, False, "forbidden")
    # The browser cannot make itself a supervisor: the role is the directory's, whatever is asked.
    status, answer = get(widget, "andy", "/api/team/report", "period=today&viewer=mike")
    assert status == 403
    status, answer = get(widget, "mike", "/api/team/report", "period=today")
    assert status == 200, answer
    report = answer["result"]
    assert {"from", "to", "zone", "managers", "departments", "total"} <= set(report)
    assert report["from"] == report["to"]
    status, answer = get(widget, "daria", "/api/team/report", "from=2026-12-01&to=2026-12-05")
    assert status == 200, answer
    assert (answer["result"]["from"], answer["result"]["to"]) == ("2026-12-01", "2026-12-05")


def test_the_team_reports_query_is_checked_unknown_fields_are_a_400(widget: dict[str, LocalFunction]) -> None:
    make_team(widget)
    for query, says in (
        ("period=today&viewer=daria", "viewer: not a field of this query (it takes: from, period, to)"),
        ("period=someday", "period"),
        ("", "give a period or both from and to"),
        ("from=2026-12-05&to=2026-12-01", "to is before from"),
        ("from=yesterday&to=2026-12-01", "from"),
        ("period=today&from=2026-12-01", "not both"),
    ):
        status, answer = get(widget, "mike", "/api/team/report", query)
        assert (status, answer["error"]["code"]) == (400, "invalid_request"), (query, answer)
        assert says in answer["error"]["message"], (query, answer)


def test_the_supervisors_report_is_the_report_commands_for_them_as_viewer(
    widget: dict[str, LocalFunction], aws: dict[str, str]
) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from pbxbridge.domain.reports import Contribution
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.storage.reports import DynamoReportStore

    make_team(widget)
    store = DynamoReportStore(dynamodb_client(), aws["ReportsTable"])
    today = datetime.now(UTC).astimezone(ZoneInfo("Europe/Moscow")).date()
    store.apply("call#t1", "1".zfill(40), Contribution(today, "andy", {"inbound": 1, "answered": 1}))
    store.apply("call#t2", "2".zfill(40), Contribution(today, "daria", {"inbound": 1, "missed": 1}))
    status, answer = get(widget, "mike", "/api/team/report", "period=today")
    assert status == 200, answer
    command = widget["CommandsFunction"].invoke({"cmd": "report", "period": "today", "viewer": "mike"})
    assert answer == command
    assert [row["login"] for row in answer["result"]["managers"]] == ["andy"]  # daria is not in sales
    assert answer["result"]["total"]["inbound"] == 1


# --- through the local stack (HTTP server, authorizer, template routes) ----------------------------


@pytest.fixture(scope="module")
def team_stack(stack: LocalStack) -> LocalStack:
    commands = stack.api.functions["CommandsFunction"]
    for mapping in (
        {"cmd": "mapUser", "login": "mike", "role": "supervisor", "departments": ["sales"]},
        {"cmd": "mapUser", "login": "daria", "role": "admin"},
    ):
        assert commands.invoke(mapping)["ok"]
    return stack


def stack_get(stack: LocalStack, user: str, path: str, **query: str) -> requests.Response:
    token = issue_token(stack.api.functions["CommandsFunction"], user)["token"]
    return requests.get(
        f"{stack.api.url}{path}", params=query, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


def test_the_team_routes_through_the_local_stack(team_stack: LocalStack) -> None:
    me = stack_get(team_stack, "mike", "/api/me")
    assert me.status_code == 200, me.text
    assert (me.json()["result"]["role"], me.json()["result"]["departments"]) == ("supervisor", ["sales"])
    refused = stack_get(team_stack, "andy", "/api/team/report", period="today")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    report = stack_get(team_stack, "mike", "/api/team/report", period="this_week")
    assert report.status_code == 200, report.text
    assert report.json()["result"]["zone"]
    assert stack_get(team_stack, "mike", "/api/team/report", period="this_week", owner="x").status_code == 400
    assert requests.get(f"{team_stack.api.url}/api/team/report?period=today", timeout=10).status_code == 401
    board = stack_get(team_stack, "mike", "/api/team/board")
    assert board.status_code == 200, board.text
    assert {p["login"] for p in board.json()["result"]["people"]} == {"andy", "mike", "serg"}
    assert board.json()["result"]["departments"][0]["id"] == "sales"
    assert stack_get(team_stack, "andy", "/api/team/board").status_code == 403


# --- the board's calls: decided from the stream's images, kept by stream position -----------------


def team_directory() -> Any:
    from pbxbridge.domain.directory import Department, Directory, PbxUser

    return Directory(
        users=(
            PbxUser("andy", real_name="Andy", groups=("sales",)),
            PbxUser("mike", real_name="Mike", groups=("sales",), role_override="supervisor"),
            PbxUser("zoe", real_name="Zoe", groups=("support",)),
            PbxUser("daria", real_name="Daria", role_override="admin"),
            PbxUser("olga", real_name="Olga", groups=("sales",), role_override="admin", active=False),
        ),
        departments=(Department("sales", "Sales"), Department("support", "Support")),
    )


def test_a_call_is_on_the_board_from_its_first_ring_to_its_end_and_never_after() -> None:
    from pbxbridge.domain.board import board_change

    ringing = {"callid": "c1", "client": "+79035550011", "rang_at": "t1", "legs_rang": ["andy"]}
    two_legs = {**ringing, "legs_rang": ["andy", "mike"]}
    answered = {**two_legs, "accepted_at": "t2", "accepted_by": "andy"}
    ended = {**answered, "completed_at": "t3"}
    told = {**ended, "outcome": "answered", "duration": 30}
    recorded = {**told, "recording_key": "r"}
    start = board_change(None, ringing)
    assert start is not None
    assert (start.callid, start.ended) == ("c1", False)
    assert board_change(ringing, two_legs) is not None
    assert board_change(two_legs, answered) is not None
    assert board_change(answered, answered) is None
    end = board_change(answered, ended)
    assert end is not None
    assert end.ended
    assert board_change(ended, told) is None  # the history's outcome after the end: already off the board
    assert board_change(told, recorded) is None
    # A call that reaches us ended (reconciliation's history row) never comes on the board.
    assert board_change(None, told) is None
    assert board_change(None, {"callid": "c2", "outcome": "missed"}) is None
    assert board_change(None, None) is None


def test_the_board_is_told_to_the_supervisors_and_admins_who_see_someone_on_the_call() -> None:
    from pbxbridge.domain.board import board_call, callback_board_watchers, watchers

    directory = team_directory()
    assert watchers({"andy"}, directory) == {"mike", "daria"}  # never andy's fellow managers, nor inactive olga
    assert watchers({"zoe"}, directory) == {"daria"}
    assert watchers({"mike"}, directory) == {"mike", "daria"}
    assert watchers(set(), directory) == set()
    assert callback_board_watchers({"g_sales"}, directory) == {"mike", "daria"}
    assert callback_board_watchers({"g_support", "unassigned"}, directory) == {"daria"}
    call = {
        "callid": "c1",
        "direction": "in",
        "client": "+79101234567",
        "rang_at": "2026-12-05T09:59:00Z",
        "legs_rang": ["andy@tenant", "zoe"],
    }
    shown = board_call(call, directory, "RU", "Ivan")
    assert shown == {
        "callid": "c1",
        "direction": "in",
        "state": "ringing",
        "people": ["andy", "zoe"],
        "client": "+79101234567",
        "client_national": "8 (910) 123-45-67",
        "contact_name": "Ivan",
        "since": "2026-12-05T09:59:00Z",
        "answered_at": None,
    }
    answered = {**call, "accepted_at": "2026-12-05T09:59:10Z", "accepted_by": "zoe"}
    assert board_call(answered, directory, "RU", None)["people"] == ["zoe"]  # whoever took it, only


class Connections:
    """ConnectionsTable as the card function uses it: one connection per user, `<login>-1`."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def of(self, login: str) -> list[str]:
        self.queries.append(login)
        return [f"{login}-1"]

    def disconnected(self, connection_id: str) -> None:
        raise AssertionError("nobody went away")


def posting(widget: dict[str, LocalFunction]) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """The card function's own dependencies (its real stores), posting into a list."""
    import json
    from dataclasses import replace

    from pbxbridge.widget.push import default_dependencies

    posted: list[tuple[str, dict[str, Any]]] = []

    def post(connection_id: str, data: bytes) -> None:
        posted.append((connection_id, json.loads(data)))

    return replace(default_dependencies(), post=post, connections=Connections()), posted


def board_posts(posted: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    return sorted((c, m["type"], m["call"]["state"]) for c, m in posted if m["type"] == "board.call")


def test_the_card_function_keeps_the_boards_calls_and_a_replay_never_brings_an_ended_call_back(
    widget: dict[str, LocalFunction], webhook: Any, aws: dict[str, str], moto_url: str
) -> None:
    import random

    from pbxbridge.storage.board import DynamoBoardStore
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.widget.push import handle_card_stream
    from tests.test_call_events import Streams

    make_team(widget)
    board = DynamoBoardStore(dynamodb_client(), aws["BoardTable"])
    deps, posted = posting(widget)
    streams = Streams(moto_url)
    streams.records(aws["CallsTable"])  # from here on
    call = {"phone": "79035550011", "callid": "board-1"}
    webhook.push(cmd="event", type="INCOMING", user="andy", **call)
    first = streams.records(aws["CallsTable"])
    assert handle_card_stream({"Records": first}, None, deps) == {"batchItemFailures": []}
    (live,) = board.live_calls()
    assert (live["callid"], live["state"], live["people"], live["client"]) == (
        "board-1",
        "ringing",
        ["andy"],
        "+79035550011",
    )
    assert board_posts(posted) == [("daria-1", "board.call", "ringing"), ("mike-1", "board.call", "ringing")]
    assert ("andy-1", "card") in [(c, m["type"]) for c, m in posted]  # andy's own card as before

    webhook.push(cmd="event", type="ACCEPTED", user="andy", **call)
    webhook.push(cmd="event", type="COMPLETED", user="andy", **call)
    rest = streams.records(aws["CallsTable"])
    posted.clear()
    assert handle_card_stream({"Records": rest}, None, deps) == {"batchItemFailures": []}
    assert board.live_calls() == []
    assert board_posts(posted) == [
        ("daria-1", "board.call", "answered"),
        ("daria-1", "board.call", "ended"),
        ("mike-1", "board.call", "answered"),
        ("mike-1", "board.call", "ended"),
    ]
    # The stream hands records back (a retried batch), twice, in any order: nothing comes back, no one is told.
    posted.clear()
    replay = first + rest + first
    random.Random(15).shuffle(replay)
    for record in replay:
        handle_card_stream({"Records": [record]}, None, deps)
    assert board.live_calls() == []
    assert board_posts(posted) == []
    items = client_scan(moto_url, aws["BoardTable"])
    assert [(i["kind"]["S"], i["id"]["S"], "ended" in i) for i in items] == [("call", "board-1", True)]
    # A call whose end never came leaves the board when its item expires, before DynamoDB's TTL sweeps it.
    assert board.keep_call("lost-1", "9" * 40, {"callid": "lost-1", "people": ["andy"]}, now=time.time() - 13 * 3600)
    assert board.live_calls() == []
    assert board.keep_call("lost-1", "9" * 40, None) is False  # the same position twice: kept once


def client_scan(moto_url: str, table: str) -> list[dict[str, Any]]:
    from local.aws import client

    return list(client("dynamodb", moto_url).scan(TableName=table)["Items"])


# --- the board's snapshot -----------------------------------------------------------------------------


def open_callback(owner: str, phone: str, first: datetime, escalated: bool = False) -> Any:
    from pbxbridge.domain.callbacks import Callback, CallbackStatus

    return Callback(
        id=f"{phone}/m-{owner}-{first:%H%M}",
        phone=phone,
        owner=owner,
        status=CallbackStatus.OPEN,
        missed_count=1,
        missed_callids=(f"m-{owner}-{first:%H%M}",),
        first_missed_at=first,
        last_missed_at=first,
        overdue_since=first + timedelta(minutes=15) if escalated else None,
    )


def test_call_back_ages_count_business_time_and_colour_the_oldest_by_the_sla() -> None:
    from pbxbridge.domain.board import callbacks_summary, sla_of
    from pbxbridge.domain.working_time import WorkingCalendar

    sla = timedelta(minutes=15)
    assert [sla_of(s, sla) for s in (0, 599, 600, 899, 900, 5000)] == ["ok", "ok", "due", "due", "overdue", "overdue"]
    assert sla_of(10, sla, escalated=True) == "overdue"
    office = WorkingCalendar.parse("Europe/Moscow;mon-fri 09:00-18:00")
    # Friday 4 December 2026, 17:55 Moscow; now: Monday 09:05 Moscow. Business time: 5 + 5 minutes.
    friday = datetime(2026, 12, 4, 14, 55, tzinfo=UTC)
    monday = datetime(2026, 12, 7, 6, 5, tzinfo=UTC)
    recent = open_callback("andy", "+79035550011", monday - timedelta(minutes=2))
    assert callbacks_summary([recent, open_callback("andy", "+79035550012", friday)], office, sla, monday) == {
        "open": 2,
        "overdue": 0,
        "oldest_missed_at": "2026-12-04T14:55:00Z",
        "oldest_age_seconds": 600,
        "sla": "due",
    }
    wall = WorkingCalendar.wall_time("Europe/Moscow")  # no calendar: wall time, the weekend counts
    summary = callbacks_summary([open_callback("andy", "+79035550012", friday)], wall, sla, monday)
    assert (summary["overdue"], summary["sla"], summary["oldest_age_seconds"]) == (1, "overdue", 227400)
    assert callbacks_summary([], office, sla, monday)["sla"] is None
    escalated = open_callback("andy", "+79035550013", monday - timedelta(minutes=1), escalated=True)
    assert callbacks_summary([escalated], office, sla, monday)["sla"] == "overdue"


def seed_board(aws: dict[str, str], now: datetime) -> None:
    """Live calls (andy on one, zoe's not in sales), DND states and open call-backs, in the real tables."""
    from pbxbridge.domain.directory import PbxUser
    from pbxbridge.storage.board import DynamoBoardStore
    from pbxbridge.storage.callbacks import callback_item
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client, wire_item

    client = dynamodb_client()
    DynamoDirectoryStore(client, aws["DirectoryTable"]).save_user(PbxUser("zoe", real_name="Zoe", groups=("support",)))
    board = DynamoBoardStore(client, aws["BoardTable"])
    andys = {
        "callid": "live-1",
        "direction": "in",
        "state": "answered",
        "people": ["andy"],
        "client": "+79101234567",
        "client_national": "8 (910) 123-45-67",
        "contact_name": "Ivan",
        "since": "2026-12-05T09:59:00Z",
        "answered_at": "2026-12-05T09:59:10Z",
    }
    assert board.keep_call("live-1", "1".zfill(40), andys)
    assert board.keep_call("live-2", "2".zfill(40), {**andys, "callid": "live-2", "people": ["zoe"]})
    assert board.keep_call("ended-1", "3".zfill(40), None)
    board.record_dnd("serg", True, now - timedelta(minutes=2))
    board.record_dnd("zoe", True, now - timedelta(minutes=2))
    for callback in (
        open_callback("andy", "+79035550011", now - timedelta(minutes=5)),
        open_callback("andy", "+79035550012", now - timedelta(minutes=20)),
        open_callback("g_sales", "+79035550013", now - timedelta(minutes=1)),
        open_callback("zoe", "+79035550014", now - timedelta(minutes=30)),
        open_callback("g_support", "+79035550015", now - timedelta(minutes=30)),
    ):
        client.put_item(TableName=aws["CallbacksTable"], Item=wire_item(callback_item(callback)))


def test_the_board_shows_a_supervisor_their_department_live_and_a_manager_nothing(
    widget: dict[str, LocalFunction], aws: dict[str, str], dynamodb_requests: list[str]
) -> None:
    make_team(widget)
    now = datetime.now(UTC).replace(microsecond=0)
    seed_board(aws, now)
    status, answer = get(widget, "andy", "/api/team/board")
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert get(widget, "mike", "/api/team/board", "login=andy")[0] == 400
    mike = token_for(widget, "mike")
    api_request(widget, mike, "GET", "/api/team/board", "/api/team/board")  # warm: the directory is cached now
    dynamodb_requests.clear()
    status, _, answer = api_request(widget, mike, "GET", "/api/team/board", "/api/team/board")
    assert status == 200, answer
    # The calls, the DND states, the calendar, the departments' names, and one query per person and
    # department for the open call-backs (andy, mike, serg; sales): whatever the number of calls.
    assert sorted(dynamodb_requests) == sorted(["Query"] * 3 + ["GetItem"] + ["Query"] * 4)
    board = answer["result"]
    assert board["sla_seconds"] == 900
    assert abs(datetime.fromisoformat(board["as_of"]) - now) < timedelta(minutes=1)
    people = {person["login"]: person for person in board["people"]}
    assert [p["login"] for p in board["people"]] == ["andy", "mike", "serg"]  # by name: Петров, Семенов, Чижиков
    andy = people["andy"]
    assert andy["name"] == "Петров Андрей"
    assert andy["departments"] == ["sales"]
    assert [c["callid"] for c in andy["calls"]] == ["live-1"]
    assert andy["calls"][0] == {
        "callid": "live-1",
        "direction": "in",
        "state": "answered",
        "client": "+79101234567",
        "client_national": "8 (910) 123-45-67",
        "contact_name": "Ivan",
        "since": "2026-12-05T09:59:00Z",
        "answered_at": "2026-12-05T09:59:10Z",
    }
    assert andy["dnd"] is None
    assert andy["callbacks"]["open"] == 2
    assert (andy["callbacks"]["overdue"], andy["callbacks"]["sla"]) == (1, "overdue")
    assert andy["callbacks"]["oldest_missed_at"] == (now - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert 1190 <= andy["callbacks"]["oldest_age_seconds"] <= 1300
    assert people["serg"]["dnd"] == {"on": True, "as_of": (now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert people["serg"]["calls"] == []
    assert people["mike"]["callbacks"] == {
        "open": 0,
        "overdue": 0,
        "oldest_missed_at": None,
        "oldest_age_seconds": None,
        "sla": None,
    }
    (sales,) = board["departments"]
    assert (sales["id"], sales["name"], sales["callbacks"]["open"], sales["callbacks"]["sla"]) == (
        "sales",
        "Отдел продаж",
        1,
        "ok",
    )
    # Nothing of zoe (support) reaches mike: not her call, her DND or her call-backs.
    assert "zoe" not in str(board)
    assert "live-2" not in str(board)
    # An admin sees everyone and every department.
    everyone = get(widget, "daria", "/api/team/board")[1]["result"]
    assert {p["login"] for p in everyone["people"]} == {"andy", "daria", "mike", "serg", "zoe"}
    assert [d["id"] for d in everyone["departments"]] == ["gr001", "sales", "support"]
    zoe = next(p for p in everyone["people"] if p["login"] == "zoe")
    assert ([c["callid"] for c in zoe["calls"]], zoe["dnd"]["on"], zoe["callbacks"]["open"]) == (["live-2"], True, 1)


# --- DND: recorded after the PBX answered, told when it changed ---------------------------------------


def test_the_dnd_the_pbx_confirmed_is_recorded_and_told_to_who_sees_the_user_when_it_changes(
    widget: dict[str, LocalFunction], pbx: Any, aws: dict[str, str], moto_url: str
) -> None:
    from pbxbridge.storage.board import DynamoBoardStore
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.widget.push import handle_card_stream
    from tests.test_call_events import Streams

    make_team(widget)
    simulator = pbx[0]
    simulator.dnd.clear()
    board = DynamoBoardStore(dynamodb_client(), aws["BoardTable"])
    deps, posted = posting(widget)
    streams = Streams(moto_url)
    streams.records(aws["BoardTable"])  # from here on
    andy = token_for(widget, "andy")
    status, _, answer = api_request(widget, andy, "PUT", "/api/dnd", "/api/dnd", b'{"state": true}')
    assert (status, answer["result"]["state"]) == (200, True)
    assert board.dnd_states()["andy"]["on"] is True
    # A service's get_dnd, naming the user by extension: recorded under the login, as the PBX said it.
    assert widget["CommandsFunction"].invoke({"cmd": "get_dnd", "user": "709"})["result"]["state"] is False
    # A refused switch records nothing.
    assert not widget["CommandsFunction"].invoke({"cmd": "set_dnd", "user": "nobody", "state": True})["ok"]
    states = board.dnd_states()
    assert sorted(states) == ["andy", "serg"]
    assert states["serg"]["on"] is False
    assert datetime.fromisoformat(states["andy"]["as_of"]) > datetime.now(UTC) - timedelta(minutes=1)
    # The same state read again (a get_dnd after the switch) changes nothing anyone sees; switched off, it does.
    assert api_request(widget, andy, "GET", "/api/dnd", "/api/dnd")[2]["result"]["state"] is True
    assert api_request(widget, andy, "PUT", "/api/dnd", "/api/dnd", b'{"state": "off"}')[0] == 200
    # The board's calls share the stream: the local stack, unlike AWS's filter, hands them on too.
    assert board.keep_call("noise-1", "1".zfill(40), {"callid": "noise-1", "people": ["andy"]})
    records = streams.records(aws["BoardTable"])
    assert len(records) >= 5  # (the re-read within the same second writes an identical item: no record)
    assert handle_card_stream({"Records": records}, None, deps) == {"batchItemFailures": []}
    told = [(c, m["login"], m["dnd"]["on"]) for c, m in posted]
    assert sorted(told) == [
        ("daria-1", "andy", False),
        ("daria-1", "andy", True),
        ("daria-1", "serg", False),
        ("mike-1", "andy", False),
        ("mike-1", "andy", True),
        ("mike-1", "serg", False),
    ]
    assert {m["type"] for _, m in posted} == {"board.dnd"}
    # And the board shows it.
    answer = get(widget, "mike", "/api/team/board")[1]["result"]
    assert {p["login"]: p["dnd"]["on"] if p["dnd"] else None for p in answer["people"]} == {
        "andy": False,
        "mike": None,
        "serg": False,
    }


def test_board_dnd_is_told_on_a_change_of_state_never_on_a_re_read() -> None:
    from pbxbridge.domain.board import dnd_change

    on = {"kind": "dnd", "id": "andy", "on": True, "as_of": "2026-12-05T09:58:00Z"}
    assert dnd_change(None, on) == {"type": "board.dnd", "login": "andy", "dnd": {"on": True, "as_of": on["as_of"]}}
    assert dnd_change(on, {**on, "as_of": "2026-12-05T10:30:00Z"}) is None
    off = {**on, "on": False, "as_of": "2026-12-05T10:31:00Z"}
    assert dnd_change(on, off) == {"type": "board.dnd", "login": "andy", "dnd": {"on": False, "as_of": off["as_of"]}}
    assert dnd_change(off, None) is None


# --- call-backs: the board re-reads when one opens, changes owner or closes ---------------------------


def test_board_callbacks_is_posted_to_who_sees_the_owner_when_a_call_back_opens_moves_or_closes(
    widget: dict[str, LocalFunction], aws: dict[str, str], moto_url: str
) -> None:
    from pbxbridge.domain.callbacks import CallbackStatus
    from pbxbridge.storage.callbacks import callback_item
    from pbxbridge.storage.dynamodb import dynamodb_client, wire_item
    from pbxbridge.widget.push import handle_card_stream
    from tests.test_call_events import Streams

    make_team(widget)
    deps, posted = posting(widget)
    streams = Streams(moto_url)
    streams.records(aws["CallbacksTable"])  # from here on
    client = dynamodb_client()
    now = datetime.now(UTC).replace(microsecond=0)
    opened = open_callback("andy", "+79035550011", now - timedelta(minutes=3))

    def save(callback: Any) -> list[tuple[str, str]]:
        client.put_item(TableName=aws["CallbacksTable"], Item=wire_item(callback_item(callback)))
        posted.clear()
        records = streams.records(aws["CallbacksTable"])
        assert handle_card_stream({"Records": records}, None, deps) == {"batchItemFailures": []}
        return sorted((c, m["type"]) for c, m in posted)

    assert save(opened) == [("andy-1", "callbacks"), ("daria-1", "board.callbacks"), ("mike-1", "board.callbacks")]
    again = opened.model_copy(update={"missed_count": 2, "last_missed_at": now})
    assert save(again) == [("andy-1", "callbacks")]  # one more missed call: the board's counts are the same
    moved = again.model_copy(update={"owner": "g_sales"})
    assert ("mike-1", "board.callbacks") in save(moved)
    closed = moved.model_copy(update={"status": CallbackStatus.CLOSED, "closed_at": now, "closed_by": "serg"})
    assert [p for p in save(closed) if p[1] == "board.callbacks"] == [
        ("daria-1", "board.callbacks"),
        ("mike-1", "board.callbacks"),
    ]
    # daria's department's call-back: only the admin's board shows it (mike heads sales, not gr001).
    other = open_callback("g_gr001", "+79035550012", now)
    assert [p for p in save(other) if p[1] == "board.callbacks"] == [("daria-1", "board.callbacks")]
