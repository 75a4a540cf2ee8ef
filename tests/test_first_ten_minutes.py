"""What a newcomer meets first: the local stack as `make run` starts it (directory synced, data kept,
short log, the reconciliation demo), the console's `invoke`, and the typed commands client."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from local.aws import free_port
from local.stack import LocalStack
from local.template import Template
from pbxbridge import client as commands_client
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def commands(stack: LocalStack) -> commands_client.CommandsClient:
    lambda_client = boto3.client("lambda", endpoint_url=stack.api.url)
    return commands_client.CommandsClient("CommandsFunction", lambda_client=lambda_client)


def console(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.environment()}
    return subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


# The stack


def test_the_directory_is_synced_at_start(stack: LocalStack, commands: commands_client.CommandsClient) -> None:
    users = {user.login: user for user in commands.list_users().users}
    assert users["andy"].ext == "708"
    assert "4 users and 2 departments synced from the PBX at start" in stack.summary()


def test_roles_and_working_hours_from_the_console_and_the_client(
    stack: LocalStack, commands: commands_client.CommandsClient
) -> None:
    try:
        mapped = console(stack, "invoke", "mapUser", "login=andy", "role=supervisor", "departments=sales,support")
        assert mapped.returncode == 0, mapped.stderr
        assert json.loads(mapped.stdout)["result"]["departments"] == ["sales", "support"]
        andy = {user.login: user for user in commands.list_users().users}["andy"]
        assert (andy.role, andy.role_source, andy.departments) == ("supervisor", "mapping", ["sales", "support"])
        commands.set_role("andy", None)
        andy = {user.login: user for user in commands.list_users().users}["andy"]
        assert (andy.role, andy.departments) == ("manager", [])
        with pytest.raises(commands_client.NotFoundError):
            commands.set_role("ghost", "admin")

        compact = "Europe/Moscow;mon-fri 09:00-18:00;holidays 2027-01-01"
        set_hours = console(stack, "invoke", "setWorkingHours", f"calendar={compact}")
        assert set_hours.returncode == 0, set_hours.stderr
        assert commands.working_hours().compact == compact
        with pytest.raises(commands_client.InvalidRequestError, match="crosses midnight"):
            commands.set_working_hours("Europe/Moscow;mon 22:00-02:00")
        assert commands.set_working_hours(None).source == "none"
    finally:
        commands.set_role("andy", None)
        commands.set_working_hours(None)


def test_the_reconciliation_demo_recovers_whole_lost_calls(
    stack: LocalStack, commands: commands_client.CommandsClient
) -> None:
    order = {"count": 12, "drop": 0.0, "lose_calls": 0.5}
    played = requests.post(f"{stack.pbx.url}/_simulator/calls", data=json.dumps(order), timeout=60).json()
    lost = played["calls_lost"]
    assert 0 < len(lost) < 12  # seeded: some calls lost whole, others not
    for callid in lost:
        with pytest.raises(commands_client.NotFoundError):
            commands.get_call(callid)
    # The range ends at the sync's own second, exclusive, as the PBX reads it: a call that started in
    # that very second is the next run's. A person typing the command is never that quick; a test is.
    time.sleep(1.05 - time.time() % 1)
    synced = console(stack, "sync", "history", "--period", "today")
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    assert report["created"] == len(lost), (report, played)
    assert "history reconciled" not in synced.stderr  # the report is printed once, not logged again
    for callid in lost:
        recovered = commands.get_call(callid).call
        assert recovered.outcome is not None
        assert recovered.live_state == "COMPLETED"
    assert "lose_calls" in stack.summary()
    assert "created: calls the webhook never saw" in stack.summary()


def test_the_reconciliation_demo_loses_nothing_played_after_it(
    stack: LocalStack, commands: commands_client.CommandsClient
) -> None:
    # The README runs the widget's demo calls after the reconciliation demo: its drop share is that
    # batch's own, so the card still pops up and the missed call still reaches the call-back list.
    simulator = stack.pbx.simulator
    order = {"count": 4, "drop": 1.0, "duplicate": 0.0}
    played = requests.post(f"{stack.pbx.url}/_simulator/calls", data=json.dumps(order), timeout=60).json()
    assert played["pushes_sent"] == 0
    assert played["pushes_dropped"] > 0
    before = len(simulator.pushes)
    ring = {"phone": "79035550199", "user": "andy", "answer": False}
    callid = requests.post(f"{stack.pbx.url}/_simulator/inbound", data=json.dumps(ring), timeout=10).json()["callid"]
    simulator.wait_for_calls()
    after = simulator.pushes[before:]
    assert after
    assert not [push for push in after if push.dropped]
    assert {push.fields["cmd"] for push in after} >= {"event", "history"}
    assert wait_for(lambda: console(stack, "invoke", "getCall", f"callid={callid}").returncode == 0)
    assert commands.get_call(callid).call.outcome == "missed"


# The console's invoke and the typed client


def test_the_local_log_shows_every_contact_answered(stack: LocalStack) -> None:
    """Lambda leaves the `contact` line out at INFO (it is on the caller's critical path); the local
    stack runs at DEBUG, so the printed curl shows a line in `make run`'s log."""
    assert stack.template.functions()["WebhookFunction"].environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert Template().functions()["WebhookFunction"].environment["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_invoke_keeps_text_fields_text(stack: LocalStack) -> None:
    placed = console(stack, "invoke", "makeCall", "user=708", "phone=79101234567")
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert json.loads(placed.stdout)["ok"] is True
    assert stack.pbx.simulator.requests_seen[-1]["user"] == "708"
    missing = console(stack, "invoke", "getCall", "callid=123")  # a numeric id is still an id
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"] == {"code": "not_found", "message": "no call 123"}
    invalid = console(stack, "invoke", "listCalls", "user=andy", "limit=0")  # numbers still numbers
    assert invalid.returncode == 2
    assert "limit" in json.loads(invalid.stdout)["error"]["message"]


def test_list_calls_by_extension(stack: LocalStack, commands: commands_client.CommandsClient) -> None:
    dialled = commands.make_call(user="andy", phone="+7 910 765-43-21")
    assert dialled.id_known
    assert dialled.call_id

    def finished() -> commands_client.CallDetails | None:
        try:
            details = commands.get_call(str(dialled.call_id))
        except commands_client.NotFoundError:
            return None
        return details if details.call.outcome else None

    details = wait_for(finished)
    assert (details.call.outcome, details.call.live_state, details.call.pbx_user) == ("answered", "COMPLETED", "andy")
    assert [entry.type for entry in details.timeline] == ["OUTGOING", "ACCEPTED", "COMPLETED"]
    by_login = wait_for(lambda: [c.callid for c in commands.iter_calls(user="andy", page_size=2)])
    assert by_login
    listed = console(stack, "invoke", "listCalls", "user=708", "limit=200")
    assert listed.returncode == 0, listed.stderr
    assert by_login[0] in [call["callid"] for call in json.loads(listed.stdout)["result"]["calls"]]


def test_the_client_turns_the_envelope_into_results(
    stack: LocalStack, commands: commands_client.CommandsClient
) -> None:
    report = commands.upsert_contacts(
        [
            {"phone": "8 916 000-11-22", "contact_name": "ООО Ромашка", "responsible": "mike"},
            {"phone": "x", "contact_name": "Broken"},
        ]
    )
    assert (report.upserted, [(r.index, r.reason) for r in report.rejected]) == (
        1,
        [(1, "phone 'x' is not a phone number")],
    )
    assert commands.delete_contact("+79160001122") is True
    assert commands.delete_contact("+79160001122") is False
    accounts = commands.accounts()
    assert accounts[0].name == "andy"
    assert commands.set_dnd("mike", True) is True
    assert commands.get_dnd("mike") is True
    assert commands.history(period="today", limit=5).rows[0].uid
    proposals = commands.propose_user_mappings([{"crm_user": "crm-1", "email": "nobody@example.ru"}])
    assert proposals.applied == 0


def test_the_client_raises_typed_errors(stack: LocalStack, commands: commands_client.CommandsClient) -> None:
    with pytest.raises(commands_client.InvalidRequestError) as invalid:
        commands.list_calls(user="andy", limit=0)
    assert invalid.value.code == "invalid_request"
    assert "limit" in invalid.value.message
    with pytest.raises(commands_client.NotFoundError):
        commands.map_user("ghost", "crm-1")
    with pytest.raises(commands_client.InvalidParametersError):
        commands.get_dnd("nobody")  # the PBX's own 400
    stack.pbx.simulator.fail_next("accounts", "502", "502", "502", "502")
    with pytest.raises(commands_client.PbxUnavailableError) as down:
        commands.accounts()
    assert stack.pbx.api_url in down.value.message  # which PBX did not answer
    nowhere = commands_client.CommandsClient(
        "NoSuchFunction", lambda_client=boto3.client("lambda", endpoint_url=stack.api.url)
    )
    with pytest.raises(commands_client.InvokeError):
        nowhere.accounts()


def test_make_call_through_the_client_dials_once_per_request_id(
    stack: LocalStack, commands: commands_client.CommandsClient
) -> None:
    simulator = stack.pbx.simulator
    before = sum(1 for seen in simulator.requests_seen if seen.get("cmd") == "makeCall")
    first = commands.make_call(user="andy", phone="79101234567", request_id="crm-once-1")
    again = commands.make_call(user="andy", phone="79101234567", request_id="crm-once-1")
    assert first == again
    assert sum(1 for seen in simulator.requests_seen if seen.get("cmd") == "makeCall") == before + 1


def test_errors_by_code() -> None:
    envelope = {"ok": False, "error": {"code": "pbx_unavailable", "message": "down", "dialled": "unknown"}}
    error = commands_client.error_from_envelope(envelope)
    assert isinstance(error, commands_client.PbxUnavailableError)
    assert error.dialled == "unknown"
    refused = commands_client.error_from_envelope({"ok": False, "error": {"code": "wrong_tenant", "message": "m"}})
    assert (type(refused), refused.code) == (commands_client.PbxRefusedError, "wrong_tenant")
    unknown = commands_client.error_from_envelope({"ok": False, "error": {"code": "new_code", "message": "m"}})
    assert (type(unknown), unknown.code) == (commands_client.CommandsError, "new_code")


@pytest.mark.parametrize(
    ("cmd", "items", "fields"),
    [
        (
            "makeCall",
            ["user=708", "phone=0079101234567", "requestId=42"],
            {"user": "708", "phone": "0079101234567", "requestId": "42"},
        ),
        ("getCall", ["callid=123"], {"callid": "123"}),
        ("listCalls", ["user=708", "limit=20"], {"user": "708", "limit": 20}),
        ("mapUser", ["login=andy", "crm_user=null"], {"login": "andy", "crm_user": None}),
        ("mapUser", ["login=andy", "crm_user=17"], {"login": "andy", "crm_user": "17"}),
        (
            "mapUser",
            ["login=andy", "role=supervisor", "departments=sales,support"],
            {"login": "andy", "role": "supervisor", "departments": "sales,support"},  # the command splits it
        ),
        ("mapUser", ["login=andy", "role=null"], {"login": "andy", "role": None}),
        ("setWorkingHours", ["calendar=UTC;mon 09:00-18:00"], {"calendar": "UTC;mon 09:00-18:00"}),
        ("setWorkingHours", ["calendar=null"], {"calendar": None}),
        ("set_dnd", ["user=708", "state=true"], {"user": "708", "state": True}),
        ("subscribeOnCalls", ["user=708", "status=on", "group=701"], {"user": "708", "status": "on", "group": "701"}),
        ("upsertContacts", ['contacts=[{"phone": "1"}]'], {"contacts": [{"phone": "1"}]}),
        ("proposeUserMappings", ["crm_users=[]", "apply=true"], {"crm_users": [], "apply": True}),
    ],
)
def test_console_fields_are_typed_by_the_command(cmd: str, items: list[str], fields: dict[str, Any]) -> None:
    assert commands_client.command_fields(cmd, items) == fields


# Contacts as Excel writes them

ROWS = [
    ("phone", "contact_name", "responsible", "crm_id"),
    ("8 (916) 000-11-22", "ООО Ромашка", "mike", "crm-7"),
    ("+7 903 555-00-00", "ИП Васильев", "708", "crm-8"),
]


def lines(separator: str) -> str:
    return "\r\n".join(separator.join(row) for row in ROWS) + "\r\n"


def contact_of(stack: LocalStack, phone: str) -> Any:
    return requests.post(
        stack.webhook_url,
        data={"cmd": "contact", "phone": phone, "callid": "x", "crm_token": stack.crm_token},
        timeout=10,
    ).json()


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("bom.csv", b"\xef\xbb\xbf" + lines(",").encode(), "CSV (utf-8 with BOM, ','-separated)"),
        ("semicolon.csv", lines(";").encode("utf-8"), "CSV (utf-8, ';'-separated)"),
        ("russian-excel.csv", lines(";").encode("cp1251"), "CSV (windows-1251, ';'-separated)"),
        ("unicode.txt", lines("\t").encode("utf-16"), "CSV (utf-16, tab-separated)"),
    ],
)
def test_contacts_import_reads_what_excel_writes(
    stack: LocalStack, tmp_path: Path, name: str, content: bytes, kind: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = console(stack, "contacts", "import", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "imported 2 contact(s), rejected 0"
    assert f"as {kind}" in result.stderr
    assert contact_of(stack, "79160001122") == {"contact_name": "ООО Ромашка", "responsible": "mike"}
    assert contact_of(stack, "79035550000")["contact_name"] == "ИП Васильев"


def test_the_readmes_excel_file_imports_as_it_says(stack: LocalStack) -> None:
    """As the README's walk-through and the docs' Getting started both show it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    getting_started = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    sample = REPO / "docs" / "examples" / "contacts-excel.csv"
    for text in (readme, getting_started):
        assert (
            "pbxbridge contacts import docs/examples/contacts-excel.csv   # imported 3 contact(s), rejected 0" in text
        )
    raw = sample.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfphone;")  # as Excel writes it: a BOM and semicolons
    result = console(stack, "contacts", "import", str(sample))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "imported 3 contact(s), rejected 0"
    assert "as CSV (utf-8 with BOM, ';'-separated)" in result.stderr
    for text in (readme, getting_started):
        shown = re.search(r"phone=(\d+) .*\n(\{.*\})\n", text.split("docs/examples/contacts-excel.csv   #", 1)[1])
        assert shown
        assert contact_of(stack, shown[1]) == json.loads(shown[2])


def test_contacts_import_reads_xlsx(stack: LocalStack, tmp_path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Контакты"
    sheet.append(["Phone", "Contact_Name", "Responsible", "CRM_ID"])
    sheet.append([79160001133, "ООО Лютик", 702, None])  # numbers, as Excel keeps typed digits
    sheet.append([None, None, None, None])
    sheet.append(["not a phone", "Broken", None, None])
    path = tmp_path / "contacts.xlsx"
    workbook.save(path)
    result = console(stack, "contacts", "import", str(path))
    assert result.returncode == 1, result.stderr  # one row rejected
    assert result.stdout.splitlines() == [
        "imported 1 contact(s), rejected 1",
        "  line 4: phone 'not a phone' is not a phone number",  # the sheet's own row number
    ]
    assert "as xlsx (sheet 'Контакты')" in result.stderr
    assert contact_of(stack, "79160001133") == {"contact_name": "ООО Лютик", "responsible": "702"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,number\r\nx,1\r\n", "header lacks column(s): phone, contact_name (found: name, number)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "an old .xls workbook: save it as .xlsx or CSV"),
        ("phone,contact_name\r\n1,Müller GmbH\r\n".encode("latin-1"), "not UTF-8, and not Windows-1251 Cyrillic"),
    ],
)
def test_contacts_files_that_cannot_be_read_say_why(
    stack: LocalStack, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)
    result = console(stack, "contacts", "import", str(path))
    assert result.returncode == 2
    assert message in result.stderr


def test_a_port_in_use_is_named_by_its_variable() -> None:
    # Another stack on a shared machine: moto's server alone would exit with "Port 8000 is in use".
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        env = {
            **os.environ,
            "PORT": str(free_port()),
            "DYNAMODB_PORT": str(taken),
            "PBX_PORT": str(free_port()),
            "WIDGET_SOCKET_PORT": str(free_port()),
            "LOCAL_DATA": "none",
        }
        result = subprocess.run(
            [sys.executable, "-m", "local.stack"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"DYNAMODB_PORT={taken} already in use" in result.stdout
    assert f"make run DYNAMODB_PORT={taken + 10}" in result.stdout
    assert "PBX_PORT=" not in result.stdout
