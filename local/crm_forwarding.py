"""EventBridge API destinations, locally: the template's forwarding rule delivers the call events it
matches to the CRM's URL, with the connection's auth, rate limit, retry policy and dead-letter queue.

Everything is read from template.yaml (CrmForwardRule, the ApiDestination its target names, that
destination's Connection); the credentials are resolved from the embedded Secrets Manager exactly as
the template's `{{resolve:secretsmanager:...}}` references name them. The rule itself is created on
the embedded bus, so the embedded EventBridge matches the template's event pattern; its target here
is a queue standing in for EventBridge's own delivery, which this module drains into HTTP requests.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from local.aws import client
from local.template import LOCAL_ACCOUNT, LOCAL_REGION, Template

log = logging.getLogger("local.crm")

FORWARD_RULE = "CrmForwardRule"
DELIVERY_QUEUE = "CrmForwardRule-deliveries"  # local only: EventBridge's delivery, made visible
# What API destinations do (EventBridge user guide, "API destinations"): a 5 s timeout per request,
# these statuses retried (with the OAuth token refreshed on 401/407), every other failure final.
REQUEST_TIMEOUT = 5.0
RETRIED_STATUSES = frozenset({401, 407, 409, 429})
HEADERS = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Amazon/EventBridge/ApiDestinations"}
_SECRET_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:([^:}]+):SecretString:([^:}]+)(?::[^}]*)?\}\}")


class ForwardingError(RuntimeError):
    pass


@dataclass(frozen=True)
class Forwarding:
    """The forwarding rule, its destination and connection, as the template defines them."""

    rule_name: str
    bus: str
    pattern: dict[str, Any]
    endpoint: str
    method: str
    rate_per_second: float
    max_attempts: int  # the first try and the retries
    max_age_seconds: float
    auth_type: str
    auth: dict[str, Any]
    dead_letter_queue_url: str | None
    rule_arn: str = ""
    destination_arn: str = ""


def read_forwarding(template: Template) -> Forwarding | None:
    """The template's forwarding, or None when it is off (CrmEndpointUrl empty)."""
    rules = template.resources("AWS::Events::Rule")
    if FORWARD_RULE not in rules:
        return None
    raw_rule = rules[FORWARD_RULE]["Properties"]
    (raw_target,) = raw_rule["Targets"]
    destination_id = raw_target["Arn"]["Fn::GetAtt"][0]
    raw_destination = template.body["Resources"][destination_id]["Properties"]
    connection_id = raw_destination["ConnectionArn"]["Fn::GetAtt"][0]
    connection = template.resolve(template.body["Resources"][connection_id]["Properties"])
    rule, target, destination = (template.resolve(x) for x in (raw_rule, raw_target, raw_destination))
    retry = target.get("RetryPolicy", {})
    dead_letter = raw_target.get("DeadLetterConfig", {}).get("Arn", {}).get("Fn::GetAtt", [None])[0]
    auth_type = connection["AuthorizationType"]
    return Forwarding(
        rule_name=template.physical_name(FORWARD_RULE),
        bus=rule["EventBusName"],
        pattern=rule["EventPattern"],
        endpoint=destination["InvocationEndpoint"],
        method=destination.get("HttpMethod", "POST"),
        rate_per_second=float(destination.get("InvocationRateLimitPerSecond", 300)),
        max_attempts=1 + int(retry.get("MaximumRetryAttempts", 185)),
        max_age_seconds=float(retry.get("MaximumEventAgeInSeconds", 86400)),
        auth_type=auth_type,
        auth=connection["AuthParameters"],
        dead_letter_queue_url=template.resolve({"Ref": dead_letter}) if dead_letter else None,
        rule_arn=f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/{rule['EventBusName']}/{FORWARD_RULE}",
        destination_arn=f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:api-destination/{destination_id}",
    )


def resolve_secrets(value: Any, endpoint: str) -> Any:
    """`{{resolve:secretsmanager:NAME:SecretString:KEY}}`, read from the embedded Secrets Manager as
    CloudFormation reads it at deploy time."""
    secrets = client("secretsmanager", endpoint)

    def one(match: re.Match[str]) -> str:
        try:
            document = json.loads(secrets.get_secret_value(SecretId=match[1])["SecretString"])
        except secrets.exceptions.ResourceNotFoundException:
            raise ForwardingError(f"secret {match[1]!r} not found (CrmSecretName)") from None
        if match[2] not in document:
            raise ForwardingError(f"secret {match[1]!r} has no key {match[2]!r}")
        return str(document[match[2]])

    if isinstance(value, dict):
        return {k: resolve_secrets(v, endpoint) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, endpoint) for v in value]
    if isinstance(value, str):
        return _SECRET_REFERENCE.sub(one, value)
    return value


