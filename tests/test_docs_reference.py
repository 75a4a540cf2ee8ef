"""The docs' references are the code's own word: regenerated, they match what is committed, and what
they say of each command is what the command does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from local import docs_reference
from pbxbridge.protocol.commands import COMMAND_NAMES, read_command

REPO = Path(__file__).resolve().parent.parent


def test_the_committed_references_are_current() -> None:
    for path, text in docs_reference.pages().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(REPO)} is stale: run `make docs-reference`"


def test_every_command_has_a_section_and_a_sample_payload_that_is_a_valid_command() -> None:
    page = (REPO / "docs" / "reference" / "commands.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^## `([^`]+)`$", page, flags=re.MULTILINE))
    assert documented == set(COMMAND_NAMES)
    for name in COMMAND_NAMES:
        sample = json.loads((REPO / "events" / f"commands-{name}.json").read_text(encoding="utf-8"))
        assert sample["cmd"] == name
        read_command(sample, "RU")  # raises on a sample the command refuses


def test_every_event_schema_has_a_section() -> None:
    page = (REPO / "docs" / "reference" / "events.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^## `([^`]+)`$", page, flags=re.MULTILINE))
    assert documented == {path.stem for path in (REPO / "schemas" / "events").glob("*.json")}


def test_a_commands_errors_are_read_off_the_code_that_answers_them() -> None:
    errors = docs_reference.command_errors()
    pbx = set(docs_reference.pbx_error_codes())
    assert {"invalid_parameters", "invalid_token", "wrong_tenant", "pbx_unavailable"} <= pbx
    assert pbx <= set(errors["accounts"])  # asks the PBX
    assert pbx <= set(errors["syncDirectory"])  # asks the PBX, through a helper
    # The CRM's own data: never the PBX (`invalid_request` is every command's, the PBX's refusal of a
    # command its API lacks included).
    assert not (pbx - {"invalid_request"}) & set(errors["upsertContacts"])
    assert "not_found" in errors["getCall"]
    assert "not_found" not in errors["listCalls"]
    assert "not_configured" in errors["listUsers"]  # through the directory store's helper
    assert {"request_in_progress", "request_id_reused"} <= set(errors["makeCall"])
    assert "request_in_progress" not in errors["history"]
    for codes in errors.values():
        assert {"invalid_request", "unavailable"} <= set(codes)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"cmd": "getCall", "callid": "no-such-call"}, "not_found"),
        ({"cmd": "listCallbacks", "owner": "andy"}, "not_configured"),
        ({"cmd": "listCalls", "user": "andy", "limit": 0}, "invalid_request"),
    ],
)
def test_the_codes_the_commands_really_answer_are_documented(payload: dict[str, object], code: str) -> None:
    """The command run for real (stores that find nothing, no call-backs table): its answer's code is
    among the errors its reference lists."""
    from typing import Any

    from pbxbridge.commands import CommandsDependencies, execute, metrics
    from pbxbridge.domain.commands import CommandService

    class EmptyCalls:
        def get_call(self, callid: str) -> dict[str, Any] | None:
            return None

        def timeline(self, callid: str) -> list[dict[str, Any]]:
            return []

        def calls_by_client(self, phone_e164: str, limit: int = 50, cursor: str | None = None) -> Any:
            raise AssertionError("not reached")

        def calls_by_user(self, login: str, limit: int = 50, cursor: str | None = None) -> Any:
            raise AssertionError("not reached")

    def no_pbx() -> Any:
        raise AssertionError("these commands never ask the PBX")

    service = CommandService(pbx=no_pbx, calls=EmptyCalls(), contacts=None, region="RU")  # type: ignore[arg-type]
    try:
        answer = execute(payload, deps=CommandsDependencies(service=service, dial_once=None, phone_region="RU"))
    finally:
        metrics.clear_metrics()  # outside a handler nothing flushes them
    assert answer["error"]["code"] == code
    assert code in docs_reference.command_errors()[str(payload["cmd"])]


def test_every_template_parameter_is_in_the_deployment_pages_table_with_its_default() -> None:
    """The Parameters table is prose about each parameter; its names and defaults are the template's."""
    from local.template import Template

    section = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8").split("\n## Parameters\n", 1)[1]
    rows: dict[str, str] = {}
    for line in section.split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Za-z0-9]+)`", cells[0]):
                rows[name] = cells[1].strip("`")
    parameters = Template().body["Parameters"]
    assert set(parameters) == set(rows), set(parameters) ^ set(rows)
    for name, spec in parameters.items():
        default = str(spec.get("Default", ""))
        assert rows[name] == (default or "empty"), (name, rows[name], default)
