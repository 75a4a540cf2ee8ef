"""Call events (and the PBX's own, SipRegistrationFailed) for other services, derived from the tables'
change streams (never a second write in the webhook, so a push is never half-published).

Each event is decided by comparing a record's old and new image, so it is published once per
transition whatever order the pushes came in; a redelivered stream record publishes the same event
again with the same `id` (delivery is at least once: consumers deduplicate on `id`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pbxbridge.domain.callbacks import MISSED_OUTCOMES, Callback, CallbackStatus, CloseReason, parse_time
from pbxbridge.domain.directory import pbx_login
from pbxbridge.domain.webhook_pushes import WebhookPushRecord
from pbxbridge.protocol.webhook import WebhookType

SOURCE = "pbxbridge"
_VERSION = (
    "the version of this event's meaning: fields are added without a new version (consumers ignore the "
    "ones they do not know); a change of what the event means adds one"
)


class _Versioned(BaseModel):
    """Every event's detail says its schema version (absent from events published before versions
    were kept: read a missing one as 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=1, description=_VERSION)


class _Detail(_Versioned):
    id: str = Field(description="stable: the same transition always has the same id")
    callid: str
    occurred_at: datetime = Field(description="when the call reached this state (UTC)")
    direction: Literal["in", "out"] | None = None
    client: str | None = Field(default=None, description="the client's number, E.164")
    pbx_user: str | None = None
    crm_user: str | None = None


class CallRinging(_Detail):
    """A call started ringing: the CRM's popup card. Once per call: for an inbound call, the `rung_*`
    fields name the leg whose ringing started it (a group call's other legs are not announced)."""

    contact_name: str | None = None
    responsible: str | None = None
    rung_user: str | None = Field(
        default=None, description="inbound: the PBX user whose phone rang, as the PBX named it (`andy@tenant`)"
    )
    rung_login: str | None = Field(default=None, description="inbound: that user's PBX login, through the directory")
    rung_ext: str | None = Field(default=None, description="inbound: that user's extension, as the push gave it")


class CallAnswered(_Detail):
    answered_by: str | None = None


class CallEnded(_Detail):
    """The call is over and its outcome decided (by the PBX's history)."""

    outcome: str
    duration: int | None = None


class CallMissed(_Detail):
    """An inbound call that ended with nobody answering: the history's `missed`, `Cancel` (the caller
    hung up first) or `NotFound` (it reached nobody who could take it); decided by the history (or
    reconciliation), never by CANCELLED legs alone. Version 2: version 1 was `missed` alone."""

    schema_version: int = Field(default=2, description=_VERSION)
    outcome: Literal["missed", "cancelled", "not_found"] | None = Field(
        default=None, description="why nobody answered (the call's outcome); absent in version 1"
    )


class CallRecorded(_Detail):
    recording_key: str
    recording_size: int | None = None


class LeadCreated(_Versioned):
    id: str
    phone: str
    contact_name: str
    responsible: str | None = None
    created_by: str | None = None
    occurred_at: datetime


class _CallbackDetail(_Versioned):
    id: str = Field(description="stable: `<callback_id>/<event type>`")
    callback_id: str = Field(description="`<phone>/<callid of the missed call that opened it>`")
    phone: str = Field(description="the client's number, E.164")
    owner: str = Field(description="a PBX login, a group (`g_<id>`), or `unassigned`")
    occurred_at: datetime
    missed_count: int
    missed_callids: list[str] = Field(description="the missed calls, oldest first (the last 50)")
    first_missed_at: datetime


class CallbackOpened(_CallbackDetail):
    """A missed inbound call from a number nobody had to call back yet; `occurred_at` is its start."""


class CallbackClosed(_CallbackDetail):
    """An answered call with the number (either direction) after its missed calls (`reason`
    `answered`; `occurred_at` is when the closing call started), or the PBX's verdict that a missed
    call was called back (`reason` `pbx_called_back`; `occurred_at` is when we learnt it)."""

    closed_by: str | None = Field(default=None, description="the PBX login that answered or made the call")
    closed_callid: str = Field(
        description="the closing call; `pbx_called_back`: the missed call the PBX says was called back"
    )
    seconds_to_call_back: int = Field(
        description="from the first missed call to the closing call (`pbx_called_back`: to when we learnt it, "
        "an upper bound)"
    )
    attempts: int = Field(description="outbound calls to the number before it that were not answered")
    reason: Literal["answered", "pbx_called_back"] = Field(
        default="answered",
        description="`answered` (a call we know of), or `pbx_called_back` (the PBX's `missed_status` 1 or 2)",
    )
    pbx_missed_status: int | None = Field(
        default=None, description="`pbx_called_back`: 1 the client called back, 2 we called back"
    )


