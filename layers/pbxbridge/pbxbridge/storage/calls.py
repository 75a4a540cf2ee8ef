"""The calls and their timelines: the Calls and CallEvents tables.

- Calls: `callid` -> one item with everything known about the call. GSIs `by_client`
  (`client`, `started_at`) and `by_user` (`pbx_user`, `started_at`) list calls newest first.
- CallEvents: (`callid`, `event_key`) -> a timeline entry, deduplicated by its key; LSI
  `by_arrival` (`callid`, `arrival`) reads the timeline in arrival order.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.domain.calls import CallEvent, CallHistory, CallRating, Milestone, live_state
from pbxbridge.storage.dynamodb import (
    HISTORY_MARKS,
    Update,
    is_condition_failure,
    newest_first,
    plain_item,
    put_if_absent,
    query_all,
    scan_page,
    unavailable_on_aws_errors,
    utc_iso,
)

BY_CLIENT_INDEX = "by_client"
BY_USER_INDEX = "by_user"
BY_ARRIVAL_INDEX = "by_arrival"


class DynamoCallStore:
    """Calls and their timelines. Every write is one conditional or commutative request."""

    def __init__(self, client: Any, calls_table: str, events_table: str) -> None:
        self._client = client
        self._calls_table = calls_table
        self._events_table = events_table

    def _update_call(self, callid: str, update: Update, **extra: Any) -> dict[str, Any]:
        return self._client.update_item(  # type: ignore[no-any-return]
            TableName=self._calls_table,
            Key={"callid": {"S": callid}},
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
            **extra,
        )

    @unavailable_on_aws_errors
    def save_history(self, history: CallHistory) -> bool:
        update = (
            Update()
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
            if not is_condition_failure(exc):
                raise
            # An earlier attempt of this very request was applied; it was a duplicate if it was not the first.
            pushes = exc.response.get("Item", {}).get("history_pushes", {}).get("N", "1")
            return int(pushes) > 1
        return "history_pushes" in response.get("Attributes", {})

    @unavailable_on_aws_errors
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
        return not put_if_absent(self._client, self._events_table, item, "event_key")

    @unavailable_on_aws_errors
    def advance_live_state(self, event: CallEvent) -> None:
        received = utc_iso(event.received_at, precise=True)
        update = (
            Update()
            .set_if_absent("client", event.client)
            .set_if_absent("client_raw", event.client_raw)
            .set_if_absent("started_at", utc_iso(event.received_at))
            .set_if_absent("direction", event.direction)
            .set_if_absent("pbx_user", event.answered_by)
            .set_if_absent("crm_user", event.crm_user)
            .set("last_event_at", received)
            .add_to_set("legs_rang", event.rang_leg)
            # The leg whose INCOMING started the ringing, whole (user, login, extension together): the
            # same update sets rang_at, so CallRinging names exactly the leg it rang for.
            .set_if_absent("first_rung", event.rung)
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

    @unavailable_on_aws_errors
    def save_rating(self, rating: CallRating) -> None:
        update = (
            Update()
            .set("rating", rating.rating)
            .set("rating_at", utc_iso(rating.received_at, precise=True))
            .set_if_absent("client", rating.client)
            .set_if_absent("client_raw", rating.client_raw)
        )
        self._update_call(rating.callid, update)

    # Recordings

    @unavailable_on_aws_errors
    def recording_archived(self, callid: str, key: str, size: int) -> None:
        now = utc_iso(datetime.now(tz=UTC), precise=True)
        update = Update().set("recording_key", key).set("recording_size", size).set("recorded_at", now)
        self._update_call(callid, update)

    @unavailable_on_aws_errors
    def recording_rejected(self, callid: str, reason: str) -> None:
        update = Update().set("recording_rejected", reason[:500])
        self._update_call(callid, update)

    # Reads (for the commands and the tests): each is one request.

    @unavailable_on_aws_errors
    def get_call(self, callid: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._calls_table, Key={"callid": {"S": callid}}, ConsistentRead=True
        )
        if "Item" not in response:
            return None
        return _with_live_state(plain_item(response["Item"]))

    @unavailable_on_aws_errors
    def timeline(self, callid: str) -> list[dict[str, Any]]:
        return query_all(
            self._client,
            TableName=self._events_table,
            IndexName=BY_ARRIVAL_INDEX,
            KeyConditionExpression="callid = :c",
            ExpressionAttributeValues={":c": {"S": callid}},
            ConsistentRead=True,
        )

    @unavailable_on_aws_errors
    def calls_by_client(self, phone_e164: str, limit: int = 50, cursor: str | None = None) -> CallPage:
        return self._newest_first(BY_CLIENT_INDEX, "client", phone_e164, limit, cursor)

    @unavailable_on_aws_errors
    def calls_by_user(self, login: str, limit: int = 50, cursor: str | None = None) -> CallPage:
        return self._newest_first(BY_USER_INDEX, "pbx_user", login, limit, cursor)

    @unavailable_on_aws_errors
    def calls_started_between(
        self, start: str, end: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a Scan (`limit` calls read): the calls with `start` <= `started_at` < `end`
        (`utc_iso` strings); rebuildReports only, it reads the whole table."""
        condition = "started_at >= :start AND started_at < :end"
        return scan_page(self._client, self._calls_table, condition, {":start": start, ":end": end}, limit, cursor)

    def _newest_first(self, index: str, attribute: str, value: str, limit: int, cursor: str | None) -> CallPage:
        items, next_cursor = newest_first(self._client, self._calls_table, index, attribute, value, limit, cursor)
        return CallPage(calls=[_with_live_state(item) for item in items], cursor=next_cursor)


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
