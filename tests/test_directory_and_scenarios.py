"""The directory (sync, resolver, CRM mapping) and the vendor scenarios, through the commands
function and the webhook."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local.lambdas import LocalFunction
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.template import Template
from pbxbridge.domain.directory import (
    ROLES,
    CrmUser,
    Directory,
    PbxUser,
    RoleChanges,
    propose_mappings,
    sync_directory,
    visible_logins,
)
from pbxbridge.pbx.models import PbxAccount, PbxGroup
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


# Roles: who sees whom.

TEAM = Directory(
    users=(
        PbxUser(login="andy", groups=("sales",)),
        PbxUser(login="mike", groups=("sales",), pbx_role="group_head"),  # heads his own group
        PbxUser(login="serg", groups=("sales", "support"), active=False),  # left: his calls stay the team's
        PbxUser(login="lena", groups=("support",), role_override="supervisor", departments_override=("support",)),
        PbxUser(login="olga", groups=("gr001",), role_override="supervisor", departments_override=("sales", "gr001")),
        PbxUser(login="daria", groups=("gr001",), pbx_role="admin"),
        PbxUser(login="ivan", groups=("gr001",), pbx_role="admin", role_override="manager"),  # the mapping wins
        PbxUser(login="kate", pbx_role="restricted_user"),
        PbxUser(login="gone", pbx_role="admin", active=False),
    )
)


class TestRoles:
    def test_the_role_comes_from_the_mapping_else_the_pbx_else_manager(self) -> None:
        roles = {user.login: (user.role, user.role_source) for user in TEAM.users}
        assert roles == {
            "andy": ("manager", "default"),
            "mike": ("supervisor", "pbx"),
            "serg": ("manager", "default"),
            "lena": ("supervisor", "mapping"),
            "olga": ("supervisor", "mapping"),
            "daria": ("admin", "pbx"),
            "ivan": ("manager", "mapping"),
            "kate": ("manager", "default"),
            "gone": ("admin", "pbx"),
        }
        # A supervisor's departments: as mapped, else their own groups; nobody else has any.
        assert [TEAM.user(login).departments for login in ("mike", "olga", "andy", "daria")] == [  # type: ignore[union-attr]
            ("sales",),
            ("sales", "gr001"),
            (),
            (),
        ]

    @pytest.mark.parametrize(
        ("viewer", "sees"),
        [
            ("andy", {"andy"}),
            ("kate", {"kate"}),
            ("ivan", {"ivan"}),
            ("mike", {"mike", "andy", "serg"}),
            ("lena", {"lena", "serg"}),
            ("olga", {"olga", "andy", "mike", "serg", "daria", "ivan"}),
            ("daria", {user.login for user in TEAM.users}),
            ("gone", set()),  # an inactive admin sees no one
            ("serg", set()),
            ("nobody", set()),
        ],
    )
    def test_who_sees_whom(self, viewer: str, sees: set[str]) -> None:
        assert visible_logins(TEAM.user(viewer), TEAM) == sees

    def test_a_supervisor_of_no_department_sees_only_themself(self) -> None:
        alone = PbxUser(login="alone", groups=("sales",), role_override="supervisor", departments_override=())
        assert visible_logins(alone, Directory(users=(*TEAM.users, alone))) == {"alone"}

    def test_the_wire_and_the_domain_name_the_same_roles(self) -> None:
        from typing import get_args

        from pbxbridge.protocol.commands import UserRole

        assert get_args(UserRole) == ROLES


class RolesPbx:
    """A PBX whose accounts say a role (as crmapi/v1's users do), for the sync."""

    class Account(PbxAccount):
        role: str | None = None

    def __init__(self, roles: dict[str, str | None]) -> None:
        self.roles = roles

    def accounts(self) -> list[PbxAccount]:
        return [self.Account(name=login, role=role) for login, role in self.roles.items()]

    def groups(self, user: str | None = None) -> list[PbxGroup]:
        return [PbxGroup(id="sales")]


def test_the_sync_keeps_the_pbx_role_and_never_undoes_the_mapping(aws: dict[str, str], moto_url: str) -> None:
    from local.aws import client
    from pbxbridge.storage.directory import DynamoDirectoryStore

    store = DynamoDirectoryStore(client("dynamodb", moto_url), aws["DirectoryTable"])
    sync_directory(RolesPbx({"mike": "group_head", "daria": "admin", "andy": None}), store, "RU")
    assert store.set_role(
        "andy", RoleChanges(role="supervisor", departments=("support",), set_role=True, set_departments=True)
    )
    assert not store.set_role("ghost", RoleChanges(role="admin", set_role=True))
    users = {user.login: user for user in store.snapshot("RU").users}
    assert {login: (u.role, u.pbx_role, u.departments) for login, u in users.items()} == {
        "mike": ("supervisor", "group_head", ("sales",)),
        "daria": ("admin", "admin", ()),
        "andy": ("supervisor", None, ("support",)),
    }
    # The PBX changes its mind: daria is no longer an admin, andy becomes one; the mapping still wins.
    sync_directory(RolesPbx({"mike": "group_head", "daria": "", "andy": "admin"}), store, "RU")
    users = {user.login: user for user in store.snapshot("RU").users}
    assert (users["daria"].role, users["daria"].pbx_role) == ("manager", None)
    assert (users["andy"].role, users["andy"].pbx_role, users["andy"].departments) == (
        "supervisor",
        "admin",
        ("support",),
    )
    # Clearing the override lets the PBX's role count again; clearing departments, the groups.
    assert store.set_role("andy", RoleChanges(role=None, departments=None, set_role=True, set_departments=True))
    andy = store.snapshot("RU").user("andy")
    assert andy is not None
    assert (andy.role, andy.role_override, andy.departments_override) == ("admin", None, None)

    # An API that says no role (the older one's accounts) leaves the PBX's role as it was.
    class Old:
        def accounts(self) -> list[PbxAccount]:
            return [PbxAccount(name="mike")]

        def groups(self, user: str | None = None) -> list[PbxGroup]:
            return []

    sync_directory(Old(), store, "RU")
    mike = store.snapshot("RU").user("mike")
    assert mike is not None
    assert (mike.pbx_role, mike.role, mike.groups) == ("group_head", "supervisor", ())


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


def test_roles_through_map_user_and_list_users(commands: LocalFunction) -> None:
    commands.invoke({"cmd": "syncDirectory"})

    def listed() -> dict[str, dict[str, Any]]:
        return {user["login"]: user for user in commands.invoke({"cmd": "listUsers"})["result"]["users"]}

    before = listed()["andy"]
    assert (before["role"], before["role_source"], before["departments"]) == ("manager", "default", [])
    # As the console sends it: `mapUser login=andy role=supervisor departments=sales,support`.
    answer = commands.invoke({"cmd": "mapUser", "login": "andy", "role": "supervisor", "departments": "sales,support"})
    assert answer == {
        "ok": True,
        "result": {"login": "andy", "role": "supervisor", "departments": ["sales", "support"]},
    }
    commands.invoke({"cmd": "mapUser", "login": "andy", "crm_user": "crm-17"})  # the role stays
    commands.invoke({"cmd": "syncDirectory"})  # and a sync keeps both
    andy = listed()["andy"]
    assert (andy["role"], andy["role_source"], andy["departments"], andy["crm_user"]) == (
        "supervisor",
        "mapping",
        ["sales", "support"],
        "crm-17",
    )
    # Without departments, a supervisor sees the ones they are a member of.
    commands.invoke({"cmd": "mapUser", "login": "andy", "departments": None})
    assert listed()["andy"]["departments"] == ["sales"]
    commands.invoke({"cmd": "mapUser", "login": "daria", "role": "admin"})
    assert (listed()["daria"]["role"], listed()["daria"]["departments"]) == ("admin", [])
    cleared = commands.invoke({"cmd": "mapUser", "login": "andy", "role": None})
    assert cleared == {"ok": True, "result": {"login": "andy", "role": None}}
    assert (listed()["andy"]["role"], listed()["andy"]["crm_user"]) == ("manager", "crm-17")


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        ({"login": "ghost", "role": "admin"}, "not_found", "ghost"),
        ({"login": "andy", "role": "boss"}, "invalid_request", "role"),
        ({"login": "andy"}, "invalid_request", "give crm_user, role or departments"),
        ({"login": "andy", "departments": [""]}, "invalid_request", "departments"),
    ],
)
def test_map_user_refuses_what_it_cannot_do(
    commands: LocalFunction, payload: dict[str, Any], code: str, fragment: str
) -> None:
    commands.invoke({"cmd": "syncDirectory"})
    answer = commands.invoke({"cmd": "mapUser", **payload})
    assert answer["error"]["code"] == code
    assert fragment in answer["error"]["message"]


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

    contact_store.put_contacts(
        [
            Contact(phone="+79101234567", contact_name="Mapped", responsible="crm-17"),
            Contact(phone="+79101234568", contact_name="Nobody's"),
        ]
    )
    boto3.client("dynamodb").delete_table(TableName=aws["DirectoryTable"])
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
