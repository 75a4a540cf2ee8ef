"""Call-backs: a missed inbound call from a number that nobody has returned yet.

A missed inbound call opens a call-back for its number (one per number: further missed calls add to
it). Any later answered call with that number, in either direction, closes it; outbound calls to the
number that were not answered, between the first missed call and the closing one, are counted as
attempts.

Calls reach us duplicated, reordered and late (reconciliation creates calls whose pushes were lost,
minutes after the fact), so a number's call-backs are never edited step by step. Each number keeps a
*ledger*: the relevant calls (missed, answered, unanswered outbound) keyed by call id, each with its
start time. The call-backs are derived from the ledger by replaying its calls in start order, so the
result depends only on which calls are known, never on the order they came in:

- a missed call whose start is before an answered call already known is not an open call-back: it
  falls in the cycle that answered call closed;
- the same call twice is one entry;
- a late answered call that started between two missed calls splits them: the earlier ones are
  closed by it, the later ones stay open.

The PBX's own verdict on a missed call (crmapi/v1's `missed_status`, read by reconciliation with
`process_missed`, or a push's `missedStatus`: `1` the client called back, `2` we called back, `3`
nobody did, `4` we tried and did not reach them) is kept on that missed call in the ledger and
replayed with the rest. Ours and the PBX's can disagree (a call we never heard of, a verdict read
before the call-back): the rule is that a call-back is only ever closed, never reopened, and an
answered call we know of is hard evidence that wins over any verdict:

- `1` or `2` on a missed call closes its call-back (the cycle up to and including that call; missed
  calls after it stay open, the PBX gives them verdicts of their own) with the reason
  `pbx_called_back`, unless an answered call we know of closes it (reason `answered`, as before);
  the PBX does not say when, so `closed_at` is when we learnt the verdict;
- `3` or `4` never reopens a call-back an answered call closed, and never closes one;
- `4` counts as at least one attempt (the attempt itself may be a call we never saw);
- a verdict only moves up (`3` < `4` < `1`/`2`); of one rank the first learnt is kept, so the
  call-back is closed once, with one CallbackClosed, whatever order the verdicts come in.

A call-back keeps the id it was given when it was first derived (from the missed call that opened it;
`<phone>/<callid>`), through later extensions and splits. The ledger is written back with a condition
on its version, so concurrent calls with one number retry instead of overwriting each other.

The store interface (`CallbackStore`) is the data access; this module never touches boto3.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pbxbridge.domain.directory import pbx_login

UNASSIGNED = "unassigned"  # the owner of a call-back no user or group can be found for
MAX_LEDGER_CALLS = 1000  # a number's ledger stays far below DynamoDB's 400 KB item limit (~100 B a call)
MAX_LISTED_CALLIDS = 50  # the missed call ids a call-back shows (the count is always exact)
# A call-back closed this long before the number's newest call is settled: its calls are forgotten.
SETTLED_AFTER = timedelta(days=3)
SAVE_ATTEMPTS = 10


class CallbackStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CloseReason(StrEnum):
    ANSWERED = "answered"  # an answered call with the number, in either direction
    PBX_CALLED_BACK = "pbx_called_back"  # the PBX's verdict (`missed_status` 1 or 2) on a missed call


# The PBX's `missed_status`: `1` the client called back, `2` we called back, `3` nobody called back,
# `4` we tried and did not reach them.
CALLED_BACK = frozenset({1, 2})
TRIED = 4
_VERDICT_RANK = {None: 0, 3: 1, 4: 2, 1: 3, 2: 3}


def verdict(value: Any) -> int | None:
    """A `missed_status` as the PBX or our record holds it (`2`, `"2"`) -> 1..4; None for anything else."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    return int(text) if text in ("1", "2", "3", "4") else None


