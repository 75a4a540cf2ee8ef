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


# Template parameters, one way for all of them: `make run PARAMS="Name=Value ..."`.


def make_run_environment(**variables: str) -> dict[str, str]:
    """The environment `make run` gives the stack (free ports, nothing kept), with `variables`."""
    from local.aws import free_port

    ports = ("PORT", "DYNAMODB_PORT", "PBX_PORT", "WIDGET_SOCKET_PORT", "CRM_RECEIVER_PORT")
    return {**os.environ, **{name: str(free_port()) for name in ports}, "LOCAL_DATA": "none", **variables}


def test_make_run_refuses_a_parameter_the_template_does_not_have() -> None:
    from local.template import Template

    result = subprocess.run(
        [sys.executable, "-m", "local.stack"],
        cwd=REPO,
        env=make_run_environment(PARAMS="ScenarioMissedCalLeads=true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no parameter 'ScenarioMissedCalLeads'; did you mean ScenarioMissedCallLeads?" in result.stdout
    assert "local stack is up" not in result.stdout
    listed = result.stdout.split("Its parameters:", 1)[1]
    for name in Template().body["Parameters"]:  # every name it could have been
        assert name in listed, name


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("ScenarioMissedCallLeads=yes", "ScenarioMissedCallLeads='yes' is not allowed; one of: true, false"),
        ("HistorySyncRateMinutes=1", "HistorySyncRateMinutes=1 is below its minimum 2"),
        ("WebhookProvisionedConcurrency=many", "WebhookProvisionedConcurrency='many' is not a number"),
        ("PhoneRegion=ru", "PhoneRegion='ru' does not match ^[A-Z]{2}$"),
        ("LogLevel=INFO LogLevel=DEBUG", "LogLevel is given twice"),
        ("LogLevel", "'LogLevel' is not Name=Value"),
        ("WidgetFrameAncestors='https://crm.example", "cannot read"),
        # The template's Rules, as CloudFormation applies them before it creates anything.
        ("CrmEndpointUrl=https://crm.example/events", "CrmForwardingNeedsItsSecret: CrmSecretName must name"),
        (
            "CrmEndpointUrl=https://crm.example/e CrmSecretName=s CrmAuthType=OAUTH_CLIENT_CREDENTIALS",
            "CrmOAuthNeedsItsTokenUrl",
        ),
    ],
)
def test_parameters_are_checked_as_a_deploy_checks_them(params: str, message: str) -> None:
    from local.parameters import ParameterError, parameters_from_environment
    from local.stack import check_parameters
    from local.template import load_template

    with pytest.raises(ParameterError) as refused:
        check_parameters(parameters_from_environment({"PARAMS": params}, load_template()))
    assert message in str(refused.value)


def test_parameters_are_read_with_shell_quoting_and_a_shorthand_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from local import parameters
    from local.parameters import ParameterError, parameters_from_environment
    from local.stack import check_parameters
    from local.template import load_template

    body = load_template()
    given = "WidgetFrameAncestors='https://crm.example https://*.crm.example' CrmEventTypes=LeadCreated,CallMissed"
    assert check_parameters(parameters_from_environment({"PARAMS": given}, body)) == {
        "WidgetFrameAncestors": "https://crm.example https://*.crm.example",
        "CrmEventTypes": "LeadCreated,CallMissed",
    }
    # `make run LOG_LEVEL=INFO`, were it wanted: one entry, checked like PARAMS.
    monkeypatch.setitem(parameters.SHORTHANDS, "LOG_LEVEL", "LogLevel")
    assert parameters_from_environment({"LOG_LEVEL": "INFO"}, body) == {"LogLevel": "INFO"}
    with pytest.raises(ParameterError, match="one of: DEBUG, INFO"):
        parameters_from_environment({"LOG_LEVEL": "TRACE"}, body)
    with pytest.raises(ParameterError, match="LogLevel is given twice"):
        parameters_from_environment({"LOG_LEVEL": "INFO", "PARAMS": "LogLevel=DEBUG"}, body)


def test_crm_url_sets_the_forwarding_parameters_and_params_may_not_set_them_too() -> None:
    from local.parameters import ParameterError
    from local.stack import check_parameters

    # CRM_URL (or CRM_RECEIVER=1) sets CrmEndpointUrl, CrmAuthType and CrmSecretName, with the secret it stores.
    assert check_parameters({"CrmEventTypes": "LeadCreated"}, crm_url="http://127.0.0.1:9/crm") == {
        "CrmEventTypes": "LeadCreated"
    }
    with pytest.raises(ParameterError, match="CrmSecretName: set by CRM_RECEIVER=1"):
        check_parameters({"CrmSecretName": "mine"}, crm_url="receiver")


def test_make_run_with_the_missed_call_scenario_forwards_a_lead_to_the_crm() -> None:
    # `make run PARAMS="ScenarioMissedCallLeads=true CrmEventTypes=LeadCreated,CallMissed" CRM_RECEIVER=1`,
    # then a missed call from a number nobody knows: the lead reaches the stand-in CRM.
    import signal
    import threading
    import time

    env = make_run_environment(
        PARAMS="ScenarioMissedCallLeads=true CrmEventTypes=LeadCreated,CallMissed",
        CRM_RECEIVER="1",
        CRM_TOKEN="params-e2e-key",
        LOG_FORMAT="",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()

    def printed(text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if any(text in line for line in list(lines)):
                return True
            time.sleep(0.1)
        return any(text in line for line in list(lines))

    try:
        assert printed("Template parameters:", 120), "".join(lines)
        output = "".join(lines)
        assert "Template parameters: CrmEventTypes=LeadCreated,CallMissed ScenarioMissedCallLeads=true" in output
        webhook = output.split("Webhook (what the PBX posts to):\n", 1)[1].split()[0]
        missed = {
            "cmd": "history", "type": "in", "status": "missed", "phone": "79161112233", "user": "andy",
            "start": "20261128T100000Z", "duration": "0", "callid": "params-missed-1", "crm_token": "params-e2e-key",
        }  # fmt: skip
        assert requests.post(webhook, data=missed, timeout=30).status_code == 200
        assert printed("CRM received LeadCreated +79161112233/LeadCreated", 60), "".join(lines)
        assert printed("CRM received CallMissed params-missed-1/CallMissed", 30), "".join(lines)
        received = [line.split()[2] for line in list(lines) if line.startswith("CRM received ")]
        assert set(received) <= {"LeadCreated", "CallMissed"}  # CrmEventTypes: CallEnded and the rest are not sent
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
