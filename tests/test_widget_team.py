"""The team view's server side: roles on the widget's API, the team's report and live board, and the
board's WebSocket messages, through the handlers with real API Gateway events, the card function on
the real change streams, and the local stack over HTTP."""

from __future__ import annotations

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
