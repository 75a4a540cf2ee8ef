"""Calls: what `history`, `event` and `rating` pushes mean, and the stores they are kept in.

Pushes can be duplicated, reordered and concurrent, so every change here is one the store can apply
atomically and in any order with the same result:

- `history` is the outcome. It sets the call's fields (last push wins, absent fields are kept).
- `event` only adds: it stamps the first time the call reached a milestone (rang, answered, ended)
  and adds legs and transfers to sets. The live state is the furthest milestone reached, so a late
  INCOMING cannot undo ACCEPTED, and a CANCELLED leg never marks the call missed.
- the timeline keeps one entry per (type, user, transfer target) in arrival order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pbxbridge.domain.directory import pbx_login
from pbxbridge.protocol.webhook import (
    CallDirection,
    EventPush,
    EventType,
    HistoryPush,
    HistoryStatus,
    RatingPush,
)


class LiveState(StrEnum):
    RINGING = "RINGING"
    ACCEPTED = "ACCEPTED"
    COMPLETED = "COMPLETED"


class Outcome(StrEnum):
    """A finished call's result, decided by `history.status` only."""

    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    NOT_AVAILABLE = "not_available"
    NOT_ALLOWED = "not_allowed"
    CANCELLED = "cancelled"
    NOT_FOUND = "not_found"
    # Only from the history CSV, which does not say why an outbound call was not answered.
    NOT_ANSWERED = "not_answered"


_OUTCOMES: dict[HistoryStatus, Outcome] = {
    HistoryStatus.SUCCESS: Outcome.ANSWERED,
    HistoryStatus.MISSED: Outcome.MISSED,
    HistoryStatus.BUSY: Outcome.BUSY,
    HistoryStatus.NOT_AVAILABLE: Outcome.NOT_AVAILABLE,
    HistoryStatus.NOT_ALLOWED: Outcome.NOT_ALLOWED,
    HistoryStatus.CANCEL: Outcome.CANCELLED,
    HistoryStatus.NOT_FOUND: Outcome.NOT_FOUND,
}


class Milestone(StrEnum):
    """A moment in a call's life; the store keeps the first time each was reached."""

    RANG = "rang_at"
    DIALLED = "dialled_at"
    ACCEPTED = "accepted_at"
    COMPLETED = "completed_at"


_MILESTONES: dict[EventType, Milestone] = {
    EventType.INCOMING: Milestone.RANG,
    EventType.OUTGOING: Milestone.DIALLED,
    EventType.ACCEPTED: Milestone.ACCEPTED,
    EventType.COMPLETED: Milestone.COMPLETED,
}


def live_state(milestones: set[str], *, finished: bool = False) -> LiveState | None:
    """The furthest state reached: derived, so it never moves backwards whatever the push order.

    A call with an outcome (`history`, or reconciliation) is over whatever events arrived: COMPLETED,
    so a lost COMPLETED event never leaves a finished call RINGING beside its outcome."""
    if finished or Milestone.COMPLETED in milestones:
        return LiveState.COMPLETED
    if Milestone.ACCEPTED in milestones:
        return LiveState.ACCEPTED
    if Milestone.RANG in milestones or Milestone.DIALLED in milestones:
        return LiveState.RINGING
    return None


@dataclass(frozen=True, slots=True)
class CallHistory:
    """What a `history` push says about a call; the store sets these fields."""

    callid: str
    direction: str
    status: str
    outcome: Outcome
    client: str
    client_raw: str
    user: str
    pbx_user: str | None
    started_at: datetime
    duration: int
    received_at: datetime
    optional: dict[str, str | int] = field(default_factory=dict)
    crm_user: str | None = None


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One event push: an entry of the timeline and a step of the live state."""

    callid: str
    type: EventType
    user: str
    client: str
    client_raw: str
    received_at: datetime
    direction: str | None
    milestone: Milestone | None
    answered_by: str | None
    cancelled_leg: str | None
    rang_leg: str | None
    transferred_to: str | None
    # Who an INCOMING rings: the leg as the PBX named it, its canonical login and the push's extension.
    rung: dict[str, str] | None = None
    optional: dict[str, str] = field(default_factory=dict)
    crm_user: str | None = None

    @property
    def timeline_key(self) -> str:
        # No id comes with an event: the same type, user and target on one call is the same event.
        return f"{self.type.value}#{self.user}#{self.transferred_to or ''}"


@dataclass(frozen=True, slots=True)
class CallRating:
    callid: str
    rating: int
    received_at: datetime
    client: str | None = None
    client_raw: str | None = None


class CallStore(Protocol):
    """Data access for calls; each method is one atomic request."""

    def save_history(self, history: CallHistory) -> bool:
        """Set the history fields; True when this call's history was already stored (a duplicate)."""
        ...

    def add_timeline_event(self, event: CallEvent) -> bool:
        """Append to the timeline unless the same event is there; True when it was (a duplicate)."""
        ...

    def advance_live_state(self, event: CallEvent) -> None:
        """Apply the event to the call item: commutative, idempotent."""
        ...

    def save_rating(self, rating: CallRating) -> None: ...


