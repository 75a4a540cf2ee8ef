"""The local stack on a v1 tenant: `make run PBX_API=v1` (and `auto`, the functions given the simulator's
bare URL): commands, the directory sync, the dialer and reconciliation work as on the old API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local.stack import LocalStack
from tests.conftest import running_stack, wait_for


@pytest.fixture(scope="module", params=["v1", "auto"])
def stack(moto_url: str, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    with running_stack(moto_url, "e2e-v1-key", pbx_api=request.param) as stack:
        yield stack


def invoke(stack: LocalStack, function: str, payload: dict[str, Any]) -> Any:
    answer = boto3.client("lambda", endpoint_url=stack.api.url).invoke(
        FunctionName=function, Payload=json.dumps(payload)
    )
    return json.loads(answer["Payload"].read())


def test_the_functions_command_the_pbx_over_v1(stack: LocalStack) -> None:
    simulator = stack.pbx.simulator
    assert stack.directory.get("ok") is True, stack.directory  # the sync at start went over v1
    users = {u["login"]: u for u in invoke(stack, "CommandsFunction", {"cmd": "listUsers"})["result"]["users"]}
    assert users["andy"]["presence"] == "online"
    assert invoke(stack, "CommandsFunction", {"cmd": "set_dnd", "user": "mike", "state": True})["ok"] is True
    assert simulator.dnd["mike"] is True
    assert invoke(stack, "CommandsFunction", {"cmd": "get_dnd", "user": "mike"})["result"] == {"state": True}
    invoke(stack, "CommandsFunction", {"cmd": "set_dnd", "user": "mike", "state": False})
    placed = invoke(stack, "CommandsFunction", {"cmd": "makeCall", "user": "andy", "phone": "79101234567"})
    assert placed["ok"] is True, placed
    assert [(d.api, d.user) for d in simulator.dials][-1:] == [("v1", "andy")]
    callid = placed["result"]["call_id"]
    call = wait_for(lambda: invoke(stack, "CommandsFunction", {"cmd": "getCall", "callid": callid}).get("result"))
    assert call, callid
    assert call["call"]["direction"] == "out"
    assert not [r for r in simulator.requests_seen if r.get("cmd") in ("accounts", "makeCall", "set_dnd")]


def test_reconciliation_recovers_a_lost_call_over_v1(stack: LocalStack) -> None:
    simulator = stack.pbx.simulator
    lost: list[str] = []
    simulator.play_mix(4, drop=0.0, lose_calls=1.0, lost=lost)  # every push of these calls is lost
    assert len(lost) == 4
    assert invoke(stack, "CommandsFunction", {"cmd": "getCall", "callid": lost[0]})["ok"] is False
    now = datetime.now(tz=UTC)
    window = {"start": (now - timedelta(minutes=5)).isoformat(), "end": (now + timedelta(minutes=1)).isoformat()}
    report = invoke(stack, "HistorySyncFunction", window)
    assert report["rows_seen"] >= 4, report
    for callid in lost:
        assert invoke(stack, "CommandsFunction", {"cmd": "getCall", "callid": callid})["ok"] is True, callid
    assert [r for r in simulator.v1_requests_seen if r["route"] == "/history/json"]
