"""The webhook: one API Gateway HTTP API event in, the spec's answer out.

Order matters and is part of the contract: size, then the key (before anything else is done with
the push), then the command and its model, then storage. Bad input is always a 4xx with one of the
spec's two bodies; only a push we could not store is a 5xx, so the PBX (or reconciliation) retries.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from pbxbridge.aws import deadline
from pbxbridge.domain.contacts import ContactStore, lookup_contact
from pbxbridge.domain.directory import CachedDirectory, Directory
from pbxbridge.keys import KeysUnavailableError, clear_key_cache, fetch_keys_from_ssm, key_matches, ssm_client
from pbxbridge.protocol.webhook import (
    INVALID_PARAMETERS,
    INVALID_TOKEN,
    PUSH_MODELS,
    BodyTooLargeError,
    Command,
    ContactAnswer,
    ContactQuery,
    EventPush,
    HistoryPush,
    InvalidPushError,
    MalformedBodyError,
    RatingPush,
    WebhookPush,
    WebhookType,
    decode_body,
    read_command,
    read_push,
)
from pbxbridge.settings import webhook_settings
from pbxbridge.storage.contacts import DynamoContactStore
from pbxbridge.storage.directory import DynamoDirectoryStore
from pbxbridge.storage.dynamodb import StoreError, StoreRejectedError, StoreUnavailableError, dynamodb_client

if TYPE_CHECKING:
    # The write path (`history`, `event`, `rating`): imported when the first write arrives (see
    # WebhookDependencies.writes), so a cold `contact` does not pay for what it never uses.
    from pbxbridge.domain.calls import CallStore
    from pbxbridge.domain.scenarios import Scenarios
    from pbxbridge.domain.webhook_pushes import WebhookPushStore

# The same service name shares one logger with the handler, whichever module is imported first.
logger = Logger()
metrics = Metrics()

_JSON_HEADERS = {"Content-Type": "application/json"}
SERVICE_UNAVAILABLE: dict[str, str] = {"error": "Service unavailable"}


@dataclass(frozen=True)
class WritePath:
    """What the writes (`history`, `event`, `rating`) need beyond what `contact` does."""

    calls: CallStore
    scenarios: Scenarios


def build_webhook_push_store() -> WebhookPushStore:
    """The `cmd=webhook` pushes' store: built by the first such push, never for `contact`."""
    from pbxbridge.storage.webhook_pushes import DynamoWebhookPushStore

    table = webhook_settings().webhook_pushes_table
    if not table:
        # Our configuration, not the push: a 5xx, so that the PBX retries once it is fixed.
        raise StoreUnavailableError("WEBHOOK_PUSHES_TABLE is not set")
    return DynamoWebhookPushStore(dynamodb_client(), table)


@dataclass(frozen=True)
class WebhookDependencies:
    """What the webhook talks to; tests swap any of it."""

    contacts: ContactStore
    keys: Callable[[], Sequence[str]]
    phone_region: str
    # Builds the write path: called once, by the first write push before its first request (or at an
    # init nobody waits on), never for `contact`.
    write_path: Callable[[], WritePath]
    directory: Callable[[], Directory] = field(default=lambda: Directory())
    # Builds the `cmd=webhook` pushes' store, as write_path does the calls' (once, on the first one).
    webhook_push_store: Callable[[], WebhookPushStore] = build_webhook_push_store
    # (whole budget, one attempt) in seconds, for `contact` and for the writes.
    contact_budget: tuple[float, float] = (0.8, 0.4)
    write_budget: tuple[float, float] = (2.5, 1.0)

    @cached_property
    def writes(self) -> WritePath:
        return self.write_path()

    @cached_property
    def webhook_pushes(self) -> WebhookPushStore:
        return self.webhook_push_store()

    def attribute(self, user: str | None) -> tuple[str | None, str | None]:
        """A PBX user as (canonical login, CRM user), the default CRM user standing in for none."""
        directory = self.directory()
        login = directory.resolve(user)
        return login, directory.crm_user(login) or self.writes.scenarios.default_crm_user


def build_write_path() -> WritePath:
    """The calls store and the scenarios, from the process's settings and DynamoDB client."""
    from pbxbridge.storage.calls import DynamoCallStore

    settings = webhook_settings()
    return WritePath(
        calls=DynamoCallStore(dynamodb_client(), settings.calls_table, settings.call_events_table),
        scenarios=settings.scenarios,
    )