def status_outcome(status: str | None) -> tuple[str, Outcome] | None:
    """A call's status as the PBX spells it (`Success`, `busy`, ...) -> (its canonical spelling, the
    outcome); None for a status we do not know."""
    if status is None:
        return None
    try:
        known = HistoryStatus(status)
    except ValueError:
        return None
    return known.value, _OUTCOMES[known]


def _number_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdecimal() and len(value) < 10 else None


Attribution = Callable[[str | None], tuple[str | None, str | None]]


def by_login(user: str | None) -> tuple[str | None, str | None]:
    """Attribution without a directory: the login as given, no CRM user."""
    return pbx_login(user), None


def history_from_push(push: HistoryPush, received_at: datetime, attribute: Attribution = by_login) -> CallHistory:
    optional: dict[str, str | int] = {}
    for name, value in (
        ("ext", push.ext),
        ("telnum", push.telnum.e164 if push.telnum else None),
        ("telnum_raw", push.telnum.raw if push.telnum else None),
        ("group_name", push.group_real_name),
        ("group", push.group),
        ("diversion", push.diversion.e164 if push.diversion else None),
        ("diversion_raw", push.diversion.raw if push.diversion else None),
        ("link", push.link),
        ("wait", _number_or_none(push.wait)),
        # Kept apart from the `rating` push's score, so neither overwrites the other by arriving late.
        ("history_rating", _number_or_none(push.rating)),
        ("missed_status", push.missed_status),
    ):
        if value is not None:
            optional[name] = value
    login, crm_user = attribute(push.user)
    return CallHistory(
        callid=push.callid,
        direction=push.type.value,
        status=push.status.value,
        outcome=_OUTCOMES[push.status],
        client=push.phone.e164,
        client_raw=push.phone.raw,
        user=push.user,
        pbx_user=login,
        crm_user=crm_user,
        started_at=push.start,
        duration=push.duration,
        received_at=received_at,
        optional=optional,
    )


def event_from_push(push: EventPush, received_at: datetime, attribute: Attribution = by_login) -> CallEvent:
    direction = push.direction.value if push.direction else None
    if direction is None and push.type in (EventType.INCOMING, EventType.OUTGOING):
        direction = CallDirection.IN.value if push.type is EventType.INCOMING else CallDirection.OUT.value
    optional = {
        name: value
        for name, value in (
            ("ext", push.ext),
            ("telnum", push.telnum.e164 if push.telnum else None),
            ("telnum_raw", push.telnum.raw if push.telnum else None),
            ("group_name", push.group_real_name),
            ("diversion", push.diversion.e164 if push.diversion else None),
            ("diversion_raw", push.diversion.raw if push.diversion else None),
        )
        if value is not None
    }
    takes_call = push.type in (EventType.ACCEPTED, EventType.OUTGOING)
    login, crm_user = attribute(push.user) if takes_call else (None, None)
    rung: dict[str, str] | None = None
    if push.type is EventType.INCOMING:
        rung_login = attribute(push.user)[0]
        rung = {
            name: value
            for name, value in (("user", push.user), ("login", rung_login), ("ext", push.ext))
            if value is not None
        }
    return CallEvent(
        callid=push.callid,
        type=push.type,
        user=push.user,
        client=push.phone.e164,
        client_raw=push.phone.raw,
        received_at=received_at,
        direction=direction,
        milestone=_MILESTONES.get(push.type),
        answered_by=login,
        crm_user=crm_user,
        cancelled_leg=push.user if push.type is EventType.CANCELLED else None,
        rang_leg=push.user if push.type is EventType.INCOMING else None,
        transferred_to=push.second_callid if push.type is EventType.TRANSFERRED else None,
        optional=optional,
        rung=rung,
    )


def record_history(
    store: CallStore, push: HistoryPush, received_at: datetime, attribute: Attribution = by_login
) -> bool:
    """Store a finished call; returns True when it was a duplicate push."""
    return store.save_history(history_from_push(push, received_at, attribute))


def record_event(store: CallStore, push: EventPush, received_at: datetime, attribute: Attribution = by_login) -> bool:
    """Store an event in the timeline and the call's live state; returns True for a duplicate.

    The live state is advanced even for a duplicate: if an earlier attempt stored the timeline entry
    but failed before the state, the PBX's retry must still complete it (the update is idempotent).
    """
    event = event_from_push(push, received_at, attribute)
    duplicate = store.add_timeline_event(event)
    store.advance_live_state(event)
    return duplicate


def record_rating(store: CallStore, push: RatingPush, received_at: datetime) -> None:
    store.save_rating(
        CallRating(
            callid=push.callid,
            rating=push.rating,
            received_at=received_at,
            client=push.phone.e164 if push.phone else None,
            client_raw=push.phone.raw if push.phone else None,
        )
    )
