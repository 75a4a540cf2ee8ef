"""The directory (sync, resolver, CRM mapping) and the vendor scenarios, through the commands
function and the webhook."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.lambdas import LocalFunction
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.template import Template
from pbxbridge.domain.directory import CrmUser, Directory, PbxUser, propose_mappings
from tests.conftest import Webhook

PBX_KEY = "directory-pbx-key"
ANDY = PbxUser(login="andy", real_name="Петров Андрей", ext="708", telnum="+79261234567", email="Andy@Example.ru")
MIKE = PbxUser(login="mike", real_name="Семенов Михаил", ext="702", crm_user="crm-2")


class TestResolver:
    directory = Directory(users=(ANDY, MIKE, PbxUser(login="708x", ext="709")))

    @pytest.mark.parametrize(
        ("given", "login"),
        [
            ("andy", "andy"),
            ("ANDY", "andy"),
            ("andy@tenant.example.ru", "andy"),
            ("708", "andy"),
            ("708@tenant.example.ru", "andy"),
            ("79261234567", "andy"),
            ("+7 926 123-45-67", "andy"),
            ("702", "mike"),
            ("g_5f3c@tenant.example.ru", None),
            ("pbx", None),
            ("ivr", None),
            ("", None),
            ("bob", "bob"),  # not (yet) in the directory: kept as given
        ],
    )
    def test_every_form_resolves_to_one_login(self, given: str, login: str | None) -> None:
        assert self.directory.resolve(given) == login

    def test_crm_mapping_both_ways(self) -> None:
        assert self.directory.crm_user("mike") == "crm-2"
        assert self.directory.crm_user("andy") is None
        assert self.directory.pbx_login_for("crm-2") == "mike"
        assert self.directory.pbx_login_for("708") == "708"  # not a CRM user: passed on for the PBX to route
        assert self.directory.pbx_login_for(None) is None


def test_proposals_match_by_email_then_name_one_to_one() -> None:
    directory = Directory(users=(ANDY, MIKE, PbxUser(login="daria", real_name="Иванова Дария")))
    proposals = propose_mappings(
        directory,
        [
            CrmUser("crm-1", email="andy@example.ru"),
            CrmUser("crm-9", email="ANDY@example.ru"),  # the same PBX user again: not proposed twice
            CrmUser("crm-3", name="Дария Иванова"),
            CrmUser("crm-4", name="Семенов Михаил"),  # mike is mapped already
            CrmUser("crm-5", email="nobody@example.ru", name="Nobody"),
        ],
    )
    assert [(p.login, p.crm_user, p.reason) for p in proposals] == [
        ("andy", "crm-1", "email"),
        ("daria", "crm-3", "name"),
    ]


@pytest.fixture(scope="module")
def pbx() -> Iterator[tuple[PbxSimulator, SimulatorServer]]:
    simulator = PbxSimulator(token=PBX_KEY, play_make_call=False)
    server = simulator.serve()
    yield simulator, server
    server.stop()


@pytest.fixture
def commands(
    aws: dict[str, str], moto_url: str, template: Template, pbx: tuple[PbxSimulator, SimulatorServer]
) -> LocalFunction:
    from local.aws import client
    from pbxbridge import commands as commands_module
    from pbxbridge.pbx.configured import client_for
    from pbxbridge.settings import commands_settings

    client("ssm", moto_url).put_parameter(
        Name="/pbxbridge/pbx-token", Value=PBX_KEY, Type="SecureString", Overwrite=True
    )
    function = LocalFunction(
        Template(parameters={**template.parameters, "PbxUrl": pbx[1].api_url}).functions()["CommandsFunction"]
    )
    commands_settings.cache_clear()
    commands_module.default_dependencies.cache_clear()
    client_for.cache_clear()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]
    return function


def test_directory_sync_list_and_map(commands: LocalFunction, pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    synced = commands.invoke({"cmd": "syncDirectory"})
    assert synced == {"ok": True, "result": {"users": 4, "departments": 2, "deactivated": []}}
    users = {user["login"]: user for user in commands.invoke({"cmd": "listUsers"})["result"]["users"]}
    assert users["andy"]["ext"] == "708"
    assert users["andy"]["telnum"] == "+79261234567"
    assert users["andy"]["groups"] == ["sales"]
    assert commands.invoke({"cmd": "mapUser", "login": "andy", "crm_user": "crm-17"})["ok"] is True
    assert commands.invoke({"cmd": "mapUser", "login": "ghost", "crm_user": "x"})["error"]["code"] == "not_found"
    proposals = commands.invoke(
        {
            "cmd": "proposeUserMappings",
            "apply": True,
            "crm_users": [
                {"crm_user": "crm-5", "email": "daria@example.ru"},
                {"crm_user": "crm-6", "name": "Михаил Семенов"},
            ],
        }
    )["result"]
    assert proposals["applied"] == 2
    assert {(p["login"], p["reason"]) for p in proposals["proposals"]} == {("daria", "email"), ("mike", "name")}
    # A later sync keeps the mappings, and a user gone from the PBX is kept but inactive.
    simulator = pbx[0]
    serg = simulator.users.pop()
    try:
        assert commands.invoke({"cmd": "syncDirectory"})["result"]["deactivated"] == ["serg"]
    finally:
        simulator.users.append(serg)
    users = {user["login"]: user for user in commands.invoke({"cmd": "listUsers"})["result"]["users"]}
    assert (users["andy"]["crm_user"], users["daria"]["crm_user"]) == ("crm-17", "crm-5")
    assert users["serg"]["active"] is False
    assert commands.invoke({"cmd": "mapUser", "login": "andy", "crm_user": None})["ok"] is True


def fresh_webhook(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    from pbxbridge.settings import webhook_settings
    from pbxbridge.webhook import default_dependencies

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    webhook_settings.cache_clear()
    default_dependencies.cache_clear()


def test_calls_store_the_login_and_the_crm_user(
    commands: LocalFunction, webhook: Webhook, call_store: Any, contact_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands.invoke({"cmd": "syncDirectory"})
    commands.invoke({"cmd": "mapUser", "login": "andy", "crm_user": "crm-17"})
    fresh_webhook(monkeypatch, DEFAULT_CRM_USER="crm-default")
    history = {"cmd": "history", "type": "in", "phone": "79101234567", "start": "20261127T100000Z", "duration": "9"}
    webhook.push(**history, status="Success", user="708@tenant.example.ru", callid="a1")
    webhook.push(**history, status="missed", user="g_sales@tenant.example.ru", callid="a2")
    webhook.push(**history, status="Success", user="mike", callid="a3")
    calls = {callid: call_store.get_call(callid) for callid in ("a1", "a2", "a3")}
    assert (calls["a1"]["pbx_user"], calls["a1"]["crm_user"]) == ("andy", "crm-17")
    assert ("pbx_user" not in calls["a2"], calls["a2"]["crm_user"]) == (True, "crm-default")
    assert (calls["a3"]["pbx_user"], calls["a3"]["crm_user"]) == ("mike", "crm-default")
    # listCalls takes the user in any form the PBX uses, as the calls were stored under the login.
    for form in ("andy", "708", "+7 926 123-45-67", "andy@tenant.example.ru"):
        listed = commands.invoke({"cmd": "listCalls", "user": form})["result"]["calls"]
        assert [call["callid"] for call in listed] == ["a1"], form
    assert commands.invoke({"cmd": "listCalls", "user": "g_sales@tenant.example.ru"})["result"]["calls"] == []
    # contact: the responsible CRM user is answered as the PBX login the PBX can route to.
    from pbxbridge.domain.contacts import Contact

    contact_store.put_contacts([Contact(phone="+79101234567", contact_name="Client", responsible="crm-17")])
    answer = webhook.push(cmd="contact", phone="79101234567", callid="a4")
    assert answer.json() == {"contact_name": "Client", "responsible": "andy"}


def test_scenarios_fire_once_and_only_when_switched_on(
    webhook: Webhook, contact_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    missed = {
        "cmd": "history",
        "type": "in",
        "status": "missed",
        "user": "pbx",
        "start": "20261127T100000Z",
        "duration": "3",
    }
    webhook.push(**missed, phone="79160000001", callid="s1")
    assert contact_store.get_contact("+79160000001") is None  # off by default
    fresh_webhook(
        monkeypatch, SCENARIO_MISSED_CALL_LEADS="true", LEAD_RESPONSIBLE="crm-boss", SCENARIO_OUTBOUND_CONTACTS="true"
    )
    webhook.push(**missed, phone="79160000001", callid="s2")
    lead = contact_store.get_contact("+79160000001")
    assert (lead.contact_name, lead.responsible, lead.lead) == ("Lead +79160000001", "crm-boss", True)
    from pbxbridge.domain.contacts import Contact

    contact_store.put_contacts([Contact(phone="+79160000001", contact_name="Renamed by the CRM")])
    webhook.push(**missed, phone="79160000001", callid="s3")  # a known number: left alone
    webhook.push(**missed, phone="79160000001", callid="s2")  # a duplicate push: nothing new either
    assert contact_store.get_contact("+79160000001").contact_name == "Renamed by the CRM"
    answered = {**missed, "status": "Success", "user": "andy"}
    webhook.push(**answered, phone="79160000002", callid="s4")
    assert contact_store.get_contact("+79160000002") is None  # answered inbound: no scenario
    outbound = {**missed, "type": "out", "status": "Busy", "user": "mike@tenant.example.ru"}
    webhook.push(**outbound, phone="79160000003", callid="s5")
    created = contact_store.get_contact("+79160000003")
    assert (created.contact_name, created.responsible, created.lead) == ("Client +79160000003", "mike", False)
    webhook.push(**missed, phone="112", callid="s6")
    assert contact_store.get_contact("112") is None  # a service number is nobody's lead


def test_contact_survives_a_directory_it_cannot_read(
    webhook: Webhook, contact_store: Any, aws: dict[str, str], dynamodb_requests: list[str]
) -> None:
    from pbxbridge.domain.contacts import Contact
    from pbxbridge.storage.dynamodb import dynamodb_client

    contact_store.put_contacts(
        [
            Contact(phone="+79101234567", contact_name="Mapped", responsible="crm-17"),
            Contact(phone="+79101234568", contact_name="Nobody's"),
        ]
    )
    dynamodb_client().delete_table(TableName=aws["DirectoryTable"])
    dynamodb_requests.clear()
    # No responsible: the directory is not even asked, so the answer is one read.
    assert webhook.push(cmd="contact", phone="79101234568", callid="d1").json() == {"contact_name": "Nobody's"}
    assert dynamodb_requests == ["GetItem"]
    # A responsible, and the directory cannot be read: the name still answers, the value as stored.
    answer = webhook.push(cmd="contact", phone="79101234567", callid="d2")
    assert (answer.status, answer.json()) == (200, {"contact_name": "Mapped", "responsible": "crm-17"})


def test_a_cached_directory_outlives_a_failed_refresh() -> None:
    from pbxbridge.domain.directory import CachedDirectory

    loads: list[int] = []

    def load() -> Directory:
        loads.append(1)
        if len(loads) > 1:
            raise RuntimeError("DynamoDB is down")
        return Directory(users=(MIKE,))

    cached = CachedDirectory(load, ttl=0)
    assert cached().pbx_login_for("crm-2") == "mike"
    assert cached().pbx_login_for("crm-2") == "mike"  # refresh failed: the old snapshot answers
    assert len(loads) == 2


def test_a_scheduled_sync_that_fails_fails_the_invocation(
    commands: LocalFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.aws import LOOPBACK, free_port
    from pbxbridge import commands as commands_module
    from pbxbridge.commands import CommandFailedError
    from pbxbridge.settings import commands_settings

    monkeypatch.setenv("PBX_URL", f"http://{LOOPBACK}:{free_port()}")
    commands_settings.cache_clear()
    commands_module.default_dependencies.cache_clear()
    assert commands.invoke({"cmd": "syncDirectory"})["error"]["code"] == "pbx_unavailable"
    with pytest.raises(CommandFailedError, match="pbx_unavailable"):
        commands.invoke({"cmd": "syncDirectory", "raiseOnError": True})  # the schedule's input
    commands_settings.cache_clear()
    commands_module.default_dependencies.cache_clear()