@lru_cache(maxsize=1)
def default_dependencies() -> WebhookDependencies:
    settings = webhook_settings()
    client = dynamodb_client()
    directory: Callable[[], Directory] = lambda: Directory(region=settings.phone_region)  # noqa: E731
    if settings.directory_table:
        store = DynamoDirectoryStore(client, settings.directory_table)

        def load_directory() -> Directory:
            # Its own small share of the push's budget: a refresh that hangs costs the push this much
            # at most, and the snapshot at hand (if any) is kept.
            with deadline(settings.directory_refresh_seconds):
                return store.snapshot(settings.phone_region, departments=False)

        directory = CachedDirectory(load_directory, settings.directory_cache_seconds)
    return WebhookDependencies(
        contacts=DynamoContactStore(client, settings.contacts_table),
        keys=lambda: fetch_keys_from_ssm(
            settings.crm_token_parameter,
            settings.crm_token_previous_parameter,
            settings.key_cache_seconds,
        ),
        phone_region=settings.phone_region,
        write_path=build_write_path,
        directory=directory,
        contact_budget=(settings.contact_budget_seconds, settings.contact_attempt_seconds),
        write_budget=(settings.write_budget_seconds, settings.write_attempt_seconds),
    )


def prepare() -> None:
    """Build once per container, at init, what every push needs: settings, the one boto3 Session and
    its clients, the `contact` model's validator and the region's phone metadata (phonenumbers loads
    it on first use). No request is made: no key is fetched and no connection opened, so a SnapStart
    snapshot taken after this holds neither. Registers the SnapStart restore hook when there is one."""
    deps = default_dependencies()
    ssm_client()
    # In a region where the sample is no number, the metadata is loaded all the same.
    with suppress(InvalidPushError):
        read_push({"cmd": "contact", "phone": "79101234567", "callid": "prepare"}, deps.phone_region)
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in ("snap-start", "provisioned-concurrency"):
        # Nobody waits on this init: build every push's validator, the write path and the `webhook`
        # pushes' store now rather than on the first push that needs them.
        for model in PUSH_MODELS:
            model.model_rebuild(force=True)
        deps.writes  # noqa: B018 (built and kept)
        with suppress(StoreUnavailableError):  # unconfigured: the first such push answers 503
            deps.webhook_pushes  # noqa: B018 (built and kept)
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:  # not a SnapStart runtime
        return
    register_after_restore(after_restore)


def after_restore() -> None:
    """A container restored from a SnapStart snapshot: every copy restored from one snapshot would
    otherwise share its random state, keys and connections. Re-seed, forget the keys and the directory
    read so far, and close pooled connections (the clients open new ones)."""
    random.seed()
    clear_key_cache()
    deps = default_dependencies()
    if isinstance(deps.directory, CachedDirectory):
        deps.directory.forget()
    for client in (dynamodb_client(), ssm_client()):
        client.close()


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": dict(_JSON_HEADERS),
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _command_label(fields: dict[str, Any]) -> str:
    """`cmd` for metrics, bounded to the known commands so a hostile value cannot add dimensions."""
    try:
        return read_command(fields).value
    except InvalidPushError:
        return "unknown"


def _content_type(event: Mapping[str, Any]) -> str | None:
    # HTTP API (payload 2.0) gives header names in lower case; a hand-made event may not.
    headers = event.get("headers") or {}
    value = headers.get("content-type")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    return value if isinstance(value, str) else None


def handle_push(event: Mapping[str, Any], deps: WebhookDependencies | None = None) -> dict[str, Any]:
    """Answer one PBX push (an API Gateway HTTP API event): check the key, validate, store, and say
    so in the spec's words."""
    arrived = time.monotonic()
    deps = deps or default_dependencies()
    try:
        body = event.get("body")
        fields = decode_body(
            body if isinstance(body, str) else None, bool(event.get("isBase64Encoded")), _content_type(event)
        )
    except BodyTooLargeError:
        return _rejected(413, INVALID_PARAMETERS, "unknown", "body too large")
    except MalformedBodyError as exc:
        return _rejected(400, INVALID_PARAMETERS, "unknown", str(exc))

    label = _command_label(fields)
    budget, attempt = deps.contact_budget if label == Command.CONTACT.value else deps.write_budget
    # One deadline for the whole push, counted from its arrival: the key, the directory, every request.
    with deadline(budget - (time.monotonic() - arrived), attempt):
        return _checked_push(fields, label, deps, arrived)