class Callback(BaseModel):
    """A call-back as the list, the events and the widget show it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="`<phone>/<callid of the missed call that opened it>`, never changes")
    phone: str = Field(description="the client's number, E.164")
    owner: str = Field(description="a PBX login, a group (`g_<id>`), or `unassigned`")
    status: CallbackStatus
    missed_count: int = Field(ge=1)
    missed_callids: tuple[str, ...] = Field(description="the missed calls, oldest first (the last 50)")
    first_missed_at: datetime
    last_missed_at: datetime
    attempts: int = Field(default=0, ge=0, description="outbound calls to the number that were not answered")
    closed_by: str | None = Field(default=None, description="the PBX login that answered or made the closing call")
    closed_callid: str | None = None
    closed_at: datetime | None = Field(
        default=None, description="when the closing call started (`pbx_called_back`: when we learnt the verdict)"
    )
    seconds_to_call_back: int | None = Field(default=None, description="first missed call to the closing call")
    closed_reason: CloseReason | None = Field(default=None, description="`answered`, or `pbx_called_back`")
    pbx_missed_status: int | None = Field(
        default=None, description="`pbx_called_back`: the PBX's verdict, 1 the client called back, 2 we did"
    )
    overdue_since: datetime | None = Field(
        default=None,
        description="when its SLA ran out while it was open (CallbackOverdue); absent while within it",
    )


@dataclass(frozen=True)
class CallbackPage:
    callbacks: list[Callback]
    cursor: str | None


class CallKind(StrEnum):
    MISSED = "missed"  # inbound, not answered: opens or adds to a call-back
    ANSWERED = "answered"  # either direction: closes
    ATTEMPT = "attempt"  # outbound, not answered: counted


_PRECEDENCE = {CallKind.ATTEMPT: 0, CallKind.MISSED: 1, CallKind.ANSWERED: 2}


@dataclass(frozen=True, slots=True)
class CallFact:
    """What one call means for its number's call-backs."""

    callid: str
    phone: str
    kind: CallKind
    at: datetime  # when the call started (UTC)
    user: str | None = None  # MISSED: the user or group rung; ANSWERED: the login who took or made it
    verdict: int | None = None  # MISSED: the PBX's `missed_status`
    verdict_at: datetime | None = None  # when we learnt that verdict

    def merge(self, other: CallFact) -> CallFact:
        """The same call seen twice (an event, then its history): answered wins, the earlier start
        wins (an event's arrival is only an estimate of the start), a known user is kept. The PBX's
        verdict only moves up, and of one rank the first learnt is kept (and when it was learnt)."""
        kind = max(self.kind, other.kind, key=_PRECEDENCE.__getitem__)
        same_kind = [f for f in (self, other) if f.kind is kind]
        user = next((f.user for f in same_kind if f.user), None)
        told = max(self, other, key=_verdict_order)
        return CallFact(self.callid, self.phone, kind, min(self.at, other.at), user, told.verdict, told.verdict_at)


def _verdict_order(fact: CallFact) -> tuple[int, float, int]:
    # Up the ranks; within one, the verdict learnt first (a call-back's closing time stays put), then
    # the larger: a total order, so the verdict kept never depends on the order verdicts came in.
    learnt = -fact.verdict_at.timestamp() if fact.verdict_at else 0.0
    return _VERDICT_RANK[fact.verdict], learnt, fact.verdict or 0


@dataclass(frozen=True, slots=True)
class Opened:
    """What is fixed when a call-back is first derived: its id and owner."""

    id: str
    owner: str


@dataclass(frozen=True)
class Ledger:
    """A number's relevant calls and its call-backs' ids; `version` guards concurrent writes."""

    phone: str
    version: int = 0
    calls: Mapping[str, CallFact] = field(default_factory=dict)
    opened: Mapping[str, Opened] = field(default_factory=dict)  # opening missed callid -> id, owner
    boundary: datetime | None = None  # calls that started before it are forgotten and ignored

    def callbacks(self) -> list[Callback]:
        # Every derived call-back has its identity in `opened`; the fallback only keeps a damaged
        # ledger readable (its ids would then be derived afresh, as for a new call-back).
        return derive(self.phone, self.calls.values(), self.opened, lambda fact: UNASSIGNED)[0]


# Starts are known to the second only. Within one second a missed call comes first, then unanswered
# call-back attempts, then an answered call, which closes what shares its second: a call-back placed
# in the very second of the missed call returns it, whatever the call ids.
_SAME_SECOND_ORDER = {CallKind.MISSED: 0, CallKind.ATTEMPT: 1, CallKind.ANSWERED: 2}


