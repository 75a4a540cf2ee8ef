"""The commands function on a v1 tenant: `PbxApi=v1` (and `auto` on the bare tenant URL) through the
handler, with the same envelopes, results and error codes as on the old API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from local.aws import client
from local.lambdas import LocalFunction
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.template import Template

KEY = "7c1e0b6f-8a55-4c1b-9f0c-0242ac120002"  # v1 keys are UUIDs
PHONE = "79101234567"


@pytest.fixture(scope="module")
def pbx() -> Iterator[tuple[PbxSimulator, SimulatorServer]]:
    simulator = PbxSimulator(token=KEY, play_make_call=False)
    server = simulator.serve()
    yield simulator, server
    server.stop()


@pytest.fixture(scope="module")
def commands_function(template: Template, pbx: tuple[PbxSimulator, SimulatorServer]) -> LocalFunction:
    parameters = {**template.parameters, "PbxUrl": pbx[1].v1_url, "PbxApi": "v1"}
    return LocalFunction(Template(parameters=parameters).functions()["CommandsFunction"])


def reset(moto_url: str, simulator: PbxSimulator, url: str, api: str, key: str = KEY) -> None:
    """A fresh PBX state, the key in SSM, and this process's caches of settings, clients and verdicts gone."""
    from aws_lambda_powertools.utilities import parameters

    from pbxbridge import commands
    from pbxbridge.pbx.api import forget_detected
    from pbxbridge.pbx.configured import client_for
    from pbxbridge.settings import commands_settings

    simulator.v1_requests_seen.clear()
    simulator.requests_seen.clear()
    simulator.faults.clear()
    simulator.dials.clear()
    simulator.dnd.clear()
    simulator.subscriptions.clear()
    simulator.modes.domain_disabled = False
    simulator.modes.api = "both"
    client("ssm", moto_url).put_parameter(Name="/pbxbridge/pbx-token", Value=key, Type="SecureString", Overwrite=True)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    os.environ["PBX_URL"], os.environ["PBX_API"] = url, api
    for cache in (commands.default_dependencies, client_for, commands_settings):
        cache.cache_clear()
    forget_detected()


@pytest.fixture
def simulator(
    aws: dict[str, str], moto_url: str, pbx: tuple[PbxSimulator, SimulatorServer], commands_function: LocalFunction
) -> Iterator[PbxSimulator]:
    reset(moto_url, pbx[0], pbx[1].v1_url, "v1")
    yield pbx[0]
    # Back to what the template gives every other test's functions.
    reset(moto_url, pbx[0], "https://tenant.example.ru", "auto")


def invoke(function: LocalFunction, payload: Any) -> Any:
    return function.invoke(payload)


def v1_seen(simulator: PbxSimulator, method: str, route: str) -> int:
    return sum(1 for r in simulator.v1_requests_seen if (r["method"], r["route"]) == (method, route))


def test_the_function_is_configured_for_v1(commands_function: LocalFunction, simulator: PbxSimulator) -> None:
    assert commands_function.spec.environment["PBX_API"] == "v1"


def test_every_pbx_command_answers_as_on_the_old_api(commands_function: LocalFunction, simulator: PbxSimulator) -> None:
    accounts = invoke(commands_function, {"cmd": "accounts"})
    assert accounts["ok"] is True
    andy = accounts["result"][0]
    assert {k: andy[k] for k in ("name", "real_name", "ext", "telnum", "email")} == {
        "name": "andy",
        "real_name": "Петров Андрей",
        "ext": "708",
        "telnum": "79261234567",
        "email": "andy@example.ru",
    }
    assert andy["presence"] == "online"
    assert invoke(commands_function, {"cmd": "groups", "user": "daria"}) == {
        "ok": True,
        "result": [{"id": "gr001", "real_name": "Бухгалтерия", "ext": "706"}],
    }
    assert invoke(commands_function, {"cmd": "set_dnd", "user": "mike", "state": True}) == {
        "ok": True,
        "result": {"state": True},
    }
    assert simulator.dnd == {"mike": True}
    assert v1_seen(simulator, "DELETE", "/users/mike/dnd") == 1  # DND on is v1's DELETE
    assert invoke(commands_function, {"cmd": "get_dnd", "user": "mike"})["result"] == {"state": True}
    off = {"cmd": "subscribeOnCalls", "user": "andy", "group_id": "sales", "status": "off"}
    assert invoke(commands_function, off)["result"] == {"status": "off"}
    assert simulator.subscriptions == {("andy", "sales"): False}
    status = invoke(commands_function, {"cmd": "subscriptionStatus", "user": "andy", "group_id": "sales"})
    assert status["result"] == {"status": "off"}
    assert simulator.requests_seen == []  # not one request to the old API


def test_make_call_and_history(commands_function: LocalFunction, simulator: PbxSimulator) -> None:
    answer = invoke(commands_function, {"cmd": "makeCall", "user": "andy", "phone": "8 (910) 123-45-67"})
    assert answer["ok"] is True
    assert answer["result"]["id_known"] is True
    assert [(d.api, d.user, d.phone) for d in simulator.dials] == [("v1", "andy", PHONE)]
    simulator.play_inbound(PHONE)
    history = invoke(commands_function, {"cmd": "history", "period": "today"})
    assert history["ok"] is True
    assert [row["type"] for row in history["result"]["rows"]] == ["in"]
    assert history["result"]["rows"][0]["account"] == "andy"