class CallbackOverdue(_CallbackDetail):
    """A call-back still open when its SLA ran out: `occurred_at` is that moment, the SLA's business
    time (the tenant's working calendar; wall time without one) after the first missed call. Once
    per call-back; a later `CallbackClosed` still comes when it is returned."""

    sla_minutes: int = Field(description="the SLA it ran out of (the template's CallbackSlaMinutes)")
    business_time: bool = Field(description="true: counted in the working calendar's open hours; false: wall time")
    attempts: int = Field(description="outbound calls to the number so far that were not answered")


def callback_overdue(callback: Callback, since: datetime, sla_minutes: int, business_time: bool) -> CallbackOverdue:
    """The one escalation of a call-back whose SLA ran out at `since`."""
    return CallbackOverdue(
        id=f"{callback.id}/CallbackOverdue",
        callback_id=callback.id,
        phone=callback.phone,
        owner=callback.owner,
        occurred_at=since,
        missed_count=callback.missed_count,
        missed_callids=list(callback.missed_callids),
        first_missed_at=callback.first_missed_at,
        sla_minutes=sla_minutes,
        business_time=business_time,
        attempts=callback.attempts,
    )


class SipRegistrationFailed(_Versioned):
    """A desk phone or softphone lost its SIP registration (the PBX's `cmd=webhook` push of type
    `sipregs_error`): an alert for an administrator, not about a call."""

    id: str = Field(description="stable: `<push_id>/SipRegistrationFailed`")
    push_id: str = Field(description="the push's key: `id#<the PBX's id>`, or `sha256#<digest>` when it had no id")
    pbx_id: str | None = Field(default=None, description="the `id` the PBX sent with the push")
    occurred_at: datetime = Field(description="when the push arrived (UTC); the PBX sends no time of its own")
    data: Any = Field(
        default=None, description="the push's `data` as the PBX sent it (an object; text when a form carried it)"
    )


EVENT_TYPES: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        CallRinging,
        CallAnswered,
        CallEnded,
        CallMissed,
        CallRecorded,
        LeadCreated,
        CallbackOpened,
        CallbackClosed,
        CallbackOverdue,
        SipRegistrationFailed,
    )
}


def _first(item: Mapping[str, Any], *names: str) -> datetime | None:
    times = [t for t in (parse_time(item.get(name)) for name in names) if t is not None]
    return min(times) if times else None


def call_events(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    contact: Callable[[str], tuple[str | None, str | None]] = lambda phone: (None, None),
) -> Iterator[BaseModel]:
    """The events one change of a call item means. `contact` gives (name, responsible) for a number."""
    old = old or {}
    callid = str(new["callid"])
    common: dict[str, Any] = {
        "callid": callid,
        "direction": new.get("direction") if new.get("direction") in ("in", "out") else None,
        "client": new.get("client"),
        "pbx_user": new.get("pbx_user"),
        "crm_user": new.get("crm_user"),
    }
    rang = _first(new, "rang_at", "dialled_at")
    if rang and not _first(old, "rang_at", "dialled_at"):
        name, responsible = contact(str(new["client"])) if new.get("client") else (None, None)
        yield CallRinging(
            id=f"{callid}/CallRinging",
            occurred_at=rang,
            contact_name=name,
            responsible=responsible,
            **_rung(new),
            **common,
        )
    answered = parse_time(new.get("accepted_at"))
    if answered and not parse_time(old.get("accepted_at")):
        yield CallAnswered(
            id=f"{callid}/CallAnswered", occurred_at=answered, answered_by=new.get("accepted_by"), **common
        )
    # Ended once the outcome is known (history, or reconciliation when the push was lost), so the
    # event always says how it ended; it happened when the last leg hung up, if an event said so.
    ended = _first(new, "completed_at") or _first(new, "history_at", "reconciled_at")
    if new.get("outcome") and not old.get("outcome") and ended:
        yield CallEnded(
            id=f"{callid}/CallEnded",
            occurred_at=ended,
            outcome=str(new["outcome"]),
            duration=new.get("duration"),
            **common,
        )
    if _missed(new) and not _missed(old):
        when = _first(new, "history_at", "reconciled_at") or datetime.now(tz=UTC)
        yield CallMissed(id=f"{callid}/CallMissed", occurred_at=when, outcome=new["outcome"], **common)
    if new.get("recording_key") and not old.get("recording_key"):
        when = parse_time(new.get("recorded_at")) or datetime.now(tz=UTC)
        yield CallRecorded(
            id=f"{callid}/CallRecorded",
            occurred_at=when,
            recording_key=new["recording_key"],
            recording_size=new.get("recording_size"),
            **common,
        )