def _key(fact: CallFact) -> tuple[datetime, int, str]:
    return fact.at.replace(microsecond=0), _SAME_SECOND_ORDER[fact.kind], fact.callid


@dataclass
class _Cycle:
    missed: list[CallFact] = field(default_factory=list)
    attempts: int = 0
    closer: CallFact | None = None
    pbx_closer: CallFact | None = None  # the missed call the PBX says was called back (1 or 2)
    pbx_tried: bool = False  # the PBX says we tried (4) on one of its missed calls


def _cycles(calls: Iterable[CallFact]) -> list[_Cycle]:
    cycles: list[_Cycle] = []
    current: _Cycle | None = None
    # Closed by the PBX's verdict, at a moment it does not tell: until the next missed call, our
    # attempts still count for it and an answered call we know of still closes it (hard evidence).
    settling: _Cycle | None = None
    for fact in sorted(calls, key=_key):
        if fact.kind is CallKind.MISSED:
            if current is None:
                current, settling = _Cycle(), None
                cycles.append(current)
            current.missed.append(fact)
            current.pbx_tried = current.pbx_tried or fact.verdict == TRIED
            if fact.verdict in CALLED_BACK:
                current.pbx_closer, settling, current = fact, current, None
        elif (target := current or settling) is None:
            continue
        elif fact.kind is CallKind.ATTEMPT:
            target.attempts += 1
        else:
            target.closer = fact
            current = settling = None
    return cycles


def _closing(cycle: _Cycle, first_at: datetime) -> dict[str, Any]:
    """A cycle's closing fields: by the answered call we know of, else by the PBX's verdict, else open."""
    closer, told = cycle.closer, cycle.pbx_closer
    if closer is not None:
        at, by, callid, reason, status = closer.at, closer.user, closer.callid, CloseReason.ANSWERED, None
    elif told is not None:
        at, by, callid, reason, status = (
            told.verdict_at or told.at,
            None,
            told.callid,
            CloseReason.PBX_CALLED_BACK,
            told.verdict,
        )
    else:
        return {"status": CallbackStatus.OPEN}
    return {
        "status": CallbackStatus.CLOSED,
        "closed_by": by,
        "closed_callid": callid,
        "closed_at": at,
        "seconds_to_call_back": max(0, int((at - first_at).total_seconds())),
        "closed_reason": reason,
        "pbx_missed_status": status,
    }


OwnerOf = Callable[[CallFact], str]


def _rung_of(cycle: _Cycle) -> CallFact:
    """The missed call an owner is looked for by: the first, or the first that names whom it rang."""
    return next((f for f in cycle.missed if f.user), cycle.missed[0])


def derive(
    phone: str,
    calls: Iterable[CallFact],
    opened: Mapping[str, Opened],
    owner_of: OwnerOf | None = None,
    members: Mapping[str, str] | None = None,
) -> tuple[list[Callback], dict[str, Opened]]:
    """The call-backs a set of calls means, oldest first, and the ids and owners they keep.

    A cycle that holds the opening call of a known call-back keeps that call-back's id and owner. If
    an opening call is no longer a missed call (it turned out answered), the first cycle holding one
    of that call-back's other missed calls (`members`: missed callid -> the opening callid of the
    call-back it was in) takes it over. Any other cycle is new: its id comes from its earliest missed
    call, its owner from `owner_of` (which must be given when a new call-back can appear)."""
    calls = list(calls)
    callbacks: list[Callback] = []
    kept: dict[str, Opened] = {}
    still_missed = {f.callid for f in calls if f.kind is CallKind.MISSED}
    orphans = {callid for callid in opened if callid not in still_missed}
    members_ = members or {}
    for cycle in _cycles(calls):
        known = next((f.callid for f in cycle.missed if f.callid in opened), None)
        adopted = next((members_[f.callid] for f in cycle.missed if members_.get(f.callid) in orphans), None)
        if known is not None:
            opener, identity = known, opened[known]
        elif adopted is not None:
            orphans.discard(adopted)
            opener, identity = cycle.missed[0].callid, opened[adopted]
        else:
            if owner_of is None:
                raise ValueError("a new call-back needs an owner")
            first = cycle.missed[0]
            opener, identity = first.callid, Opened(id=f"{phone}/{first.callid}", owner=owner_of(_rung_of(cycle)))
        first_at, closing = cycle.missed[0].at, _closing(cycle, cycle.missed[0].at)
        if (
            identity.owner == UNASSIGNED
            and closing["status"] is CallbackStatus.OPEN
            and owner_of
            and (known or adopted) is not None
        ):
            # Whom a call rang can be learnt after its call-back opened (ringing legs pushed after the
            # history): an open call-back nobody owned goes to its owner as soon as one is known.
            owner = owner_of(_rung_of(cycle))
            if owner != UNASSIGNED:
                identity = Opened(id=identity.id, owner=owner)
        kept[opener] = identity
        callbacks.append(
            Callback(
                id=identity.id,
                phone=phone,
                owner=identity.owner,
                missed_count=len(cycle.missed),
                missed_callids=tuple(f.callid for f in cycle.missed[-MAX_LISTED_CALLIDS:]),
                first_missed_at=first_at,
                last_missed_at=cycle.missed[-1].at,
                attempts=max(cycle.attempts, 1) if cycle.pbx_tried else cycle.attempts,
                **closing,
            )
        )
    return callbacks, kept


