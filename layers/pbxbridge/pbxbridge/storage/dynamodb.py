"""DynamoDB stores for calls, their timelines and contacts, on the low-level client.

Tables (defined in template.yaml, the single source of truth):

- Calls: `callid` -> one item with everything known about the call. GSIs `by_client`
  (`client`, `started_at`) and `by_user` (`pbx_user`, `started_at`) list calls newest first.
- CallEvents: (`callid`, `event_key`) -> a timeline entry, deduplicated by its key; LSI
  `by_arrival` (`callid`, `arrival`) reads the timeline in arrival order.
- Contacts: `phone` (E.164) -> `contact_name`, `responsible`, `crm_id`.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from pydantic import ValidationError

from pbxbridge.aws import bounded_client, session
from pbxbridge.domain.calls import CallEvent, CallHistory, CallRating, Milestone, live_state
from pbxbridge.domain.contacts import Contact
from pbxbridge.domain.directory import Department, Directory, PbxUser

if TYPE_CHECKING:
    # Reconciliation's types, imported where its store builds them: the webhook's cold start does not
    # pay for reconciliation (or the PBX client's models it imports).
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    from pbxbridge.domain.reconciliation import CallState, HistoryCall

log = logging.getLogger(__name__)

BY_CLIENT_INDEX = "by_client"
BY_USER_INDEX = "by_user"
BY_ARRIVAL_INDEX = "by_arrival"
# The marks of the history requests applied to a call (see save_history); internal, never answered.
HISTORY_MARKS = "history_marks"

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize

P = ParamSpec("P")
R = TypeVar("R")


class StoreError(RuntimeError):
    """DynamoDB did not take or give the data."""


class StoreUnavailableError(StoreError):
    """DynamoDB could not be reached, or failed, or we are misconfigured: a retry can fix it, so the
    caller answers 5xx for the PBX (or the queue) to retry."""


class StoreRejectedError(StoreError):
    """DynamoDB refused the request for what it carries (a value it cannot store, a key over its
    limits): sending it again can never succeed, so the caller answers 4xx and logs it."""


# Errors DynamoDB answers because of the request's content. Anything else it refuses (a missing table,
# denied access, expired credentials) is our own configuration: 5xx, and an alarm, until it is fixed.
_REFUSED_FOR_CONTENT = frozenset(
    {"ValidationException", "SerializationException", "ItemCollectionSizeLimitExceededException"}
)


def store_error(exc: Exception) -> StoreError:
    """The StoreError an exception from botocore means: rejected (bad content) or unavailable."""
    if isinstance(exc, ParamValidationError | UnicodeError) or (
        isinstance(exc, ClientError) and _error_code(exc) in _REFUSED_FOR_CONTENT
    ):
        return StoreRejectedError(type(exc).__name__ + ": " + _error_code(exc))
    return StoreUnavailableError(type(exc).__name__ + ": " + _error_code(exc))


def _unavailable_on_aws_errors(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        # UnicodeError: text botocore cannot encode (a lone surrogate that got past the models).
        except (ClientError, BotoCoreError, UnicodeError) as exc:
            raise store_error(exc) from exc

    return wrapper


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "unknown"))
    if isinstance(exc, ParamValidationError):
        return "invalid parameters"
    if isinstance(exc, UnicodeError):
        return "text that cannot be encoded"
    return "connection"


def _put_if_absent(client: Any, table: str, item: Mapping[str, Any], key: str) -> bool:
    """One conditional PutItem: True when the item was new, False when one with its key was there."""
    try:
        client.put_item(
            TableName=table,
            Item={name: _serialize(value) for name, value in item.items()},
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": key},
        )
    except ClientError as exc:
        if _is_condition_failure(exc):
            return False
        raise
    return True


def _query_all(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of a Query, as plain items."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.query(**kwargs)
        items.extend(plain_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _is_condition_failure(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


@functools.lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    """One client per process, from the process's one Session. Its requests are bounded by the
    current deadline (`pbxbridge.aws.deadline`): `contact` answers while the phone rings (the PBX
    allows about a second), and a failed write is better answered 5xx soon, for the PBX to retry.
    Outside a deadline, two attempts of at most 0.25 s to connect and 1 s to answer."""
    return bounded_client("dynamodb", connect_timeout=0.25, read_timeout=1.0, attempts=2)


@functools.lru_cache(maxsize=1)
def batch_dynamodb_client() -> Any:
    """For work off the caller's path (reconciliation): patient timeouts, more retries."""
    config = Config(connect_timeout=2, read_timeout=15, retries={"max_attempts": 6, "mode": "standard"})
    return session().client("dynamodb", config=config)