def _checked_push(fields: dict[str, Any], label: str, deps: WebhookDependencies, arrived: float) -> dict[str, Any]:
    try:
        keys = deps.keys()
    except KeysUnavailableError:
        logger.exception("CRM key unavailable", extra={"cmd": label})
        if label == Command.CONTACT.value:
            # `{}` lets the PBX ring its own dial plan, and tells a caller without the key nothing.
            metrics.add_metric(name="ContactErrors", unit=MetricUnit.Count, value=1)
            _failed(label)  # counted as a push that failed, but not answered 503
            return _answer(200, {})
        return _failed(label)
    if not key_matches(fields.get("crm_token"), keys):
        # The spec answers a body we cannot find a key in `Invalid token`, and so do we; the log says
        # when that is because the body could not be read at all (broken JSON, not a form of ours).
        unreadable = "cmd" not in fields and "crm_token" not in fields
        reason = "invalid token: the body could not be read (no cmd, no crm_token)" if unreadable else "invalid token"
        return _rejected(401, INVALID_TOKEN, label, reason)

    try:
        push = read_push(fields, deps.phone_region)
    except InvalidPushError as exc:
        return _rejected(400, INVALID_PARAMETERS, label, str(exc))
    if isinstance(push, WebhookPush):
        return _webhook_push(push, label, deps)

    logger.set_correlation_id(push.callid)
    try:
        # Our clock, not API Gateway's millisecond timeEpoch: the timeline's order needs microseconds.
        body = _store(push, label, deps, datetime.now(tz=UTC))
    except StoreRejectedError as exc:
        # DynamoDB refused what the push carries: the same push can never be stored, so retrying it
        # (and firing the 5xx alarm each time) helps nobody. Logged for us to widen the models.
        logger.warning("push refused by DynamoDB", extra={"cmd": label, "callid": push.callid, "reason": str(exc)})
        return _rejected(400, INVALID_PARAMETERS, label, "refused by the store", push.callid)
    except StoreUnavailableError:
        logger.exception("push not stored", extra={"cmd": label, "callid": push.callid})
        return _failed(label, push.callid)
    metrics.add_dimension(name="cmd", value=label)
    metrics.add_dimension(name="outcome", value="stored")
    metrics.add_metric(name="Pushes", unit=MetricUnit.Count, value=1)
    _name_the_call(push.callid)
    if isinstance(push, ContactQuery):
        # What the caller waits for (key, lookup, routing), the dashboard's p50 and p99.
        metrics.add_metric(
            name="ContactLatency", unit=MetricUnit.Milliseconds, value=(time.monotonic() - arrived) * 1000
        )
    return _answer(200, body)


def _store(push: Any, label: str, deps: WebhookDependencies, received_at: datetime) -> dict[str, Any]:
    duplicate = False
    if isinstance(push, ContactQuery):
        try:
            contact = lookup_contact(deps.contacts, push.phone.e164)
        except StoreError:
            # Nothing is lost by not knowing: `{}` lets the PBX ring its own dial plan now, where a
            # 5xx would leave the caller waiting on a retry.
            logger.exception("contact lookup failed, answered as unknown", extra={"cmd": label})
            metrics.add_metric(name="ContactErrors", unit=MetricUnit.Count, value=1)
            return {}
        metrics.add_metric(name="ContactHits" if contact else "ContactMisses", unit=MetricUnit.Count, value=1)
        # DEBUG, not INFO: a formatted JSON line costs ~50 us, 40% of what the handler adds to its
        # lookup while the caller waits. The metrics line (ContactHits/ContactMisses, with the callid)
        # already says what was answered; the parameter LogLevel=DEBUG adds this line.
        logger.debug("contact answered", extra={"cmd": label, "known": contact is not None})
        if contact is None:
            return {}
        return ContactAnswer(
            contact_name=contact.contact_name, responsible=_routable(contact.responsible, deps)
        ).to_wire()
    # The write path is built here on the first write, before its first request to DynamoDB.
    writes = deps.writes
    from pbxbridge.domain.calls import record_event, record_rating
    from pbxbridge.domain.scenarios import record_finished_call

    if isinstance(push, HistoryPush):
        duplicate, created = record_finished_call(
            writes.calls, deps.contacts, push, received_at, writes.scenarios, deps.attribute
        )
        if created is not None:
            metrics.add_metric(name="ContactsCreatedByScenario", unit=MetricUnit.Count, value=1)
            logger.info("contact created by scenario", extra={"scenario": created.created_by})
    elif isinstance(push, EventPush):
        duplicate = record_event(writes.calls, push, received_at, deps.attribute)
    elif isinstance(push, RatingPush):
        record_rating(writes.calls, push, received_at)
    if duplicate:
        metrics.add_metric(name="DuplicatePushes", unit=MetricUnit.Count, value=1)
    logger.info(
        "push stored",
        extra={"cmd": label, "duplicate": duplicate, "type": str(getattr(push, "type", "")) or None},
    )
    return {}


