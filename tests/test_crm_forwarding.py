"""Forwarding the call events to a CRM's URL (EventBridge API destinations), read from the template
and run locally: the embedded bus matches the template's rule, the delivery adds the connection's
auth, retries what API destinations retry and dead-letters the rest."""

from __future__ import annotations

import base64
import copy
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import jsonschema
import pytest
import requests

from local.aws import client, create_queues_buckets_and_buses, free_port
from local.crm_forwarding import read_forwarding, run_forwarding
from local.crm_receiver import TOKEN_PATH, CrmReceiver, ReceiverAuth
from local.event_schemas import logical_id
from local.stack import LocalStack
from local.template import Template
from pbxbridge.call_events import EVENT_TYPES
from tests.conftest import running_stack, wait_for


def registry_schema(template: Template, detail_type: str) -> dict[str, Any]:
    """The schema the template registers for this event: what a CRM is promised to receive."""
    content = template.body["Resources"][logical_id(detail_type)]["Properties"]["Content"]
    return dict(json.loads(content))


def test_forwarding_is_off_unless_the_url_is_set() -> None:
    template = Template()
    assert read_forwarding(template) is None
    assert not template.resources("AWS::Events::ApiDestination")
    assert "CrmDeadLetterQueue" not in template.queues()
    conditional = [
        name for name, res in template.body["Resources"].items() if name.startswith("Crm") and "Alarm" not in name
    ]
    assert conditional
    assert all(template.body["Resources"][n].get("Condition") == "ForwardToCrm" for n in conditional)


def test_the_template_wires_rule_destination_connection_role_and_dead_letters() -> None:
    resources = Template().body["Resources"]
    rule = resources["CrmForwardRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "CallEventBus"}
    assert rule["EventPattern"] == {
        "Fn::If": [
            "CrmAllEventTypes",
            {"source": ["pbxbridge"]},
            {"source": ["pbxbridge"], "detail-type": {"Ref": "CrmEventTypes"}},
        ]
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["CrmApiDestination", "Arn"]}
    assert "InputTransformer" not in target  # the CRM receives the whole event, as documented
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["CrmDeadLetterQueue", "Arn"]}
    assert resources["CrmApiDestination"]["Properties"]["InvocationRateLimitPerSecond"] == {
        "Ref": "CrmRateLimitPerSecond"
    }
    # The rule's role may invoke this destination and nothing else.
    (policy,) = resources["CrmForwardRole"]["Properties"]["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "events:InvokeApiDestination",
            "Resource": {"Fn::GetAtt": ["CrmApiDestination", "Arn"]},
        }
    ]
    alarm = resources["CrmDeadLettersAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["CrmDeadLetterQueue", "QueueName"]}}]
    # No credential in the template: every secret value is a Secrets Manager reference.
    connection = json.dumps(resources["CrmConnection"]["Properties"])
    for key in ("api_key", "username", "password", "client_id", "client_secret"):
        assert f"{{{{resolve:secretsmanager:${{CrmSecretName}}:SecretString:{key}}}}}" in connection


@pytest.fixture
def bus(aws: dict[str, str], moto_url: str) -> str:
    """The embedded AWS, reset for the test."""
    return moto_url


def forwarding_to(
    moto_url: str,
    receiver: CrmReceiver,
    stopping: threading.Event,
    secret: dict[str, str],
    body: dict[str, Any] | None = None,
    retry_delay: float = 0.05,
    **parameters: str,
) -> Template:
    """A template (template.yaml, or `body`) forwarding to the receiver, provisioned on the embedded
    AWS, delivering."""
    name = f"crm-{uuid.uuid4().hex[:8]}"
    client("secretsmanager", moto_url).create_secret(Name=name, SecretString=json.dumps(secret))
    template = Template(
        parameters={"CrmEndpointUrl": f"{receiver.url}/crm/events", "CrmSecretName": name, **parameters},
        endpoint=moto_url,
        **({"body": body} if body is not None else {}),
    )
    create_queues_buckets_and_buses(template, moto_url)
    run_forwarding(template, moto_url, stopping, retry_delay=retry_delay)
    return template


def with_retry_policy(**policy: int) -> dict[str, Any]:
    """template.yaml with the forwarding rule target's RetryPolicy changed (its 185 retries take a
    quarter of an hour even at the local backoff)."""
    body = copy.deepcopy(Template().body)
    (target,) = body["Resources"]["CrmForwardRule"]["Properties"]["Targets"]
    target["RetryPolicy"].update(policy)
    return body


def dead_letters(moto_url: str, template: Template, count: int) -> list[dict[str, Any]]:
    """The first `count` messages of the forwarding's dead-letter queue (waiting for them)."""
    sqs = client("sqs", moto_url)
    queue_url = template.resolve({"Ref": "CrmDeadLetterQueue"})
    messages: list[dict[str, Any]] = []

    def arrived() -> bool:
        answer = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=0)
        messages.extend(answer.get("Messages", []))
        return len(messages) >= count

    wait_for(arrived)
    return messages


