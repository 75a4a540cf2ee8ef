"""DynamoDB on the low-level client: the process's clients, and what every store shares (errors, the
UpdateItem builder, conditional puts, paged queries, cursors, items as plain Python).

One module per aggregate holds its store: calls.py (calls and timelines), contacts.py, directory.py,
watermark.py (reconciliation's ledger), callbacks.py, connections.py, rate_limits.py. The tables are
defined in template.yaml, the single source of truth.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from pbxbridge.aws import bounded_client, session

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

# The marks of the history requests applied to a call (see save_history); internal, never answered.
HISTORY_MARKS = "history_marks"

serialize = TypeSerializer().serialize
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


def unavailable_on_aws_errors(method: Callable[P, R]) -> Callable[P, R]:
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


def put_if_absent(client: Any, table: str, item: Mapping[str, Any], key: str) -> bool:
    """One conditional PutItem: True when the item was new, False when one with its key was there."""
    try:
        client.put_item(
            TableName=table,
            Item={name: serialize(value) for name, value in item.items()},
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": key},
        )
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def batch_get(client: Any, table: str, keys: list[dict[str, Any]], **read: Any) -> list[dict[str, Any]]:
    """One BatchGetItem (at most 100 keys; `read`: a projection), the keys DynamoDB leaves unprocessed
    asked again with backoff: the wire items found, in no particular order."""
    request: dict[str, Any] = {table: {"Keys": keys, **read}}
    found: list[dict[str, Any]] = []
    for attempt in range(8):
        response = client.batch_get_item(RequestItems=request)
        found.extend(response.get("Responses", {}).get(table, []))
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return found
        time.sleep(min(0.05 * 2**attempt, 1.0))
    raise StoreUnavailableError("BatchGetItem kept leaving keys unprocessed")


def batch_write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    """One BatchWriteItem of wire items (at most 25), unconditional puts; the items DynamoDB leaves
    unprocessed are sent again with backoff."""
    request: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items]}
    for attempt in range(8):
        request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        if not request:
            return
        time.sleep(min(0.05 * 2**attempt, 1.0))
    raise StoreUnavailableError("BatchWriteItem kept leaving items unprocessed")


def newest_first(
    client: Any, table: str, index: str, attribute: str, value: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an index's items whose `attribute` is `value`, newest first, as plain items; and the
    cursor of the next page (None on the last). A cursor from another listing is InvalidCursorError."""
    kwargs: dict[str, Any] = {
        "TableName": table,
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
    page = client.query(**kwargs)
    last = page.get("LastEvaluatedKey")
    return [plain_item(item) for item in page.get("Items", [])], _encode_cursor(last) if last else None


def scan_page(
    client: Any, table: str, condition: str, values: Mapping[str, Any], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a whole-table Scan (`limit` items read) filtered by `condition` (on plain `values`),
    as plain items; and the cursor of the next page (None on the last)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": condition,
        "ExpressionAttributeValues": wire_item(values),
        "Limit": limit,
        # Consistent: a rebuild must not put back an item's share from before its last stream record.
        "ConsistentRead": True,
    }
    if cursor:
        kwargs["ExclusiveStartKey"] = _decode_cursor(cursor)
    page = client.scan(**kwargs)
    last = page.get("LastEvaluatedKey")
    return [plain_item(item) for item in page.get("Items", [])], _encode_cursor(last) if last else None


def wire_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item in DynamoDB's wire format; attributes that are None are left out."""
    return {name: serialize(value) for name, value in item.items() if value is not None}


def query_all(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of a Query, as plain items."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.query(**kwargs)
        items.extend(plain_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def is_condition_failure(exc: ClientError) -> bool:
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


def parse_utc_iso(text: str) -> datetime:
    """What `utc_iso` wrote, as an aware datetime (Python 3.11+ reads the `Z`)."""
    return datetime.fromisoformat(text)


# A stream's sequence numbers are decimal strings of up to 40 digits.
SEQUENCE_WIDTH = 40


def stream_position(sequence_number: str) -> str:
    """A stream record's sequence number as a string that sorts as the number does: what the reports'
    and the board's items keep, to apply a record only when it is newer than the one applied last."""
    return sequence_number.strip().zfill(SEQUENCE_WIDTH)


def utc_iso(moment: datetime, *, precise: bool = False) -> str:
    """ISO 8601 in UTC with `Z`, one width per kind (years padded to 4), so strings sort as times."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    text = f"{date}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    return f"{text}.{moment.microsecond:06d}Z" if precise else f"{text}Z"


class Update:
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
        self.values[ref] = serialize(value)
        return name, ref

    def set(self, attribute: str, value: Any) -> Update:
        if value is not None:
            name, ref = self._refs(attribute, value)
            self._sets.append(f"{name} = {ref}")
        return self

    def set_if_absent(self, attribute: str, value: Any) -> Update:
        if value is not None:
            name, ref = self._refs(attribute, value)
            self._sets.append(f"{name} = if_not_exists({name}, {ref})")
        return self

    def increment(self, attribute: str) -> Update:
        name, ref = self._refs(attribute, 1)
        self._adds.append(f"{name} {ref}")
        return self

    def add_to_set(self, attribute: str, member: str | None) -> Update:
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