def apply(ledger: Ledger, fact: CallFact, owner_of: OwnerOf) -> tuple[Ledger, list[Callback]]:
    """The ledger with one more call, and the call-backs that call created or changed.

    Returns the ledger itself and no call-backs when the call changes nothing (a duplicate, or a call
    older than what the ledger still remembers)."""
    if ledger.boundary is not None and fact.at <= ledger.boundary:
        return ledger, []
    known = ledger.calls.get(fact.callid)
    merged = known.merge(fact) if known else fact
    if merged == known:
        return ledger, []
    if known is None and len(ledger.calls) >= 2 * MAX_LEDGER_CALLS:
        # Thousands of calls and not one answered to settle them at (a number that only ever
        # misses): the call-back stops growing rather than the ledger outgrowing its item.
        return ledger, []
    calls = {**ledger.calls, fact.callid: merged}
    before = {callback.id: callback for callback in ledger.callbacks()}
    opener_of = {identity.id: callid for callid, identity in ledger.opened.items()}
    members = {
        missed: opener_of[callback.id]
        for callback in before.values()
        if callback.id in opener_of
        for missed in callback.missed_callids
    }
    callbacks, opened = derive(ledger.phone, calls.values(), ledger.opened, owner_of, members)
    changed = [callback for callback in callbacks if before.get(callback.id) != callback]
    derived = {callback.id for callback in callbacks}
    for gone in before.values():
        if gone.id not in derived and gone.status is CallbackStatus.OPEN:
            # Its only missed call turned out answered (an ACCEPTED that came after the history):
            # that call returned it. Closed, rather than left open with nothing to close it ever.
            changed.append(_closed_by(gone, merged))
    updated = _forget_settled(replace(ledger, calls=calls, opened=opened))
    return updated, changed


def _closed_by(callback: Callback, closer: CallFact) -> Callback:
    seconds = max(0, int((closer.at - callback.first_missed_at).total_seconds()))
    return callback.model_copy(
        update={
            "status": CallbackStatus.CLOSED,
            "closed_by": closer.user,
            "closed_callid": closer.callid,
            "closed_at": closer.at,
            "seconds_to_call_back": seconds,
            "closed_reason": CloseReason.ANSWERED,
            "pbx_missed_status": None,
        }
    )