class _RateLimit:
    """At most `rate` requests a second, spread evenly (what InvocationRateLimitPerSecond promises)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


@dataclass
class CrmDelivery:
    """Sends one matched event to the CRM the way an API destination does."""

    forwarding: Forwarding
    endpoint: str  # the embedded AWS
    session: requests.Session = field(default_factory=requests.Session)
    retry_delay: float = 0.2  # locally seconds, not EventBridge's minutes
    _token: str | None = None

    def __post_init__(self) -> None:
        self._auth = resolve_secrets(self.forwarding.auth, self.endpoint)
        self._limit = _RateLimit(self.forwarding.rate_per_second)

    def _auth_headers(self, refresh: bool = False) -> dict[str, str]:
        auth = self._auth
        if self.forwarding.auth_type == "API_KEY":
            params = auth["ApiKeyAuthParameters"]
            return {params["ApiKeyName"]: params["ApiKeyValue"]}
        if self.forwarding.auth_type == "BASIC":
            params = auth["BasicAuthParameters"]
            pair = f"{params['Username']}:{params['Password']}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if self._token is None or refresh:
            self._token = self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self) -> str:
        """OAuth client credentials: the client's id and secret (HTTP Basic, RFC 6749 2.3.1) and the
        connection's body parameters, to its authorization endpoint."""
        params = self._auth["OAuthParameters"]
        client_params = params["ClientParameters"]
        body = {p["Key"]: p["Value"] for p in params.get("OAuthHttpParameters", {}).get("BodyParameters", [])}
        answer = self.session.request(
            params.get("HttpMethod", "POST"),
            params["AuthorizationEndpoint"],
            data=body,
            auth=(client_params["ClientID"], client_params["ClientSecret"]),
            timeout=REQUEST_TIMEOUT,
        )
        if answer.status_code != 200:
            raise ForwardingError(f"OAuth token endpoint answered {answer.status_code}")
        return str(answer.json()["access_token"])

    def deliver(self, body: str) -> tuple[bool, str]:
        """(delivered, the last error). Retries what API destinations retry, within the policy."""
        started = time.monotonic()
        error, refresh = "", False
        for attempt in range(self.forwarding.max_attempts):
            if attempt:
                delay = min(self.retry_delay * 2 ** (attempt - 1), 5.0)
                if time.monotonic() + delay - started > self.forwarding.max_age_seconds:
                    break
                time.sleep(delay)
            self._limit.wait()
            try:
                headers = {**HEADERS, **self._auth_headers(refresh)}
                answer = self.session.request(
                    self.forwarding.method,
                    self.forwarding.endpoint,
                    data=body.encode(),
                    headers=headers,
                    timeout=REQUEST_TIMEOUT,
                )
            except (requests.RequestException, ForwardingError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= answer.status_code < 300:
                return True, ""
            error = f"HTTP {answer.status_code}"
            refresh = answer.status_code in (401, 407)
            if answer.status_code not in RETRIED_STATUSES and answer.status_code < 500:
                break
        return False, error


def provision(template: Template, endpoint: str) -> Forwarding | None:
    """The template's rule, with its event pattern, on the embedded bus; its target is the local
    delivery queue (the destination and connection are applied by `CrmDelivery`). None when off."""
    forwarding = read_forwarding(template)
    if forwarding is None:
        return None
    events, sqs = client("events", endpoint), client("sqs", endpoint)
    sqs.create_queue(QueueName=DELIVERY_QUEUE)
    queue_arn = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{DELIVERY_QUEUE}"
    events.put_rule(Name=forwarding.rule_name, EventBusName=forwarding.bus, EventPattern=json.dumps(forwarding.pattern))
    target = {"Id": "Crm", "Arn": queue_arn}
    events.put_targets(Rule=forwarding.rule_name, EventBusName=forwarding.bus, Targets=[target])
    return forwarding


def run_forwarding(
    template: Template, endpoint: str, stopping: threading.Event, retry_delay: float = 0.2
) -> Forwarding | None:
    """Provision the forwarding and deliver, on a thread, until `stopping` is set."""
    forwarding = provision(template, endpoint)
    if forwarding is None:
        return None
    delivery = CrmDelivery(forwarding, endpoint, retry_delay=retry_delay)
    sqs = client("sqs", endpoint)
    queue_url = sqs.get_queue_url(QueueName=DELIVERY_QUEUE)["QueueUrl"]

    def drain() -> None:
        while not stopping.is_set():
            try:
                messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception:
                log.exception("delivery queue unreadable")
                stopping.wait(1)
                continue
            for message in messages.get("Messages", []):
                _deliver_one(delivery, sqs, message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    threading.Thread(target=drain, daemon=True, name="crm-forwarding").start()
    return forwarding


ENVELOPE = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")


def eventbridge_event(matched: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge delivers it: its envelope fields in order, nothing of the embedded
    bus's own (it adds `ingestion-time`, and may leave `account` out)."""
    event = {"version": "0", "account": LOCAL_ACCOUNT, "region": LOCAL_REGION, "resources": [], **matched}
    return {key: event[key] for key in ENVELOPE}


def _deliver_one(delivery: CrmDelivery, sqs: Any, queued: str) -> None:
    forwarding = delivery.forwarding
    event = eventbridge_event(json.loads(queued))
    body = json.dumps(event, ensure_ascii=False)
    delivered, error = delivery.deliver(body)
    if delivered:
        log.info("call event forwarded to the CRM: %s %s", event.get("detail-type"), event.get("detail", {}).get("id"))
        return
    log.warning("call event NOT forwarded (%s): %s, to the dead-letter queue", error, event.get("detail-type"))
    if forwarding.dead_letter_queue_url:
        # As EventBridge dead-letters: the event as the body, why in the message attributes.
        attributes = {
            "RULE_ARN": forwarding.rule_arn,
            "TARGET_ARN": forwarding.destination_arn,
            "ERROR_MESSAGE": error or "undeliverable",
        }
        sqs.send_message(
            QueueUrl=forwarding.dead_letter_queue_url,
            MessageBody=body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )


LOCAL_SECRET_NAME = "pbxbridge/crm-forwarding"  # noqa: S105 - a name, not a secret


def local_crm_parameters(endpoint: str, crm_url: str, api_key: str) -> dict[str, str]:
    """Template parameters that forward to `crm_url` with an API key, the key stored as a deployment
    stores it (a Secrets Manager secret the template references)."""
    secret = json.dumps({"api_key": api_key})
    client("secretsmanager", endpoint).create_secret(Name=LOCAL_SECRET_NAME, SecretString=secret)
    return {"CrmEndpointUrl": crm_url, "CrmAuthType": "API_KEY", "CrmSecretName": LOCAL_SECRET_NAME}