def test_a_dial_that_may_have_reached_the_pbx_is_never_repeated(
    commands_function: LocalFunction, simulator: PbxSimulator
) -> None:
    simulator.fail_next("POST /makecall", "502")
    payload = {"cmd": "makeCall", "user": "andy", "phone": PHONE, "requestId": "crm-v1-1"}
    first = invoke(commands_function, payload)
    assert first["error"]["code"] == "pbx_unavailable"
    assert first["error"]["dialled"] == "unknown"
    assert invoke(commands_function, payload) == first
    assert v1_seen(simulator, "POST", "/makecall") == 1
    done = invoke(commands_function, {**payload, "requestId": "crm-v1-2"})
    again = invoke(commands_function, {**payload, "requestId": "crm-v1-2"})
    assert done["ok"] is True
    assert again == done
    assert len(simulator.dials) == 1


def test_a_caller_id_the_pbx_does_not_allow_is_a_400_before_dialling(
    commands_function: LocalFunction, simulator: PbxSimulator
) -> None:
    refused = invoke(commands_function, {"cmd": "makeCall", "user": "andy", "phone": PHONE, "clid": "74951234567"})
    assert refused["error"]["code"] == "invalid_parameters"
    assert "allowed: 74996861574, 79261234567" in refused["error"]["message"]
    assert simulator.dials == []
    shown = invoke(commands_function, {"cmd": "makeCall", "user": "andy", "phone": PHONE, "clid": "+74996861574"})
    assert shown["result"]["clid"] == "74996861574"


def test_the_directory_keeps_presence(commands_function: LocalFunction, simulator: PbxSimulator) -> None:
    simulator.set_presence("andy", "offline")
    synced = invoke(commands_function, {"cmd": "syncDirectory"})
    assert synced["ok"] is True, synced
    assert synced["result"]["users"] == 4
    users = {user["login"]: user for user in invoke(commands_function, {"cmd": "listUsers"})["result"]["users"]}
    assert {login: user["presence"] for login, user in users.items()} == {
        "andy": "offline",
        "daria": "offline",
        "mike": "online",
        "serg": "away",
    }
    assert users["andy"]["groups"] == ["sales"]
    assert all(user["presence_at"].endswith("Z") for user in users.values())  # the sync that saw it


def test_list_caller_ids(commands_function: LocalFunction, simulator: PbxSimulator) -> None:
    answer = invoke(commands_function, {"cmd": "listCallerIds"})
    assert answer["ok"] is True
    assert answer["result"]["caller_ids"][0] == {"telnum": "74996861574", "enabled": True}
    assert len(answer["result"]["caller_ids"]) == 3


def test_errors_people_can_act_on(commands_function: LocalFunction, simulator: PbxSimulator, moto_url: str) -> None:
    unknown = invoke(commands_function, {"cmd": "get_dnd", "user": "nobody"})
    assert unknown["error"]["code"] == "invalid_parameters"
    simulator.modes.domain_disabled = True
    disabled = invoke(commands_function, {"cmd": "accounts"})
    assert disabled["error"]["code"] == "invalid_token"
    assert "switched off in the PBX cabinet" in disabled["error"]["message"]
    simulator.modes.domain_disabled = False
    crm_token = "9f0c4c1b8a550242ac1200020b6f3c1e8a554c1b9f0c0242"
    reset(moto_url, simulator, os.environ["PBX_URL"], "v1", key=crm_token)
    misplaced = invoke(commands_function, {"cmd": "accounts"})
    assert misplaced["error"]["code"] == "invalid_token"
    assert "CrmTokenParameterName" in misplaced["error"]["message"]
    assert crm_token not in str(misplaced)


def test_auto_on_the_bare_tenant_url(
    commands_function: LocalFunction, simulator: PbxSimulator, moto_url: str, pbx: tuple[PbxSimulator, SimulatorServer]
) -> None:
    reset(moto_url, simulator, pbx[1].url, "auto")
    assert invoke(commands_function, {"cmd": "get_dnd", "user": "mike"})["result"] == {"state": False}
    assert invoke(commands_function, {"cmd": "set_dnd", "user": "mike", "state": True})["ok"] is True
    assert v1_seen(simulator, "GET", "/users") == 1  # the probe, once for the container
    assert simulator.requests_seen == []
    # A tenant without v1: the same bare URL, the old API.
    reset(moto_url, simulator, pbx[1].url, "auto")
    simulator.modes.api = "legacy"
    assert invoke(commands_function, {"cmd": "get_dnd", "user": "mike"})["result"] == {"state": False}
    assert [form["cmd"] for form in simulator.requests_seen] == ["get_dnd"]
    refused = invoke(commands_function, {"cmd": "listCallerIds"})
    assert refused["error"]["code"] == "invalid_request"  # the old API has no caller ids