def _forget_settled(ledger: Ledger) -> Ledger:
    """Keep the ledger small: forget everything before the last answered call that started more than
    SETTLED_AFTER before the number's newest call (or, beyond MAX_LEDGER_CALLS, before the last
    answered call among the oldest calls).

    Until then every call counts, however late it comes (reconciliation finds lost calls within
    minutes, its daily run within a day). An answered call ends every call-back before it, so none
    straddles the boundary: the ones before it are settled as stored, and a call that arrives later
    but started before it is ignored."""
    ordered = sorted(ledger.calls.values(), key=_key)
    settled = ordered[-1].at - SETTLED_AFTER
    overflow = len(ordered) - MAX_LEDGER_CALLS
    candidates = [
        f for index, f in enumerate(ordered) if f.kind is CallKind.ANSWERED and (f.at <= settled or index < overflow)
    ]
    last = candidates[-1] if candidates else None
    if last is None or (ledger.boundary is not None and last.at <= ledger.boundary):
        return ledger
    boundary = last.at
    # The answered call at the boundary itself is kept: it still closes what comes right before it.
    # What shares its second but comes before it (a missed call it closed) is settled with the rest.
    calls = {f.callid: f for f in ordered if _key(f) >= _key(last)}
    opened = {callid: o for callid, o in ledger.opened.items() if callid in calls}
    return replace(ledger, calls=calls, opened=opened, boundary=boundary)


class CallbackStore(Protocol):
    """Data access for call-backs (pbxbridge.storage.callbacks.DynamoCallbackStore is one)."""

    def ledger(self, phone: str) -> Ledger | None:
        """The number's ledger (strongly consistent), or None when no call with it mattered yet."""
        ...

    def save(self, ledger: Ledger, expected_version: int, changed: Sequence[Callback]) -> bool:
        """Write the ledger (as version `expected_version + 1`) and the changed call-backs in one
        transaction, only if the stored ledger is still at `expected_version` (0: none stored).
        False when another writer got there first."""
        ...

    def list_callbacks(
        self, owner: str, status: CallbackStatus, limit: int = 50, cursor: str | None = None
    ) -> CallbackPage:
        """An owner's call-backs with this status, the most recently missed first."""
        ...


class CallbackConflictError(RuntimeError):
    """Writers kept racing for one number's ledger; the caller retries later (the stream redelivers)."""


def record_call(store: CallbackStore, fact: CallFact, owner_of: OwnerOf) -> list[Callback]:
    """Add one call to its number's ledger; returns the call-backs it opened, extended or closed."""
    for attempt in range(SAVE_ATTEMPTS):
        if attempt:
            # Writers that collided would collide again in step: spread them out a little.
            time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not a secret
        ledger = store.ledger(fact.phone) or Ledger(phone=fact.phone)
        updated, changed = apply(ledger, fact, owner_of)
        if updated is ledger:
            return []
        if store.save(replace(updated, version=ledger.version + 1), ledger.version, changed):
            return changed
    raise CallbackConflictError(f"the ledger of {fact.phone} kept changing under us")


def list_callbacks(
    store: CallbackStore,
    owner: str,
    status: CallbackStatus = CallbackStatus.OPEN,
    limit: int = 50,
    cursor: str | None = None,
) -> CallbackPage:
    """An owner's call-backs (open by default), the most recently missed first; `cursor` from the
    previous page. The widget calls this with its token's login."""
    return store.list_callbacks(owner, status, limit, cursor)