def utc_iso(moment: datetime, *, precise: bool = False) -> str:
    """ISO 8601 in UTC with `Z`, one width per kind (years padded to 4), so strings sort as times."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    text = f"{date}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    return f"{text}.{moment.microsecond:06d}Z" if precise else f"{text}Z"


class _Update:
    """Builds one UpdateItem expression: SET, SET if absent, ADD to a set."""

    def __init__(self) -> None:
        self._sets: list[str] = []
        self._adds: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def _refs(self, attribute: str, value: Any) -> tuple[str, str]:
        index = len(self.values)
        name, ref = f"#a{index}", f":v{index}"
        self.names[name] = attribute
        self.values[ref] = _serialize(value)
        return name, ref

    def set(self, attribute: str, value: Any) -> _Update:
        if value is not None:
            name, ref = self._refs(attribute, value)
            self._sets.append(f"{name} = {ref}")
        return self

    def set_if_absent(self, attribute: str, value: Any) -> _Update:
        if value is not None:
            name, ref = self._refs(attribute, value)
            self._sets.append(f"{name} = if_not_exists({name}, {ref})")
        return self

    def increment(self, attribute: str) -> _Update:
        name, ref = self._refs(attribute, 1)
        self._adds.append(f"{name} {ref}")
        return self

    def add_to_set(self, attribute: str, member: str | None) -> _Update:
        if member:
            name, ref = self._refs(attribute, {member})
            self._adds.append(f"{name} {ref}")
        return self

    def expression(self) -> str:
        parts = []
        if self._sets:
            parts.append("SET " + ", ".join(self._sets))
        if self._adds:
            parts.append("ADD " + ", ".join(self._adds))
        return " ".join(parts)


def plain_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python: numbers as int, sets as sorted lists, internal marks left out."""
    out: dict[str, Any] = {}
    for key, wire in item.items():
        if key == HISTORY_MARKS:
            continue
        value = _deserialize(wire)
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        elif isinstance(value, set):
            value = sorted(value)
        out[key] = value
    return out


def stream_change(record: DynamoDBRecord) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None] | None:
    """One change-stream record: its table's name (from the stream's ARN), its old and new images as plain
    Python (None where absent); None for a record with no change in it."""
    stream = record.dynamodb
    if stream is None:
        return None
    old, new = (stream.raw_event.get(image) for image in ("OldImage", "NewImage"))
    table = (record.event_source_arn or "").split(":table/", 1)[-1].split("/stream/", 1)[0]
    return table, plain_item(old) if old else None, plain_item(new) if new else None


