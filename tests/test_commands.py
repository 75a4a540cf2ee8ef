"""The commands function: real invoke payloads, the IAM route's API Gateway event, the local Lambda
Invoke API, and the full loop commands -> simulator -> pushes -> webhook -> DynamoDB -> getCall."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local.apigw import http_api_event, http_response
from local.aws import LOOPBACK, client, free_port
from local.lambdas import LocalFunction
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.server import ApiGatewayServer
from local.template import Template
from pbxbridge.pbx.configured import client_for

PBX_TOKEN = "test-pbx-key-5d1e"
PHONE = "79101234567"


@pytest.fixture(scope="module")
def pbx() -> Iterator[tuple[PbxSimulator, SimulatorServer]]:
    simulator = PbxSimulator(token=PBX_TOKEN)
    server = simulator.serve()
    yield simulator, server
    server.stop()


@pytest.fixture(scope="module")
def functions(moto_url: str, template: Template, pbx: tuple[PbxSimulator, SimulatorServer]) -> dict[str, LocalFunction]:
    # The session's parameters too: loading a function sets its environment for the whole process.
    template = Template(parameters={**template.parameters, "PbxUrl": pbx[1].api_url})
    return {name: LocalFunction(spec) for name, spec in template.functions().items()}


@pytest.fixture
def simulator(
    aws: dict[str, str], moto_url: str, pbx: tuple[PbxSimulator, SimulatorServer], functions: dict[str, LocalFunction]
) -> PbxSimulator:
    """A fresh PBX state, its key in SSM, and no cached settings or clients from another test."""
    from pbxbridge import commands

    simulator = pbx[0]
    simulator.requests_seen.clear()
    simulator.faults.clear()
    simulator.pushes.clear()
    simulator.history_records.clear()
    simulator.make_call_shape = "uuid"
    simulator.crm_url = None
    simulator.play_make_call = False
    client("ssm", moto_url).put_parameter(
        Name="/pbxbridge/pbx-token", Value=PBX_TOKEN, Type="SecureString", Overwrite=True
    )
    os.environ["PBX_URL"] = pbx[1].api_url
    commands.default_dependencies.cache_clear()
    client_for.cache_clear()
    from pbxbridge.settings import commands_settings

    commands_settings.cache_clear()
    return simulator


def invoke(functions: dict[str, LocalFunction], payload: Any) -> Any:
    return functions["CommandsFunction"].invoke(payload)


def seen(simulator: PbxSimulator, cmd: str) -> list[dict[str, str]]:
    return [request for request in simulator.requests_seen if request.get("cmd") == cmd]


class TestPbxCommands:
    def test_accounts_and_groups(self, functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
        accounts = invoke(functions, {"cmd": "accounts"})
        assert accounts["ok"] is True
        assert {
            "name": "andy",
            "real_name": "Петров Андрей",
            "ext": "708",
            "telnum": "79261234567",
            "email": "andy@example.ru",
        } in accounts["result"]
        assert all(isinstance(account["ext"], str) for account in accounts["result"])
        groups = invoke(functions, {"cmd": "groups", "user": "daria"})
        assert groups == {"ok": True, "result": [{"id": "gr001", "real_name": "Бухгалтерия", "ext": "706"}]}

    def test_make_call_normalises_the_phone(self, functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
        answer = invoke(functions, {"cmd": "makeCall", "user": "andy", "phone": "8 (910) 123-45-67"})
        assert answer["ok"] is True
        assert answer["result"]["id_known"] is True
        assert seen(simulator, "makeCall")[0]["phone"] == PHONE

    def test_dnd_and_subscriptions(self, functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
        assert invoke(functions, {"cmd": "set_dnd", "user": "mike", "state": True}) == {
            "ok": True,
            "result": {"state": True},
        }
        assert invoke(functions, {"cmd": "get_dnd", "user": "mike"})["result"] == {"state": True}
        off = {"cmd": "subscribeOnCalls", "user": "andy", "group": "sales", "status": "off"}
        assert invoke(functions, off)["result"] == {"status": "off"}
        assert seen(simulator, "subscribeOnCalls")[0]["group_id"] == "sales"
        status = invoke(functions, {"cmd": "subscriptionStatus", "user": "andy", "group_id": "sales"})
        assert status["result"] == {"status": "off"}

    def test_history_rows(self, functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
        simulator.play_inbound(PHONE)
        simulator.play_outbound("andy", PHONE)
        answer = invoke(functions, {"cmd": "history", "period": "today", "limit": 1})
        assert answer["ok"] is True
        assert len(answer["result"]["rows"]) == 1
        assert answer["result"]["truncated"] is True
        full = invoke(functions, {"cmd": "history", "start": "2020-01-01T00:00:00+03:00"})["result"]
        assert [row["type"] for row in full["rows"]] == ["in", "out"]
        assert full["truncated"] is False
        assert seen(simulator, "history")[-1]["start"] == "20191231T210000Z"

    @pytest.mark.parametrize(
        ("payload", "fragment"),
        [
            ({"cmd": "makeCall", "user": "andy"}, "phone"),
            ({"cmd": "makeCall", "user": "andy", "phone": "nope"}, "phone"),
            ({"cmd": "teleport"}, "cmd"),
            ({"cmd": "history"}, "period"),
            ({"cmd": "get_dnd", "user": "andy", "surprise": 1}, "surprise"),
            ([1, 2], "JSON object"),
        ],
    )
    def test_bad_input_is_an_invalid_request(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator, payload: Any, fragment: str
    ) -> None:
        answer = invoke(functions, payload)
        assert answer["ok"] is False
        assert answer["error"]["code"] == "invalid_request"
        assert fragment in answer["error"]["message"]
        assert simulator.requests_seen == []

    def test_pbx_errors_keep_their_codes(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator, moto_url: str
    ) -> None:
        unknown_user = invoke(functions, {"cmd": "get_dnd", "user": "nobody"})
        assert unknown_user["error"]["code"] == "invalid_parameters"
        assert unknown_user["error"]["message"] == "Invalid parameters: [user]"
        simulator.fail_next("accounts", "503", "503", "503", "503")
        assert invoke(functions, {"cmd": "accounts"})["error"]["code"] == "pbx_unavailable"
        client("ssm", moto_url).put_parameter(
            Name="/pbxbridge/pbx-token", Value="rotated-elsewhere", Type="SecureString", Overwrite=True
        )
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()  # type: ignore[no-untyped-call]
        assert invoke(functions, {"cmd": "accounts"})["error"]["code"] == "invalid_token"


class TestMakeCallOnce:
    def test_the_same_request_id_dials_once(self, functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
        payload = {"cmd": "makeCall", "user": "andy", "phone": PHONE, "requestId": "crm-42"}
        first = invoke(functions, payload)
        again = invoke(functions, {**payload, "phone": "+7 910 123-45-67"})  # the same number, written otherwise
        assert first["ok"] is True
        assert again == first
        assert len(seen(simulator, "makeCall")) == 1

    def test_without_a_request_id_every_invoke_dials(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator
    ) -> None:
        payload = {"cmd": "makeCall", "user": "andy", "phone": PHONE}
        invoke(functions, payload)
        invoke(functions, payload)
        assert len(seen(simulator, "makeCall")) == 2

    def test_a_request_id_reused_for_another_call_is_refused(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator
    ) -> None:
        invoke(functions, {"cmd": "makeCall", "user": "andy", "phone": PHONE, "requestId": "crm-43"})
        other = invoke(functions, {"cmd": "makeCall", "user": "mike", "phone": PHONE, "requestId": "crm-43"})
        assert other["error"]["code"] == "request_id_reused"
        assert len(seen(simulator, "makeCall")) == 1

    def test_an_unanswered_dial_is_remembered_so_a_retry_never_rings_twice(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator
    ) -> None:
        simulator.fail_next("makeCall", "502")
        payload = {"cmd": "makeCall", "user": "andy", "phone": PHONE, "requestId": "crm-44"}
        first = invoke(functions, payload)
        assert first["ok"] is False
        assert first["error"]["code"] == "pbx_unavailable"
        assert first["error"]["dialled"] == "unknown"
        assert invoke(functions, payload) == first
        assert len(seen(simulator, "makeCall")) == 1

    def test_a_dial_that_never_left_can_be_retried(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator, pbx: tuple[PbxSimulator, SimulatorServer]
    ) -> None:
        from pbxbridge import commands
        from pbxbridge.settings import commands_settings

        closed = free_port()
        os.environ["PBX_URL"] = f"http://{LOOPBACK}:{closed}"
        commands_settings.cache_clear()
        client_for.cache_clear()
        commands.default_dependencies.cache_clear()
        payload = {"cmd": "makeCall", "user": "andy", "phone": PHONE, "requestId": "crm-45"}
        failed = invoke(functions, payload)
        assert failed["error"]["code"] == "pbx_unavailable"
        assert "dialled" not in failed["error"]
        os.environ["PBX_URL"] = pbx[1].api_url
        commands_settings.cache_clear()
        commands.default_dependencies.cache_clear()
        assert invoke(functions, payload)["ok"] is True
        assert len(seen(simulator, "makeCall")) == 1


class TestCrmData:
    def test_upsert_delete_and_the_webhook_sees_it(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator, webhook: Any
    ) -> None:
        answer = invoke(
            functions,
            {
                "cmd": "upsertContacts",
                "contacts": [
                    {"phone": "8 (916) 000-11-22", "contact_name": "ООО Ромашка", "responsible": "mike", "crm_id": "7"},
                    {"phone": "bad", "contact_name": "Broken"},
                    {"phone": "+79160001122", "contact_name": "Twice"},
                ],
            },
        )
        assert answer == {
            "ok": True,
            "result": {
                "upserted": 1,
                "rejected": [
                    {"index": 1, "reason": "phone 'bad' is not a phone number"},
                    {"index": 2, "reason": "phone +79160001122 already given on index 0"},
                ],
            },
        }
        contact = {"cmd": "contact", "phone": "79160001122", "callid": "c1"}
        assert webhook.push(**contact).json() == {"contact_name": "ООО Ромашка", "responsible": "mike"}
        deleted = invoke(functions, {"cmd": "deleteContact", "phone": "+7 916 000 11 22"})
        assert deleted["result"] == {"phone": "+79160001122", "deleted": True}
        assert webhook.push(**contact).json() == {}
        assert invoke(functions, {"cmd": "deleteContact", "phone": "79160001122"})["result"]["deleted"] is False

    def test_get_call_and_list_calls_with_pages(
        self, functions: dict[str, LocalFunction], simulator: PbxSimulator, webhook: Any
    ) -> None:
        for index in range(5):
            start = f"2026082{index}T100000Z"
            webhook.push(
                cmd="history",
                type="in",
                status="Success",
                phone=PHONE,
                user="andy@t",
                start=start,
                duration="5",
                callid=f"page-{index}",
            )
        assert invoke(functions, {"cmd": "getCall", "callid": "nope"})["error"]["code"] == "not_found"
        assert invoke(functions, {"cmd": "getCall", "callid": "page-1"})["result"]["call"]["pbx_user"] == "andy"
        seen_ids: list[str] = []
        cursor = None
        for _ in range(5):
            page = invoke(
                functions,
                {"cmd": "listCalls", "phone": "+7 910 123-45-67", "limit": 2, **({"cursor": cursor} if cursor else {})},
            )["result"]
            seen_ids += [call["callid"] for call in page["calls"]]
            cursor = page["cursor"]
            if not cursor:
                break
        assert seen_ids == [f"page-{index}" for index in (4, 3, 2, 1, 0)]  # newest first, each once
        by_user = invoke(functions, {"cmd": "listCalls", "user": "andy", "limit": 1})["result"]
        assert [call["callid"] for call in by_user["calls"]] == ["page-4"]
        stray = invoke(functions, {"cmd": "listCalls", "user": "mike", "cursor": by_user["cursor"]})
        assert stray["error"]["code"] == "invalid_request"
        assert (
            invoke(functions, {"cmd": "listCalls", "user": "andy", "cursor": "%%%"})["error"]["code"]
            == "invalid_request"
        )


class TestOverHttp:
    def test_the_iam_route_event(self, functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
        body = json.dumps({"cmd": "get_dnd", "user": "andy"}).encode()
        event = http_api_event("POST", "/commands", "/commands", body, headers=[("content-type", "application/json")])
        event["requestContext"]["authorizer"] = {"iam": {"accessKey": "AKIA...", "accountId": "000000000000"}}
        status, _, payload = http_response(invoke(functions, event))
        assert (status, json.loads(payload)) == (200, {"ok": True, "result": {"state": False}})
        bad = http_api_event("POST", "/commands", "/commands", b"{", headers=[("content-type", "application/json")])
        status, _, payload = http_response(invoke(functions, bad))
        assert status == 400
        assert json.loads(payload)["error"]["code"] == "invalid_request"

    @pytest.fixture
    def api(self, functions: dict[str, LocalFunction]) -> Iterator[ApiGatewayServer]:
        import threading

        server = ApiGatewayServer((LOOPBACK, 0), list(functions.values()))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        yield server
        server.shutdown()
        server.server_close()

    def signed(self, url: str, body: bytes, credentials: Credentials) -> dict[str, str]:
        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(credentials, "execute-api", "eu-central-1").add_auth(request)
        return dict(request.headers.items())

    def test_post_commands_needs_a_valid_signature(self, api: ApiGatewayServer, simulator: PbxSimulator) -> None:
        url = api.url + "/commands"
        body = json.dumps({"cmd": "get_dnd", "user": "andy"}).encode()
        unsigned = requests.post(url, data=body, timeout=10)
        assert unsigned.status_code == 403
        forged = self.signed(url, body, Credentials("local", "not-the-secret"))
        assert requests.post(url, data=body, headers=forged, timeout=10).status_code == 403
        good = requests.post(url, data=body, headers=self.signed(url, body, Credentials("local", "local")), timeout=10)
        assert good.status_code == 200
        assert good.json() == {"ok": True, "result": {"state": False}}
        tampered = requests.post(
            url,
            data=body.replace(b"andy", b"mike"),
            headers=self.signed(url, body, Credentials("local", "local")),
            timeout=10,
        )
        assert tampered.status_code == 403

    def test_the_lambda_invoke_api_and_the_console(self, api: ApiGatewayServer, simulator: PbxSimulator) -> None:
        lambda_client = boto3.client("lambda", endpoint_url=api.url)
        response = lambda_client.invoke(FunctionName="CommandsFunction", Payload=b'{"cmd": "get_dnd", "user": "andy"}')
        assert json.loads(response["Payload"].read()) == {"ok": True, "result": {"state": False}}
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")
        env = {**os.environ, "AWS_ENDPOINT_URL_LAMBDA": api.url, "COMMANDS_FUNCTION": "CommandsFunction"}
        run = subprocess.run(
            [sys.executable, "-m", "pbxbridge.cli", "invoke", "set_dnd", "user=daria", "state=true"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == {"ok": True, "result": {"state": True}}
        refused = subprocess.run(
            [sys.executable, "-m", "pbxbridge.cli", "invoke", "getCall", "callid=none"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"]["code"] == "not_found"


def test_sample_events_are_valid_commands(functions: dict[str, LocalFunction], simulator: PbxSimulator) -> None:
    from pathlib import Path

    from pbxbridge.protocol.commands import read_command

    samples = sorted((Path(__file__).resolve().parent.parent / "events").glob("commands-*.json"))
    assert len(samples) >= 6
    for path in samples:
        event = json.loads(path.read_text())
        if event.get("version") == "2.0":
            status, _, body = http_response(invoke(functions, event))
            assert status == 200, (path.name, body)
        else:
            read_command(event, "RU")  # raises on an invalid sample


def test_full_loop_a_click_to_call_lands_in_dynamodb_with_its_timeline(
    functions: dict[str, LocalFunction], simulator: PbxSimulator, webhook: Any
) -> None:
    """commands function -> simulator -> pushes -> webhook (over HTTP) -> DynamoDB -> getCall."""
    import threading

    from tests.conftest import CRM_TOKEN

    api = ApiGatewayServer((LOOPBACK, 0), list(functions.values()))
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        simulator.crm_url = api.url + "/pbx"
        simulator.crm_token = CRM_TOKEN
        simulator.play_make_call = True
        placed = invoke(functions, {"cmd": "makeCall", "user": "andy", "phone": "+7 910 123-45-67"})
        simulator.wait_for_calls()
        callid = placed["result"]["call_id"]
        answer = invoke(functions, {"cmd": "getCall", "callid": callid})
    finally:
        api.shutdown()
        api.server_close()
    assert all(push.status == 200 for push in simulator.pushes)
    call, timeline = answer["result"]["call"], answer["result"]["timeline"]
    assert call["outcome"] == "answered"
    assert call["live_state"] == "COMPLETED"
    assert call["client"] == "+79101234567"
    assert call["pbx_user"] == "andy"
    assert [entry["type"] for entry in timeline] == ["OUTGOING", "ACCEPTED", "COMPLETED"]


def test_the_pbx_key_never_leaves(
    functions: dict[str, LocalFunction],
    simulator: PbxSimulator,
    log_output: io.StringIO,
    capfd: pytest.CaptureFixture[str],
) -> None:
    simulator.fail_next("accounts", "502", "502", "502", "502")
    answers = [
        invoke(functions, {"cmd": "accounts"}),
        invoke(functions, {"cmd": "get_dnd", "user": "nobody"}),
        invoke(functions, {"cmd": "makeCall", "user": "andy", "phone": PHONE}),
    ]
    text = json.dumps(answers) + log_output.getvalue() + capfd.readouterr().out
    assert "command answered" in text
    assert PBX_TOKEN not in text