def _missed(call: Mapping[str, Any]) -> bool:
    """Nobody answered an inbound call (an outbound call's `missed`, which the PBX does not send, too)."""
    outcome = call.get("outcome")
    return outcome == "missed" or (call.get("direction") != "out" and outcome in MISSED_OUTCOMES)


def _rung(call: Mapping[str, Any]) -> dict[str, Any]:
    """Who the first INCOMING rang: as stored with it, or (a call stored before that was kept) the one
    leg that rang."""
    first = call.get("first_rung")
    if not isinstance(first, Mapping):
        legs = call.get("legs_rang") or []
        if call.get("direction") == "out" or len(legs) != 1:
            return {}
        first = {"user": str(legs[0]), "login": pbx_login(str(legs[0]))}
    return {"rung_user": first.get("user"), "rung_login": first.get("login"), "rung_ext": first.get("ext")}


def contact_events(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Iterator[BaseModel]:
    if old is None and new is not None and new.get("lead") is True:
        yield LeadCreated(
            id=f"{new['phone']}/LeadCreated",
            phone=new["phone"],
            contact_name=new["contact_name"],
            responsible=new.get("responsible"),
            created_by=new.get("created_by"),
            occurred_at=datetime.now(tz=UTC),
        )


def callback_events(old: Callback | None, new: Callback | None) -> Iterator[BaseModel]:
    """The events one change of a call-back means: opened when it first appears, closed when it is
    first closed. A call-back that appears already closed (its missed call arrived after the call
    that returned it) is both, so consumers see the same events whatever order the calls came in."""
    if new is None:
        return
    common: dict[str, Any] = {
        "callback_id": new.id,
        "phone": new.phone,
        "owner": new.owner,
        "missed_count": new.missed_count,
        "missed_callids": list(new.missed_callids),
        "first_missed_at": new.first_missed_at,
    }
    if old is None:
        yield CallbackOpened(id=f"{new.id}/CallbackOpened", occurred_at=new.first_missed_at, **common)
    closing = new.status is CallbackStatus.CLOSED and (old is None or old.status is not CallbackStatus.CLOSED)
    if closing and new.closed_callid and new.closed_at and new.seconds_to_call_back is not None:
        yield CallbackClosed(
            id=f"{new.id}/CallbackClosed",
            occurred_at=new.closed_at,
            closed_by=new.closed_by,
            closed_callid=new.closed_callid,
            seconds_to_call_back=new.seconds_to_call_back,
            attempts=new.attempts,
            reason=(new.closed_reason or CloseReason.ANSWERED).value,
            pbx_missed_status=new.pbx_missed_status,
            **common,
        )


def webhook_push_events(old: WebhookPushRecord | None, new: WebhookPushRecord | None) -> Iterator[BaseModel]:
    """A `sipregs_error` push kept for the first time is one SipRegistrationFailed; a repeat of it is
    never written, and other types publish nothing (they are kept and logged)."""
    if old is None and new is not None and new.known_type is WebhookType.SIPREGS_ERROR:
        yield SipRegistrationFailed(
            id=f"{new.push_id}/SipRegistrationFailed",
            push_id=new.push_id,
            pbx_id=new.id,
            occurred_at=new.received_at,
            data=new.data,
        )


def new_recording_link(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str | None:
    """The link, when this change stored a call's recording link for the first time."""
    link = new.get("link")
    if isinstance(link, str) and link and not (old or {}).get("link") and not new.get("recording_key"):
        return link
    return None


def to_entry(event: BaseModel, bus: str) -> dict[str, Any]:
    """A PutEvents entry; `Time` is when the call reached the state, not when it was published."""
    occurred = getattr(event, "occurred_at", None)
    return {
        "Source": SOURCE,
        "DetailType": type(event).__name__,
        "Detail": event.model_dump_json(),
        "EventBusName": bus,
        **({"Time": occurred} if occurred else {}),
    }


def schemas() -> dict[str, str]:
    """Each event's JSON schema, as kept under schemas/events/ (a test checks they are current)."""
    return {
        name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in EVENT_TYPES.items()
    }