class DynamoCallStore:
    """Calls and their timelines. Every write is one conditional or commutative request."""

    def __init__(self, client: Any, calls_table: str, events_table: str) -> None:
        self._client = client
        self._calls_table = calls_table
        self._events_table = events_table

    def _update_call(self, callid: str, update: _Update, **extra: Any) -> dict[str, Any]:
        return self._client.update_item(  # type: ignore[no-any-return]
            TableName=self._calls_table,
            Key={"callid": {"S": callid}},
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
            **extra,
        )

    @_unavailable_on_aws_errors
    def save_history(self, history: CallHistory) -> bool:
        update = (
            _Update()
            .set("direction", history.direction)
            .set("status", history.status)
            .set("outcome", history.outcome.value)
            .set("client", history.client)
            .set("client_raw", history.client_raw)
            .set("user", history.user)
            .set("pbx_user", history.pbx_user)
            .set("crm_user", history.crm_user)
            .set("started_at", utc_iso(history.started_at))
            .set("duration", history.duration)
            .set("history_updated_at", utc_iso(history.received_at, precise=True))
            .set_if_absent("history_at", utc_iso(history.received_at, precise=True))
            # The counter's old value comes back only if a history push was stored before: a duplicate.
            .increment("history_pushes")
        )
        for name, value in history.optional.items():
            update.set(name, value)
        # This request's own mark, kept on the call. When an attempt's answer is lost (a timeout after
        # DynamoDB applied it), the same request is sent again, and its mark makes the condition fail
        # instead of counting the push twice. A duplicate push from the PBX is a new request: counted.
        mark = secrets.token_hex(8)
        update.add_to_set(HISTORY_MARKS, mark)
        update.names["#marks"] = HISTORY_MARKS
        update.values[":mark"] = {"S": mark}
        try:
            response = self._update_call(
                history.callid,
                update,
                ConditionExpression="attribute_not_exists(#marks) OR NOT contains(#marks, :mark)",
                ReturnValues="UPDATED_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            # An earlier attempt of this very request was applied; it was a duplicate if it was not the first.
            pushes = exc.response.get("Item", {}).get("history_pushes", {}).get("N", "1")
            return int(pushes) > 1
        return "history_pushes" in response.get("Attributes", {})

    @_unavailable_on_aws_errors
    def add_timeline_event(self, event: CallEvent) -> bool:
        received = utc_iso(event.received_at, precise=True)
        item: dict[str, Any] = {
            "callid": event.callid,
            "event_key": event.timeline_key,
            # Arrival order: received time, then a random tiebreak for pushes in the same microsecond.
            "arrival": received + "#" + secrets.token_hex(4),
            "type": event.type.value,
            "user": event.user,
            "phone": event.client,
            "phone_raw": event.client_raw,
            "received_at": received,
            **({"direction": event.direction} if event.direction else {}),
            **({"second_callid": event.transferred_to} if event.transferred_to else {}),
            **event.optional,
        }
        return not _put_if_absent(self._client, self._events_table, item, "event_key")

    @_unavailable_on_aws_errors
    def advance_live_state(self, event: CallEvent) -> None:
        received = utc_iso(event.received_at, precise=True)
        update = (
            _Update()
            .set_if_absent("client", event.client)
            .set_if_absent("client_raw", event.client_raw)
            .set_if_absent("started_at", utc_iso(event.received_at))
            .set_if_absent("direction", event.direction)
            .set_if_absent("pbx_user", event.answered_by)
            .set_if_absent("crm_user", event.crm_user)
            .set("last_event_at", received)
            .add_to_set("legs_rang", event.rang_leg)
            .add_to_set("legs_cancelled", event.cancelled_leg)
            .add_to_set("transferred_to", event.transferred_to)
        )
        if event.milestone is not None:
            update.set_if_absent(event.milestone.value, received)
        if event.answered_by and event.milestone is Milestone.ACCEPTED:
            update.set_if_absent("accepted_by", event.answered_by)
        for name in ("diversion", "diversion_raw", "group_name"):
            update.set_if_absent(name, event.optional.get(name))
        self._update_call(event.callid, update)

    @_unavailable_on_aws_errors
    def save_rating(self, rating: CallRating) -> None:
        update = (
            _Update()
            .set("rating", rating.rating)
            .set("rating_at", utc_iso(rating.received_at, precise=True))
            .set_if_absent("client", rating.client)
            .set_if_absent("client_raw", rating.client_raw)
        )
        self._update_call(rating.callid, update)

    # Recordings

    @_unavailable_on_aws_errors
    def recording_archived(self, callid: str, key: str, size: int) -> None:
        now = utc_iso(datetime.now(tz=UTC), precise=True)
        update = _Update().set("recording_key", key).set("recording_size", size).set("recorded_at", now)
        self._update_call(callid, update)

    @_unavailable_on_aws_errors
    def recording_rejected(self, callid: str, reason: str) -> None:
        update = _Update().set("recording_rejected", reason[:500])
        self._update_call(callid, update)

    # Reads (for the commands and the tests): each is one request.

    @_unavailable_on_aws_errors
    def get_call(self, callid: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._calls_table, Key={"callid": {"S": callid}}, ConsistentRead=True
        )
        if "Item" not in response:
            return None
        return _with_live_state(plain_item(response["Item"]))

    @_unavailable_on_aws_errors
    def timeline(self, callid: str) -> list[dict[str, Any]]:
        return _query_all(
            self._client,
            TableName=self._events_table,
            IndexName=BY_ARRIVAL_INDEX,
            KeyConditionExpression="callid = :c",
            ExpressionAttributeValues={":c": {"S": callid}},
            ConsistentRead=True,
        )

    @_unavailable_on_aws_errors
    def calls_by_client(self, phone_e164: str, limit: int = 50, cursor: str | None = None) -> CallPage:
        return self._newest_first(BY_CLIENT_INDEX, "client", phone_e164, limit, cursor)

    @_unavailable_on_aws_errors
    def calls_by_user(self, login: str, limit: int = 50, cursor: str | None = None) -> CallPage:
        return self._newest_first(BY_USER_INDEX, "pbx_user", login, limit, cursor)

    def _newest_first(self, index: str, attribute: str, value: str, limit: int, cursor: str | None) -> CallPage:
        kwargs: dict[str, Any] = {
            "TableName": self._calls_table,
            "IndexName": index,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": attribute},
            "ExpressionAttributeValues": {":v": {"S": value}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            start = _decode_cursor(cursor)
            if start.get(attribute) != {"S": value}:
                raise InvalidCursorError("the cursor belongs to another listing")
            kwargs["ExclusiveStartKey"] = start
        page = self._client.query(**kwargs)
        last = page.get("LastEvaluatedKey")
        return CallPage(
            calls=[_with_live_state(plain_item(item)) for item in page.get("Items", [])],
            cursor=_encode_cursor(last) if last else None,
        )


def _with_live_state(call: dict[str, Any]) -> dict[str, Any]:
    """The call as read, with its derived `live_state` (see domain.calls.live_state)."""
    state = live_state({m.value for m in Milestone if m.value in call}, finished="outcome" in call)
    if state is not None:
        call["live_state"] = state.value
    return call


@dataclass(frozen=True)
class CallPage:
    calls: list[dict[str, Any]]
    cursor: str | None


class InvalidCursorError(ValueError):
    """A `cursor` we did not hand out."""


def _encode_cursor(key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise InvalidCursorError("the cursor is not one we handed out") from None
    valid = isinstance(key, dict) and all(
        isinstance(v, dict) and len(v) == 1 and set(v) <= {"S", "N"} and all(isinstance(x, str) for x in v.values())
        for v in key.values()
    )
    if not valid:
        raise InvalidCursorError("the cursor is not one we handed out")
    return dict(key)


class DynamoContactStore:
    def __init__(self, client: Any, contacts_table: str) -> None:
        self._client = client
        self._table = contacts_table

    @_unavailable_on_aws_errors
    def get_contact(self, phone_e164: str) -> Contact | None:
        response = self._client.get_item(
            TableName=self._table,
            Key={"phone": {"S": phone_e164}},
            ProjectionExpression="#p, #n, #r, #c, #l",
            ExpressionAttributeNames={
                "#p": "phone",
                "#n": "contact_name",
                "#r": "responsible",
                "#c": "crm_id",
                "#l": "lead",
            },
        )
        item = response.get("Item")
        if not item:
            return None
        try:
            return Contact.model_validate(plain_item(item))
        except ValidationError as exc:
            # A row the CRM wrote badly must not cost the ringing call its answer: treat it as unknown.
            fields = sorted({str(error["loc"][0]) for error in exc.errors()})
            log.warning("unreadable contact item, answered as unknown: %s", ", ".join(fields))
            return None

    @_unavailable_on_aws_errors
    def get_contacts(self, phones: Iterable[str]) -> dict[str, Contact]:
        """Several contacts by number in one BatchGetItem per 100 (the widget's call-back list), not a
        GetItem each; numbers nobody knows (or whose row is unreadable) are left out."""
        wanted = list(dict.fromkeys(phones))
        found: dict[str, Contact] = {}
        names = {"#p": "phone", "#n": "contact_name", "#r": "responsible", "#c": "crm_id", "#l": "lead"}
        for start in range(0, len(wanted), 100):
            keys = [{"phone": {"S": phone}} for phone in wanted[start : start + 100]]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": "#p, #n, #r, #c, #l",
                    "ExpressionAttributeNames": names,
                }
            }
            for attempt in range(8):
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    try:
                        contact = Contact.model_validate(plain_item(item))
                    except ValidationError:
                        log.warning("unreadable contact item, answered as unknown")
                        continue
                    found[contact.phone] = contact
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise StoreUnavailableError("BatchGetItem kept leaving keys unprocessed")
        return found

    @_unavailable_on_aws_errors
    def create_contact_if_absent(self, contact: Contact) -> bool:
        return _put_if_absent(self._client, self._table, contact.model_dump(exclude_none=True), "phone")

    @_unavailable_on_aws_errors
    def delete_contact(self, phone_e164: str) -> bool:
        """Forget a contact; True when there was one."""
        response = self._client.delete_item(
            TableName=self._table, Key={"phone": {"S": phone_e164}}, ReturnValues="ALL_OLD"
        )
        return "Attributes" in response

    @_unavailable_on_aws_errors
    def put_contacts(self, contacts: Iterable[Contact]) -> int:
        count = 0
        from boto3.dynamodb.table import BatchWriter

        # boto3's BatchWriter chunks by 25 and resends unprocessed items; it takes wire-format items.
        with BatchWriter(self._table, self._client, overwrite_by_pkeys=["phone"]) as batch:
            for contact in contacts:
                item = contact.model_dump(exclude_none=True)
                batch.put_item(Item={key: _serialize(value) for key, value in item.items()})
                count += 1
        return count


class DynamoLedger:
    """Reconciliation's data access: calls in batches, and the watermark in the sync state table."""

    WATERMARK = "history_watermark"

    def __init__(self, client: Any, calls_table: str, state_table: str) -> None:
        self._client = client
        self._calls_table = calls_table
        self._state_table = state_table

    @_unavailable_on_aws_errors
    def reconciliation_state(self, callids: list[str]) -> dict[str, CallState]:
        from pbxbridge.domain.reconciliation import CallState

        keys: list[dict[str, Any]] = [{"callid": {"S": callid}} for callid in dict.fromkeys(callids)]
        found: dict[str, CallState] = {}
        request: dict[str, Any] = {
            self._calls_table: {
                "Keys": keys,
                "ProjectionExpression": "callid, reconciled_at, history_at",
            }
        }
        for attempt in range(8):
            response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self._calls_table, []):
                found[item["callid"]["S"]] = CallState(
                    exists=True, reconciled="reconciled_at" in item, had_history="history_at" in item
                )
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(min(0.05 * 2**attempt, 1.0))
        raise StoreUnavailableError("BatchGetItem kept leaving keys unprocessed")

    @_unavailable_on_aws_errors
    def create_calls(self, calls: list[HistoryCall], reconciled_at: datetime) -> int:
        """Write calls that were missing, each only if it is still missing (a conditional put, several
        at once): a push that stored one since it was looked up wins, and that call is merged
        instead. Returns how many were created.

        Not BatchWriteItem, which cannot be conditional; not TransactWriteItems, which costs twice
        the writes and cancels a whole group for one call that appeared."""

        def create(call: HistoryCall) -> bool:
            item = _history_call_item(call, reconciled_at)
            if _put_if_absent(self._client, self._calls_table, item, "callid"):
                return True
            self.merge_call(call, reconciled_at, had_history=False)
            return False

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(create, calls))

    @_unavailable_on_aws_errors
    def write_old_calls(self, calls: list[HistoryCall], reconciled_at: datetime) -> None:
        """Write missing calls in batches of 25, unconditionally: only for calls so old that no push
        can still arrive for them (a backfill), where a conditional write per call buys nothing."""
        from boto3.dynamodb.table import BatchWriter

        with BatchWriter(self._calls_table, self._client) as batch:
            for call in calls:
                batch.put_item(Item={k: _serialize(v) for k, v in _history_call_item(call, reconciled_at).items()})

    @_unavailable_on_aws_errors
    def merge_call(self, call: HistoryCall, reconciled_at: datetime, *, had_history: bool = True) -> bool:
        item = _history_call_item(call, reconciled_at)
        update = _Update()
        # The CSV's own fields; everything else only where the webhook left it empty. Without a
        # history push, the call's start is only an event's arrival: the PBX's own start wins.
        own = ("wait", "via", "csv_rating") if had_history else ("wait", "via", "csv_rating", "started_at")
        for name in own:
            update.set(name, item.get(name))
        for name, value in item.items():
            if name not in own and name != "callid":
                update.set_if_absent(name, value)
        response = self._client.update_item(
            TableName=self._calls_table,
            Key={"callid": {"S": call.callid}},
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
            ReturnValues="ALL_OLD",
        )
        return "Attributes" not in response

    @_unavailable_on_aws_errors
    def watermark(self) -> datetime | None:
        response = self._client.get_item(
            TableName=self._state_table, Key={"name": {"S": self.WATERMARK}}, ConsistentRead=True
        )
        value = response.get("Item", {}).get("watermark", {}).get("S")
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    @_unavailable_on_aws_errors
    def advance_watermark(self, to: datetime) -> bool:
        try:
            self._client.update_item(
                TableName=self._state_table,
                Key={"name": {"S": self.WATERMARK}},
                UpdateExpression="SET #w = :w, #u = :u",
                ConditionExpression="attribute_not_exists(#w) OR #w < :w",
                ExpressionAttributeNames={"#w": "watermark", "#u": "updated_at"},
                ExpressionAttributeValues={
                    ":w": {"S": utc_iso(to, precise=True)},
                    ":u": {"S": utc_iso(datetime.now(tz=UTC), precise=True)},
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False  # another run got further: never move back
            raise
        return True


def _history_call_item(call: HistoryCall, reconciled_at: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        "callid": call.callid,
        "direction": call.direction,
        "status": call.status,
        "outcome": call.outcome.value,
        "client": call.client,
        "client_raw": call.client_raw,
        "user": call.user,
        "pbx_user": call.pbx_user,
        "crm_user": call.crm_user,
        "started_at": utc_iso(call.started_at),
        "duration": call.duration,
        "wait": call.wait,
        "via": call.via,
        "link": call.link,
        "csv_rating": call.rating,
        "reconciled_at": utc_iso(reconciled_at, precise=True),
    }
    return {name: value for name, value in item.items() if value is not None}


class DynamoDirectoryStore:
    """The directory table: (`kind` = user | department, `id`) -> the PBX's view, and a user's CRM user."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def _query(self, kind: str) -> list[dict[str, Any]]:
        return _query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": "kind"},
            ExpressionAttributeValues={":k": {"S": kind}},
        )

    @_unavailable_on_aws_errors
    def snapshot(self, region: str, departments: bool = True) -> Directory:
        users = tuple(
            PbxUser(
                login=item["id"],
                real_name=item.get("real_name"),
                ext=item.get("ext"),
                telnum=item.get("telnum"),
                email=item.get("email"),
                groups=tuple(item.get("groups", [])),
                crm_user=item.get("crm_user"),
                active=bool(item.get("active", True)),
            )
            for item in self._query("user")
        )
        found = tuple(
            Department(id=item["id"], real_name=item.get("real_name"), ext=item.get("ext"))
            for item in (self._query("department") if departments else [])
        )
        return Directory(users=users, departments=found, region=region)

    @_unavailable_on_aws_errors
    def save_user(self, user: PbxUser) -> None:
        update = _Update()
        for name in ("real_name", "ext", "telnum", "email"):
            update.set(name, getattr(user, name))
        update.set("groups", list(user.groups))
        update.set("active", True)
        update.set("synced_at", utc_iso(datetime.now(tz=UTC), precise=True))
        self._client.update_item(
            TableName=self._table,
            Key={"kind": {"S": "user"}, "id": {"S": user.login}},
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
        )

    @_unavailable_on_aws_errors
    def save_department(self, department: Department) -> None:
        item = {"kind": "department", "id": department.id, "real_name": department.real_name, "ext": department.ext}
        self._client.put_item(TableName=self._table, Item={k: _serialize(v) for k, v in item.items() if v is not None})

    @_unavailable_on_aws_errors
    def deactivate_users(self, logins: Iterable[str]) -> None:
        for login in logins:
            self._client.update_item(
                TableName=self._table,
                Key={"kind": {"S": "user"}, "id": {"S": login}},
                UpdateExpression="SET #a = :f",
                ExpressionAttributeNames={"#a": "active"},
                ExpressionAttributeValues={":f": {"BOOL": False}},
            )

    @_unavailable_on_aws_errors
    def map_user(self, login: str, crm_user: str | None) -> bool:
        expression = "SET #c = :c" if crm_user else "REMOVE #c"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"kind": {"S": "user"}, "id": {"S": login}},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(#i)",
            "ExpressionAttributeNames": {"#c": "crm_user", "#i": "id"},
        }
        if crm_user:
            kwargs["ExpressionAttributeValues"] = {":c": {"S": crm_user}}
        try:
            self._client.update_item(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True


def users_directory(client: Any, table: str | None, region: str) -> Directory:
    """The directory's users as the resolvers read them; an empty directory where the stack keeps none."""
    if not table:
        return Directory(region=region)
    return DynamoDirectoryStore(client, table).snapshot(region, departments=False)