def publish(moto_url: str, template: Template, detail_type: str, detail: dict[str, Any]) -> None:
    events = client("events", moto_url)
    answer = events.put_events(
        Entries=[
            {
                "Source": "pbxbridge",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "EventBusName": template.resolve({"Ref": "CallEventBus"}),
                "Time": datetime.now(tz=UTC),
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0


def missed(callid: str) -> dict[str, Any]:
    return {"id": f"{callid}/CallMissed", "callid": callid, "occurred_at": "2026-11-28T10:00:00Z", "direction": "in"}


@pytest.fixture
def stopping() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()
    time.sleep(1.1)  # the delivery thread's long poll ends before moto is reset under it


@pytest.fixture
def receiver() -> Iterator[CrmReceiver]:
    server = CrmReceiver(free_port(), ReceiverAuth()).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("auth_type", "secret", "receiver_auth"),
    [
        ("API_KEY", {"api_key": "k-3f9a"}, ReceiverAuth(api_key_header="X-Crm-Key", api_key="k-3f9a")),
        ("BASIC", {"username": "pbx", "password": "p-77c1"}, ReceiverAuth(basic=("pbx", "p-77c1"))),
        (
            "OAUTH_CLIENT_CREDENTIALS",
            {"client_id": "c1", "client_secret": "s-19"},
            ReceiverAuth(oauth_client=("c1", "s-19")),
        ),
    ],
)
def test_each_auth_reaches_the_crm_once_with_its_credentials(
    bus: str,
    receiver: CrmReceiver,
    stopping: threading.Event,
    auth_type: str,
    secret: dict[str, str],
    receiver_auth: ReceiverAuth,
) -> None:
    receiver.auth = receiver_auth  # the receiver refuses (401) anything without these credentials
    template = forwarding_to(
        bus,
        receiver,
        stopping,
        secret,
        CrmAuthType=auth_type,
        CrmApiKeyHeader="X-Crm-Key",
        CrmOAuthTokenUrl=f"{receiver.url}{TOKEN_PATH}",
    )
    publish(bus, template, "CallMissed", missed("c-auth"))
    wait_for(lambda: receiver.received)
    time.sleep(0.5)
    (got,) = receiver.received
    assert got.path == "/crm/events"
    assert got.body["detail"] == missed("c-auth")
    if auth_type == "API_KEY":
        assert got.headers["X-Crm-Key"] == "k-3f9a"
    elif auth_type == "BASIC":
        assert got.headers["Authorization"] == "Basic " + base64.b64encode(b"pbx:p-77c1").decode()
    else:
        assert got.headers["Authorization"].removeprefix("Bearer ") in receiver_auth.tokens


def test_only_the_selected_types_are_forwarded(bus: str, receiver: CrmReceiver, stopping: threading.Event) -> None:
    template = forwarding_to(bus, receiver, stopping, {"api_key": "k"}, CrmEventTypes="CallMissed, CallEnded")
    receiver.auth = ReceiverAuth(api_key="k")
    publish(bus, template, "CallRinging", {**missed("c1"), "id": "c1/CallRinging"})
    publish(bus, template, "CallMissed", missed("c1"))
    wait_for(lambda: receiver.received)
    time.sleep(0.8)
    assert [r.body["detail-type"] for r in receiver.received] == ["CallMissed"]


def test_by_default_every_event_is_forwarded_those_added_later_included(
    bus: str, receiver: CrmReceiver, stopping: threading.Event
) -> None:
    template = forwarding_to(bus, receiver, stopping, {"api_key": "k"})
    assert read_forwarding(template).pattern == {"source": ["pbxbridge"]}  # type: ignore[union-attr]
    receiver.auth = ReceiverAuth(api_key="k")
    publish(bus, template, "CallbackOpened", {"id": "cb-1/CallbackOpened", "callid": "cb-1"})
    publish(bus, template, "LeadCreated", {"id": "+79101234567/LeadCreated", "phone": "+79101234567"})
    wait_for(lambda: len(receiver.received) == 2)
    assert sorted(r.body["detail-type"] for r in receiver.received) == ["CallbackOpened", "LeadCreated"]


def test_a_crm_that_fails_for_a_while_gets_the_event_once(
    bus: str, receiver: CrmReceiver, stopping: threading.Event
) -> None:
    receiver.auth = ReceiverAuth(api_key="k")
    receiver.answers = [503, 429, 500]
    template = forwarding_to(bus, receiver, stopping, {"api_key": "k"})
    publish(bus, template, "CallMissed", missed("c-retry"))
    wait_for(lambda: receiver.received)
    time.sleep(0.5)
    assert [r.body["detail"]["id"] for r in receiver.received] == ["c-retry/CallMissed"]
    assert receiver.answers == []


def test_an_event_the_crm_refuses_goes_to_the_dead_letter_queue(
    bus: str, receiver: CrmReceiver, stopping: threading.Event
) -> None:
    # A 4xx other than 401, 407, 409 and 429 is final: no retry, straight to the dead-letter queue.
    receiver.auth = ReceiverAuth(api_key="k")
    receiver.answers = [400]
    template = forwarding_to(bus, receiver, stopping, {"api_key": "k"}, CrmEventTypes="CallMissed")
    publish(bus, template, "CallMissed", missed("c-dlq"))
    (message,) = dead_letters(bus, template, 1)
    assert json.loads(message["Body"])["detail"]["id"] == "c-dlq/CallMissed"
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_MESSAGE"] == "HTTP 400"
    assert attributes["RETRY_ATTEMPTS"] == "0"
    assert "EXHAUSTED_RETRY_CONDITION" not in attributes  # no limit was reached: no retry could help
    assert receiver.received == []
    assert len(receiver.attempts) == 1


def test_the_retry_policy_is_the_rule_targets_in_the_template() -> None:
    (target,) = Template().body["Resources"]["CrmForwardRule"]["Properties"]["Targets"]
    forwarding = read_forwarding(Template(parameters={"CrmEndpointUrl": "https://crm.example/e", "CrmSecretName": "s"}))
    assert forwarding is not None
    assert forwarding.max_retries == target["RetryPolicy"]["MaximumRetryAttempts"]
    assert forwarding.max_age_seconds == target["RetryPolicy"]["MaximumEventAgeInSeconds"]
    assert forwarding.dead_letter_queue_url is not None  # the template has one: undelivered events go there


def test_a_crm_failing_one_event_still_gets_the_others_and_that_one_is_retried_per_the_policy(
    bus: str, receiver: CrmReceiver, stopping: threading.Event
) -> None:
    # EventBridge retries each event on its own: a CRM that keeps failing A must not hold B back
    # behind A's retries. A is retried exactly MaximumRetryAttempts times, then dead-lettered.
    receiver.auth = ReceiverAuth(api_key="k")
    receiver.failing = {"c-a/CallMissed": 503}
    body = with_retry_policy(MaximumRetryAttempts=3)
    # A's retries wait 0.25-0.5 s, 0.5-1 s, 1-2 s: B is published once A's first try has failed.
    template = forwarding_to(bus, receiver, stopping, {"api_key": "k"}, body=body, retry_delay=0.5)
    publish(bus, template, "CallMissed", missed("c-a"))
    wait_for(lambda: receiver.attempts)
    publish(bus, template, "CallMissed", missed("c-b"))
    wait_for(lambda: receiver.received)
    assert [r.body["detail"]["id"] for r in receiver.received] == ["c-b/CallMissed"]

    (message,) = dead_letters(bus, template, 1)
    assert json.loads(message["Body"])["detail"]["id"] == "c-a/CallMissed"
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_MESSAGE"] == "HTTP 503"
    assert attributes["RETRY_ATTEMPTS"] == "3"
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    attempts = [(r.body["detail"]["id"], r.status) for r in receiver.attempts]
    assert attempts.count(("c-a/CallMissed", 503)) == 1 + 3
    assert attempts.count(("c-b/CallMissed", 200)) == 1
    # B went out while A was still being retried (delivered one at a time, B would come after A's last try).
    assert attempts.index(("c-b/CallMissed", 200)) < len(attempts) - 1


def test_an_event_older_than_the_policy_allows_is_not_retried(
    bus: str, receiver: CrmReceiver, stopping: threading.Event
) -> None:
    from local.crm_forwarding import CrmDelivery, Deliveries, Outcome

    receiver.auth = ReceiverAuth(api_key="k")
    receiver.failing = {"c-old/CallMissed": 503, "c-young/CallMissed": 503}
    template = forwarding_to(bus, receiver, stopping, {"api_key": "k"}, CrmEventTypes="CallMissed")
    forwarding = read_forwarding(template)
    assert forwarding is not None
    outcomes: list[Outcome] = []
    deliveries = Deliveries(CrmDelivery(forwarding, bus), outcomes.append, stopping, retry_delay=0.05)
    # The bus took this one almost MaximumEventAgeInSeconds ago: no retry fits in what is left.
    event = json.dumps({"detail-type": "CallMissed", "detail": missed("c-old")})
    deliveries.submit(event, received_at=time.time() - forwarding.max_age_seconds + 0.01)
    wait_for(lambda: outcomes)
    (outcome,) = outcomes
    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 1, "HTTP 503")
    assert outcome.exhausted == "MaximumEventAgeInSeconds"
    # A young one failing the same way is retried (until the CRM takes it).
    deliveries.submit(json.dumps({"detail-type": "CallMissed", "detail": missed("c-young")}), received_at=time.time())
    wait_for(lambda: sum(r.body["detail"]["id"] == "c-young/CallMissed" for r in receiver.attempts) >= 2)
    del receiver.failing["c-young/CallMissed"]
    wait_for(lambda: len(outcomes) == 2)
    assert outcomes[1].delivered
    assert outcomes[1].attempts >= 3


def test_make_run_crm_receiver_forwards_to_a_receiver_with_a_generated_key(
    bus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.stack import _local_crm

    monkeypatch.setenv("CRM_RECEIVER_PORT", str(free_port()))
    parameters, receiver = _local_crm(bus, "receiver", None)
    assert receiver is not None
    try:
        assert parameters["CrmEndpointUrl"].startswith(receiver.url)
        secret = client("secretsmanager", bus).get_secret_value(SecretId=parameters["CrmSecretName"])
        key = json.loads(secret["SecretString"])["api_key"]
        assert receiver.auth.api_key == key
        assert len(key) >= 16
        url = parameters["CrmEndpointUrl"]
        assert requests.post(url, json={}, headers={"X-Api-Key": "wrong"}, timeout=5).status_code == 401
        assert requests.post(url, json={}, headers={"X-Api-Key": key}, timeout=5).status_code == 200
    finally:
        receiver.stop()


def test_a_missing_secret_is_named() -> None:
    from local.crm_forwarding import ForwardingError, resolve_secrets

    reference = "{{resolve:secretsmanager:no-such-secret:SecretString:api_key}}"
    with pytest.raises(ForwardingError, match="no-such-secret"):
        resolve_secrets(reference, os.environ["AWS_ENDPOINT_URL"])


# End to end: the local stack as `make run CRM_RECEIVER=1` starts it, calls through the webhook.


@pytest.fixture(scope="module")
def crm_stack(moto_url: str) -> Iterator[tuple[LocalStack, CrmReceiver]]:
    crm = CrmReceiver(free_port(), ReceiverAuth(api_key="e2e-crm-key")).start()
    # Every type but LeadCreated is forwarded; the missed-call scenario makes a lead that must not arrive.
    selected = ",".join(t for t in EVENT_TYPES if t != "LeadCreated")
    try:
        with running_stack(
            moto_url,
            "e2e-key",
            crm_url=f"{crm.url}/pbxbridge",
            crm_api_key="e2e-crm-key",
            parameters={"CrmEventTypes": selected, "ScenarioMissedCallLeads": "true"},
        ) as stack:
            yield stack, crm
    finally:
        crm.stop()


def test_every_selected_call_event_reaches_the_crm_once_with_the_documented_body(
    crm_stack: tuple[LocalStack, CrmReceiver],
) -> None:
    stack, crm = crm_stack
    lambda_client = boto3.client("lambda", endpoint_url=stack.api.url)
    placed = lambda_client.invoke(
        FunctionName="CommandsFunction", Payload=json.dumps({"cmd": "makeCall", "user": "andy", "phone": "79101234567"})
    )
    answered = json.loads(placed["Payload"].read())["result"]["call_id"]
    missed_push = {
        "cmd": "history", "type": "in", "status": "missed", "phone": "79161112233", "user": "andy",
        "start": "20261128T100000Z", "duration": "0", "callid": "e2e-missed-1", "crm_token": stack.crm_token,
    }  # fmt: skip
    assert requests.post(stack.webhook_url, data=missed_push, timeout=10).status_code == 200
    # A phone lost its SIP registration (newer tenants' cmd=webhook push, JSON), said twice.
    sipregs = {"cmd": "webhook", "type": "sipregs_error", "id": "e2e-sip-1", "data": {"user": "andy"}}
    for _ in range(2):
        answer = requests.post(stack.webhook_url, json={**sipregs, "crm_token": stack.crm_token}, timeout=10)
        assert (answer.status_code, answer.json()) == (200, {})

    # Keyed by the stable `detail.id`: the calls' events, and the call-back the missed call opened.
    expected = {f"{answered}/{t}" for t in ("CallRinging", "CallAnswered", "CallEnded", "CallRecorded")} | {
        "e2e-missed-1/CallEnded",
        "e2e-missed-1/CallMissed",
        "+79161112233/e2e-missed-1/CallbackOpened",
        "id#e2e-sip-1/SipRegistrationFailed",
    }

    def arrived() -> set[str]:
        return {r.body["detail"]["id"] for r in list(crm.received)}

    wait_for(lambda: expected <= arrived(), timeout=40)
    time.sleep(1.5)  # anything delivered twice, or the lead, would have arrived by now
    assert arrived() == expected
    ids = [r.body["detail"]["id"] for r in crm.received]
    assert len(ids) == len(set(ids)) == len(expected), ids
    for received in crm.received:
        assert received.path == "/pbxbridge"
        assert received.headers["X-Api-Key"] == "e2e-crm-key"
        assert received.headers["Content-Type"].startswith("application/json")
        body = received.body
        # The whole EventBridge event, as the schema the template registers describes it.
        assert body["source"] == "pbxbridge"
        schema = registry_schema(stack.template, body["detail-type"])
        assert set(body) == set(schema["required"])
        jsonschema.Draft4Validator(schema).validate(body)
    assert "CRM at" in stack.summary()
