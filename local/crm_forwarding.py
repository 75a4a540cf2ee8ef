"""EventBridge API destinations, locally: the template's forwarding rule delivers the call events it
matches to the CRM's URL, with the connection's auth, rate limit, retry policy and dead-letter queue.

Everything is read from template.yaml (CrmForwardRule, the ApiDestination its target names, that
destination's Connection); the credentials are resolved from the embedded Secrets Manager exactly as
the template's `{{resolve:secretsmanager:...}}` references name them. The rule itself is created on
the embedded bus, so the embedded EventBridge matches the template's event pattern; its target here
is a queue standing in for EventBridge's own delivery, which this module drains into HTTP requests.

Each event is delivered on its own, as EventBridge does (`Deliveries`): a failing event is retried
with backoff while the others go out, until the rule target's RetryPolicy ends it and it goes to the
dead-letter queue. Locally the backoff is seconds rather than minutes, and retries still pending when
the stack stops are lost (EventBridge keeps them).
"""

from __future__ import annotations

import base64
import functools
import heapq
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
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
    max_retries: int  # RetryPolicy.MaximumRetryAttempts: retries after the first try
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
        max_retries=int(retry.get("MaximumRetryAttempts", 185)),
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
    """At most `rate` requests a second, spread evenly (what InvocationRateLimitPerSecond promises),
    across every delivery thread."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:  # take the next slot; sleep for it outside the lock
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


DELIVERED, RETRY, FINAL = "delivered", "retry", "final"


@dataclass
class CrmDelivery:
    """Sends one matched event to the CRM the way an API destination does: one attempt per call."""

    forwarding: Forwarding
    endpoint: str  # the embedded AWS
    _token: str | None = None

    def __post_init__(self) -> None:
        self._auth = resolve_secrets(self.forwarding.auth, self.endpoint)
        self._limit = _RateLimit(self.forwarding.rate_per_second)
        self._local = threading.local()  # a requests.Session per delivery thread
        self._token_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _auth_headers(self, refresh: bool = False) -> dict[str, str]:
        auth = self._auth
        if self.forwarding.auth_type == "API_KEY":
            params = auth["ApiKeyAuthParameters"]
            return {params["ApiKeyName"]: params["ApiKeyValue"]}
        if self.forwarding.auth_type == "BASIC":
            params = auth["BasicAuthParameters"]
            pair = f"{params['Username']}:{params['Password']}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        with self._token_lock:
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

    def attempt(self, body: str, refresh_token: bool = False) -> tuple[str, str]:
        """One request: (DELIVERED | RETRY | FINAL, the error). RETRY is what API destinations retry:
        no answer, 5xx, 401/407 (with the OAuth token fetched again), 409, 429."""
        self._limit.wait()
        try:
            headers = {**HEADERS, **self._auth_headers(refresh_token)}
            answer = self.session.request(
                self.forwarding.method,
                self.forwarding.endpoint,
                data=body.encode(),
                headers=headers,
                timeout=REQUEST_TIMEOUT,
            )
        except (requests.RequestException, ForwardingError) as exc:
            return RETRY, f"{type(exc).__name__}: {exc}"
        if 200 <= answer.status_code < 300:
            return DELIVERED, ""
        retried = answer.status_code in RETRIED_STATUSES or answer.status_code >= 500
        return (RETRY if retried else FINAL), f"HTTP {answer.status_code}"


@dataclass(order=True)
class _Pending:
    due: float  # time.monotonic() of the next attempt
    sequence: int
    body: str = field(compare=False)
    expires: float = field(compare=False)  # time.monotonic() past which the event is too old to retry
    attempts: int = field(default=0, compare=False)
    error: str = field(default="", compare=False)


@dataclass(frozen=True)
class Outcome:
    """How one event's delivery ended."""

    body: str
    delivered: bool
    attempts: int  # requests made (the first try and the retries)
    error: str = ""  # the last one's, when not delivered
    # Which RetryPolicy limit ended the retries (None: delivered, or an error no retry can fix).
    exhausted: str | None = None


