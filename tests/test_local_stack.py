"""End to end over real HTTP: the local stack as `make run` starts it, and the console."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from local.stack import DEMO_CONTACT, LocalStack
from tests.conftest import HISTORY

REPO = Path(__file__).resolve().parent.parent


def post(stack: LocalStack, path: str, **fields: Any) -> requests.Response:
    return requests.post(stack.api.url + path, data={"crm_token": stack.crm_token, **fields}, timeout=10)


def console(stack: LocalStack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    env.update(stack.template.functions()["WebhookFunction"].environment)
    return subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_the_printed_curl_returns_the_demo_contact(stack: LocalStack) -> None:
    summary = stack.summary()
    curl = next(line.strip() for line in summary.splitlines() if line.strip().startswith("curl "))
    result = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30, check=True)  # noqa: S602
    assert json.loads(result.stdout) == {"contact_name": DEMO_CONTACT["contact_name"], "responsible": "andy"}


def test_schedules_are_read_from_the_template() -> None:
    from local.stack import rate_seconds

    assert (rate_seconds("rate(10 minutes)"), rate_seconds("rate(1 hour)"), rate_seconds("cron(0 3 * * ? *)")) == (
        600,
        3600,
        None,
    )


def test_summary_names_the_webhook_the_endpoint_and_the_exports(stack: LocalStack) -> None:
    summary = stack.summary()
    assert "HistorySyncFunction rate(10 minutes)" in summary
    assert f"{stack.api.url}/pbx" in summary
    assert f"export AWS_ENDPOINT_URL={stack.moto_url}" in summary
    assert "export CONTACTS_TABLE=ContactsTable" in summary
    assert "e2e-key" in summary


@pytest.mark.parametrize("path", ["/", "/pbx"])
def test_both_routes_serve_the_webhook(stack: LocalStack, path: str) -> None:
    answer = post(stack, path, cmd="contact", phone="+7 910 123-45-67", callid="e2e-0")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["responsible"] == "andy"


def test_unrouted_paths_and_methods_are_api_gateway_404s(stack: LocalStack) -> None:
    assert requests.post(stack.api.url + "/elsewhere", data={}, timeout=10).status_code == 404
    assert requests.get(stack.api.url + "/pbx", timeout=10).status_code == 404


def test_the_spec_examples_are_stored_and_shown_by_the_console(stack: LocalStack) -> None:
    callid = "B10D0EB124F4E64AF4EA-1511"
    history = {**HISTORY, "callid": callid}  # the spec's example
    for event_type in ("OUTGOING", "ACCEPTED", "COMPLETED"):
        assert (
            post(stack, "/pbx", cmd="event", type=event_type, phone="79101234567", user="user", callid=callid).json()
            == {}
        )
    assert post(stack, "/pbx", **history).json() == {}
    assert post(stack, "/pbx", **history).json() == {}  # a duplicate changes nothing
    shown = console(stack, "calls", "show", callid)
    assert shown.returncode == 0, shown.stderr
    call = json.loads(shown.stdout)
    assert call["outcome"] == "answered"
    assert call["live_state"] == "COMPLETED"
    assert call["history_pushes"] == 2
    assert [event["type"] for event in call["timeline"]] == ["OUTGOING", "ACCEPTED", "COMPLETED"]


def test_wrong_key_over_http(stack: LocalStack) -> None:
    answer = requests.post(stack.api.url + "/pbx", data={"cmd": "contact", "crm_token": "nope"}, timeout=10)
    assert (answer.status_code, answer.json()) == (401, {"error": "Invalid token"})


def test_contacts_import_through_the_console(stack: LocalStack, tmp_path: Path) -> None:
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "phone,contact_name,responsible,crm_id\n"
        "8 (916) 000-11-22,ООО Ромашка,mike,crm-7\n"
        "not a phone,Broken,,\n"
        "+79160001122,Same number again,,\n"
        "79035550000,,andy,crm-9\n"
        "+44 20 7946 0958,London Ltd,,crm-10\n",
        encoding="utf-8",
    )
    result = console(stack, "contacts", "import", str(csv_file))
    assert result.returncode == 1, result.stderr  # some rows were rejected
    lines = result.stdout.splitlines()
    assert lines[0] == "imported 2 contact(s), rejected 3"
    assert "line 3: phone 'not a phone' is not a phone number" in lines[1]
    assert "line 4: phone +79160001122 already given on line 2" in lines[2]
    assert "line 5: invalid contact_name" in lines[3]
    answer = post(stack, "/pbx", cmd="contact", phone="79160001122", callid="e2e-1")
    assert answer.json() == {"contact_name": "ООО Ромашка", "responsible": "mike"}
    assert post(stack, "/pbx", cmd="contact", phone="442079460958", callid="e2e-2").json() == {
        "contact_name": "London Ltd"
    }


def test_console_reports_a_missing_file_and_an_unknown_call(stack: LocalStack, tmp_path: Path) -> None:
    missing = console(stack, "contacts", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    unknown = console(stack, "calls", "show", "no-such-call")
    assert unknown.returncode == 1
    assert "no call no-such-call" in unknown.stderr


def test_console_help(stack: LocalStack) -> None:
    result = console(stack, "contacts", "import", "--help")
    assert result.returncode == 0
    assert "contact_name" in result.stdout


def test_a_placed_call_is_recorded_into_the_embedded_s3_and_its_events_logged(
    stack: LocalStack, log_output: io.StringIO
) -> None:
    """makeCall -> simulator -> pushes -> stream -> SQS -> recorder -> S3, and CallRecorded."""
    import time

    import boto3

    lambda_client = boto3.client("lambda", endpoint_url=stack.api.url)
    answer = lambda_client.invoke(
        FunctionName="CommandsFunction", Payload=json.dumps({"cmd": "makeCall", "user": "andy", "phone": "79101234567"})
    )
    callid = json.loads(answer["Payload"].read())["result"]["call_id"]
    call: dict[str, Any] = {}
    for _ in range(100):  # the stream and queue pollers run every half second or so
        payload = json.dumps({"cmd": "getCall", "callid": callid})
        got = json.loads(lambda_client.invoke(FunctionName="CommandsFunction", Payload=payload)["Payload"].read())
        call = got.get("result", {}).get("call", {})
        if "recording_key" in call:
            break
        time.sleep(0.2)
    assert call.get("recording_key", "").endswith(".mp3"), call
    s3 = boto3.client("s3", endpoint_url=stack.moto_url)
    body = s3.get_object(Bucket="RecordingsBucket", Key=call["recording_key"])["Body"].read()
    assert body.startswith(b"ID3")
    time.sleep(1.5)  # CallRecorded comes from the change the recorder made
    logged = log_output.getvalue()
    for kind in ("CallRinging", "CallAnswered", "CallEnded", "CallRecorded"):
        assert f'"detail_type":"{kind}"' in logged, kind


def test_a_missed_call_waits_in_the_owners_call_back_list_until_a_call_back_is_answered(stack: LocalStack) -> None:
    """simulator -> webhook -> calls' stream -> call-backs -> their stream, all through the local pollers."""
    import time

    import boto3

    lambda_client = boto3.client("lambda", endpoint_url=stack.api.url)

    def invoke(payload: dict[str, Any]) -> Any:
        answer = lambda_client.invoke(FunctionName="CommandsFunction", Payload=json.dumps(payload))
        return json.loads(answer["Payload"].read())

    def wait_for(status: str) -> list[dict[str, Any]]:
        for _ in range(100):  # the stream pollers run every half second or so
            found = invoke({"cmd": "listCallbacks", "owner": "andy", "status": status})["result"]["callbacks"]
            if found:
                return list(found)
            time.sleep(0.2)
        return []

    # The demo contact's responsible is andy: his list, though the call rang the sales group.
    stack.pbx.simulator.play_inbound(DEMO_CONTACT["phone"], answered_by=None)
    (opened,) = wait_for("open")
    assert (opened["phone"], opened["missed_count"]) == (DEMO_CONTACT["phone"], 1)
    # At once, though the PBX gives starts to the second: a call-back in the missed call's second
    # counts as after it.
    answer = invoke({"cmd": "makeCall", "user": "andy", "phone": DEMO_CONTACT["phone"]})
    assert answer["ok"], answer
    (closed,) = wait_for("closed")
    assert (closed["id"], closed["closed_by"], closed["closed_callid"]) == (
        opened["id"],
        "andy",
        answer["result"]["call_id"],
    )
    assert invoke({"cmd": "listCallbacks", "owner": "andy"})["result"]["callbacks"] == []