def _webhook_push(push: WebhookPush, label: str, deps: WebhookDependencies) -> dict[str, Any]:
    """A `cmd=webhook` push, whatever its `type`: kept once, counted, logged, answered `{}`. A `type` we
    do not know is never refused (the PBX would not send it again): it is kept raw and logged."""
    from pbxbridge.domain.webhook_pushes import record_webhook_push

    logger.set_correlation_id(push.id)
    try:
        _, duplicate = record_webhook_push(deps.webhook_pushes, push, datetime.now(tz=UTC))
    except StoreRejectedError as exc:
        logger.warning("push refused by DynamoDB", extra={"cmd": label, "reason": str(exc)})
        return _rejected(400, INVALID_PARAMETERS, label, "refused by the store")
    except StoreUnavailableError:
        logger.exception("push not stored", extra={"cmd": label})
        return _failed(label)
    metrics.add_dimension(name="cmd", value=label)
    metrics.add_dimension(name="outcome", value="stored")
    metrics.add_metric(name="Pushes", unit=MetricUnit.Count, value=1)
    known = push.known_type
    if duplicate:
        metrics.add_metric(name="DuplicatePushes", unit=MetricUnit.Count, value=1)
    elif known is WebhookType.SIPREGS_ERROR:
        # One per registration lost (a repeat of the same push is not counted again): the alarm's.
        metrics.add_metric(name="SipRegistrationErrors", unit=MetricUnit.Count, value=1)
    elif known is None:
        metrics.add_metric(name="UnknownWebhookPushes", unit=MetricUnit.Count, value=1)
    if known is None:
        # Names of the fields only: their values are kept in the table, not spread over the logs.
        logger.warning(
            "webhook push of an unknown type stored",
            extra={
                "cmd": label,
                "type": push.type,
                "id": push.id,
                "duplicate": duplicate,
                "fields": sorted([*push.fields, *(["data"] if push.data is not None else [])]),
            },
        )
    else:
        logger.info("push stored", extra={"cmd": label, "type": known.value, "id": push.id, "duplicate": duplicate})
    return _answer(200, {})


def _routable(responsible: str | None, deps: WebhookDependencies) -> str | None:
    """The PBX routes by its own logins: a responsible CRM user is answered as the PBX user mapped to it.
    Without a directory to ask, the CRM's value is answered as it is: the name still shows."""
    if not responsible:
        return None
    try:
        return deps.directory().pbx_login_for(responsible)
    except StoreError:
        logger.exception("directory unavailable, responsible answered as stored")
        return responsible


def _rejected(status: int, body: dict[str, str], label: str, reason: str, callid: str | None = None) -> dict[str, Any]:
    # `reason` names fields, never values: a value may be somebody's key sent in the wrong field.
    logger.warning("push rejected", extra={"cmd": label, "status": status, "reason": reason})
    metrics.add_dimension(name="cmd", value=label)
    metrics.add_dimension(name="outcome", value=str(status))
    metrics.add_metric(name="Pushes", unit=MetricUnit.Count, value=1)
    _name_the_call(callid)
    return _answer(status, body)


def _failed(label: str, callid: str | None = None) -> dict[str, Any]:
    metrics.add_dimension(name="cmd", value=label)
    metrics.add_dimension(name="outcome", value="error")
    metrics.add_metric(name="Pushes", unit=MetricUnit.Count, value=1)
    _name_the_call(callid)
    return _answer(503, SERVICE_UNAVAILABLE)


def _name_the_call(callid: str | None) -> None:
    """The push's metrics line (EMF, printed once per invocation) names its call when it is known:
    searchable in CloudWatch Logs beside the log lines, and no dimension (that would be a metric
    series per call). Only after a metric: Powertools clears metadata when it prints metrics, so
    metadata added alone would carry over into the next invocation's line."""
    if callid is not None:
        metrics.add_metadata(key="callid", value=callid)