def parse_time(value: Any) -> datetime | None:
    """A stored ISO 8601 time (`Z` or an offset) as an aware datetime; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def group_owner(user: Any) -> str | None:
    """`g_<id>@tenant` -> `g_<id>`: a group as an owner."""
    if isinstance(user, str) and user.lower().startswith("g_"):
        return "g_" + user.split("@", 1)[0][2:]
    return None


def _login(user: Any) -> str | None:
    """`andy@tenant` -> `andy`; None for groups, `pbx`, `ivr`, `fax` (the directory resolves it later)."""
    return pbx_login(user) if isinstance(user, str) else None


def rung(call: Mapping[str, Any]) -> str | None:
    """Who a missed inbound call was for: the user the history names; else the one user whose phone
    rang; else, when several rang, the call's group (`g_<id>`, from the history's `user` or `group`);
    else the first of those users by login (alphabetical: the PBX says in which order they rang only
    through pushes that may come in any order, so this is the choice that never depends on them);
    else the group; None when the call names nobody (a history `pbx` and no ringing leg seen)."""
    named = call.get("pbx_user") or _login(call.get("user"))
    if named:
        return str(named)
    legs = sorted({login for leg in call.get("legs_rang") or () if (login := _login(leg))})
    group = group_owner(call.get("user")) or group_owner(call.get("group"))
    if len(legs) == 1:
        return legs[0]
    return group or (legs[0] if legs else None)


# Inbound outcomes that leave the client waiting for a call back: `missed`; `cancelled` (the live
# PBX's `Cancel`: the caller hung up before anyone answered); `not_found` (the live PBX's `NotFound`,
# undocumented: the call reached nobody who could take it; the client still called and spoke to nobody).
MISSED_OUTCOMES = frozenset({"missed", "cancelled", "not_found"})


def call_facts(
    call: Mapping[str, Any], event_types: Iterable[str], before: Mapping[str, Any] | None = None
) -> list[CallFact]:
    """What a change of a call item means for call-backs, given the call events the change stream
    decided for it (`CallMissed`, `CallAnswered`, `CallEnded`: each once per transition), and the
    item `before` the change (a missed call's ringing legs may come after its history; the PBX's
    verdict on it, `missed_status`, comes with reconciliation)."""
    phone, callid = call.get("client"), call.get("callid")
    started = parse_time(call.get("started_at"))
    if not isinstance(phone, str) or not phone or not isinstance(callid, str) or started is None:
        return []
    facts = []
    types = set(event_types)
    answered_by = call.get("accepted_by") or call.get("pbx_user")
    outcome = call.get("outcome")
    told = verdict(call.get("missed_status"))
    newly_told = told is not None and told != verdict((before or {}).get("missed_status"))
    missed = call.get("direction") != "out" and outcome in MISSED_OUTCOMES
    if "CallAnswered" in types or ("CallEnded" in types and outcome == "answered"):
        facts.append(CallFact(callid, phone, CallKind.ANSWERED, started, answered_by))
    elif call.get("direction") != "out" and (
        "CallMissed" in types or ("CallEnded" in types and outcome in MISSED_OUTCOMES)
    ):
        facts.append(_missed(call, callid, phone, started, told))
    elif call.get("direction") == "out" and (
        "CallEnded" in types or (newly_told and told == 2 and outcome not in (None, "answered"))
    ):
        # An outbound call that reached nobody; the PBX marks one to a number it owes a call-back
        # with `missedStatus=2` (a call-back attempt): an attempt even if no event said it ended.
        facts.append(CallFact(callid, phone, CallKind.ATTEMPT, started, call.get("pbx_user")))
    elif missed and before is not None and before.get("outcome") == outcome and rung(call) not in (None, rung(before)):
        # Already missed, and now we know whom it rang: the same call again, with its user.
        facts.append(_missed(call, callid, phone, started, told))
    elif missed and newly_told:
        # Already missed, and now the PBX's verdict on it (reconciliation's `process_missed`).
        facts.append(_missed(call, callid, phone, started, told))
    return facts


def _missed(call: Mapping[str, Any], callid: str, phone: str, started: datetime, told: int | None) -> CallFact:
    # When we learnt the verdict: reconciliation stamps it; a push's came with its history.
    learnt = parse_time(call.get("missed_status_at")) or parse_time(call.get("history_at")) or started
    return CallFact(callid, phone, CallKind.MISSED, started, rung(call), told, learnt if told else None)


def owner_by(
    responsible_login: Callable[[str], str | None], login_of: Callable[[str], str | None] | None = None
) -> OwnerOf:
    """The owner of a new call-back: the contact's responsible (as a PBX login, through
    `responsible_login(phone)`), else the user or group that was rung (a user as the login
    `login_of` resolves it to, when given), else `unassigned`."""

    def owner_of(fact: CallFact) -> str:
        responsible = responsible_login(fact.phone)
        if responsible:
            return responsible
        if fact.user is None:
            return UNASSIGNED
        if group_owner(fact.user):
            return fact.user
        return (login_of(fact.user) if login_of else None) or fact.user

    return owner_of


__all__ = [
    "UNASSIGNED",
    "CallFact",
    "CallKind",
    "Callback",
    "CallbackConflictError",
    "CallbackPage",
    "CallbackStatus",
    "CallbackStore",
    "CloseReason",
    "Ledger",
    "apply",
    "call_facts",
    "derive",
    "group_owner",
    "list_callbacks",
    "owner_by",
    "parse_time",
    "record_call",
    "rung",
    "verdict",
]