class Deliveries:
    """Each event on its own schedule, as EventBridge delivers to a target: an attempt, and after a
    failure a retry can fix, another after an exponential backoff with jitter, until the rule target's
    RetryPolicy ends it (MaximumRetryAttempts retries, or the event older than MaximumEventAgeInSeconds).
    A CRM that keeps failing one event delays only that event: the others go out meanwhile."""

    def __init__(
        self,
        delivery: CrmDelivery,
        finished: Callable[[Outcome], None],
        stopping: threading.Event,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
        workers: int = 8,
    ) -> None:
        # Locally the backoff starts at `retry_delay` seconds and stops growing at `max_retry_delay`
        # (EventBridge's runs to minutes: the policy's count of retries is what is kept).
        self.delivery = delivery
        self.finished = finished
        self.stopping = stopping
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._heap: list[_Pending] = []
        self._sequence = itertools.count()
        self._ready = threading.Condition()
        for number in range(workers):
            threading.Thread(target=self._work, daemon=True, name=f"crm-delivery-{number}").start()
        threading.Thread(target=self._wake_on_stop, daemon=True, name="crm-delivery-stop").start()

    def submit(self, body: str, received_at: float | None = None) -> None:
        """Deliver `body`; `received_at` (epoch seconds) is when the bus took the event, which the
        event's age is counted from (now, if not given)."""
        age = max(0.0, time.time() - received_at) if received_at is not None else 0.0
        now = time.monotonic()
        expires = now - age + self.delivery.forwarding.max_age_seconds
        self._push(_Pending(due=now, sequence=next(self._sequence), body=body, expires=expires))

    def pending(self) -> int:
        with self._ready:
            return len(self._heap)

    def _push(self, pending: _Pending) -> None:
        with self._ready:
            heapq.heappush(self._heap, pending)
            self._ready.notify()

    def _wake_on_stop(self) -> None:
        self.stopping.wait()
        with self._ready:
            self._ready.notify_all()

    def _next(self) -> _Pending | None:
        with self._ready:
            while not self.stopping.is_set():
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                    self._ready.wait(wait)
                else:
                    self._ready.wait()
        return None

    def _work(self) -> None:
        while (pending := self._next()) is not None:
            try:
                self._attempt(pending)
            except Exception:
                log.exception("call event delivery failed unexpectedly")

    def _attempt(self, pending: _Pending) -> None:
        refresh = pending.error in ("HTTP 401", "HTTP 407")  # a refused OAuth token: fetch another
        result, pending.error = self.delivery.attempt(pending.body, refresh_token=refresh)
        pending.attempts += 1
        if result == DELIVERED:
            self.finished(Outcome(pending.body, True, pending.attempts))
            return
        if result == FINAL:
            self.finished(Outcome(pending.body, False, pending.attempts, pending.error))
            return
        retries = pending.attempts - 1
        backoff = min(self.retry_delay * 2**retries, self.max_retry_delay)
        delay = backoff / 2 + random.uniform(0, backoff / 2)
        exhausted = None
        if retries >= self.delivery.forwarding.max_retries:
            exhausted = "MaximumRetryAttempts"
        elif time.monotonic() + delay > pending.expires:
            exhausted = "MaximumEventAgeInSeconds"
        if exhausted:
            self.finished(Outcome(pending.body, False, pending.attempts, pending.error, exhausted))
            return
        pending.due = time.monotonic() + delay
        self._push(pending)


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
    """Provision the forwarding and deliver, on threads, until `stopping` is set."""
    forwarding = provision(template, endpoint)
    if forwarding is None:
        return None
    sqs = client("sqs", endpoint)
    deliveries = Deliveries(
        CrmDelivery(forwarding, endpoint), functools.partial(_finished, forwarding, sqs), stopping, retry_delay
    )
    queue_url = sqs.get_queue_url(QueueName=DELIVERY_QUEUE)["QueueUrl"]

    def drain() -> None:
        while not stopping.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["SentTimestamp"]
                )
            except Exception:
                log.exception("delivery queue unreadable")
                stopping.wait(1)
                continue
            for message in messages.get("Messages", []):
                # The event is EventBridge's to deliver from here (locally: the delivery threads').
                sent = message.get("Attributes", {}).get("SentTimestamp")
                body = json.dumps(eventbridge_event(json.loads(message["Body"])), ensure_ascii=False)
                deliveries.submit(body, int(sent) / 1000 if sent else None)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    threading.Thread(target=drain, daemon=True, name="crm-forwarding").start()
    return forwarding


ENVELOPE = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")


def eventbridge_event(matched: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge delivers it: its envelope fields in order, nothing of the embedded
    bus's own (it adds `ingestion-time`, and may leave `account` out)."""
    event = {"version": "0", "account": LOCAL_ACCOUNT, "region": LOCAL_REGION, "resources": [], **matched}
    return {key: event[key] for key in ENVELOPE}


def _finished(forwarding: Forwarding, sqs: Any, outcome: Outcome) -> None:
    event = json.loads(outcome.body)
    kind, event_id = event.get("detail-type"), event.get("detail", {}).get("id")
    if outcome.delivered:
        log.info("call event forwarded to the CRM: %s %s", kind, event_id)
        return
    why = f"{outcome.error}, {outcome.attempts} attempt(s)"
    if outcome.exhausted:
        why += f", {outcome.exhausted} reached"
    target = "to the dead-letter queue" if forwarding.dead_letter_queue_url else "dropped (no dead-letter queue)"
    log.warning("call event NOT forwarded (%s): %s %s, %s", why, kind, event_id, target)
    if forwarding.dead_letter_queue_url:
        # As EventBridge dead-letters: the event as the body, why in the message attributes.
        attributes = {
            "RULE_ARN": forwarding.rule_arn,
            "TARGET_ARN": forwarding.destination_arn,
            "ERROR_MESSAGE": outcome.error or "undeliverable",
            "RETRY_ATTEMPTS": str(outcome.attempts - 1),
        }
        if outcome.exhausted:
            attributes["EXHAUSTED_RETRY_CONDITION"] = outcome.exhausted
        sqs.send_message(
            QueueUrl=forwarding.dead_letter_queue_url,
            MessageBody=outcome.body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )


LOCAL_SECRET_NAME = "pbxbridge/crm-forwarding"  # noqa: S105 - a name, not a secret


def crm_url_parameters(crm_url: str) -> dict[str, str]:
    """The template parameters that forward to `crm_url` with an API key in LOCAL_SECRET_NAME."""
    return {"CrmEndpointUrl": crm_url, "CrmAuthType": "API_KEY", "CrmSecretName": LOCAL_SECRET_NAME}


def local_crm_parameters(endpoint: str, crm_url: str, api_key: str) -> dict[str, str]:
    """Template parameters that forward to `crm_url` with an API key, the key stored as a deployment
    stores it (a Secrets Manager secret the template references)."""
    secret = json.dumps({"api_key": api_key})
    client("secretsmanager", endpoint).create_secret(Name=LOCAL_SECRET_NAME, SecretString=secret)
    return crm_url_parameters(crm_url)
