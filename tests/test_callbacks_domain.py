"""Call-backs, the domain alone: what a set of calls means, whatever order and however often they come."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.domain import callbacks as domain
from pbxbridge.domain.callbacks import (
    Callback,
    CallbackPage,
    CallbackStatus,
    CallFact,
    CallKind,
    Ledger,
    call_facts,
    owner_by,
    record_call,
)

PHONE = "+79101234567"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def missed(callid: str, minutes: float, user: str | None = "andy") -> CallFact:
    return CallFact(callid, PHONE, CallKind.MISSED, at(minutes), user)


def answered(callid: str, minutes: float, user: str | None = "mike") -> CallFact:
    return CallFact(callid, PHONE, CallKind.ANSWERED, at(minutes), user)


def attempt(callid: str, minutes: float) -> CallFact:
    return CallFact(callid, PHONE, CallKind.ATTEMPT, at(minutes), "mike")


class MemoryStore:
    """The store protocol in memory, with the version guard the DynamoDB store has."""

    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        self.items: dict[str, Callback] = {}
        self.saves = 0
        self.conflicts = 0
        self._lock = threading.Lock()
        self.before_save: list[object] = []  # hooks run between a writer's read and its write

    def ledger(self, phone: str) -> Ledger | None:
        return self.ledgers.get(phone)

    def save(self, ledger: Ledger, expected_version: int, changed: Sequence[Callback]) -> bool:
        for hook in list(self.before_save):
            self.before_save.remove(hook)
            hook()  # type: ignore[operator]
        with self._lock:
            current = self.ledgers.get(ledger.phone)
            if (current.version if current else 0) != expected_version:
                self.conflicts += 1
                return False
            self.ledgers[ledger.phone] = ledger
            self.items.update({callback.id: callback for callback in changed})
            self.saves += 1
            return True

    def list_callbacks(
        self, owner: str, status: CallbackStatus, limit: int = 50, cursor: str | None = None
    ) -> CallbackPage:
        found = [c for c in self.items.values() if c.owner == owner and c.status is status]
        return CallbackPage(sorted(found, key=lambda c: c.last_missed_at, reverse=True)[:limit], None)


def owner_of(fact: CallFact) -> str:
    return fact.user or domain.UNASSIGNED


def play(facts: Sequence[CallFact], store: MemoryStore | None = None) -> MemoryStore:
    store = store or MemoryStore()
    for fact in facts:
        record_call(store, fact, owner_of)
    return store


def test_a_missed_call_opens_a_call_back_and_more_missed_calls_add_to_it() -> None:
    store = play([missed("m1", 0), missed("m2", 5), missed("m2", 5)])  # m2 twice: counted once
    (callback,) = store.items.values()
    assert callback.id == f"{PHONE}/m1"
    assert callback.status is CallbackStatus.OPEN
    assert (callback.missed_count, callback.missed_callids) == (2, ("m1", "m2"))
    assert (callback.first_missed_at, callback.last_missed_at) == (at(0), at(5))
    assert callback.owner == "andy"
    assert store.saves == 2  # the duplicate wrote nothing


def test_a_later_answered_call_in_either_direction_closes_it_with_who_and_how_long() -> None:
    store = play([missed("m1", 0), attempt("o1", 3), attempt("o2", 4), answered("a1", 20, "mike")])
    (callback,) = store.items.values()
    assert callback.status is CallbackStatus.CLOSED
    assert (callback.closed_by, callback.closed_callid, callback.closed_at) == ("mike", "a1", at(20))
    assert callback.seconds_to_call_back == 20 * 60
    assert callback.attempts == 2


def test_an_answered_call_before_the_missed_one_does_not_close_it() -> None:
    store = play([answered("a0", -10), attempt("o0", -5), missed("m1", 0)])
    (callback,) = store.items.values()
    assert callback.status is CallbackStatus.OPEN
    assert callback.attempts == 0  # an outbound call before the missed one is no call-back attempt


def test_a_missed_call_that_started_before_an_answered_call_already_processed_does_not_open_one() -> None:
    # The manager returned the call; the missed call's push was lost and reconciliation brings it later.
    store = play([answered("a1", 30), missed("m1", 0)])
    (callback,) = store.items.values()
    assert callback.status is CallbackStatus.CLOSED
    assert (callback.closed_callid, callback.seconds_to_call_back) == ("a1", 30 * 60)
    assert store.list_callbacks("andy", CallbackStatus.OPEN).callbacks == []


def test_an_answered_call_that_arrives_late_splits_the_missed_calls_around_it() -> None:
    store = play([missed("m1", 0), missed("m2", 30), answered("a1", 15)])
    first, second = sorted(store.items.values(), key=lambda c: c.first_missed_at)
    assert (first.id, first.status, first.missed_callids, first.closed_callid) == (
        f"{PHONE}/m1",
        CallbackStatus.CLOSED,
        ("m1",),
        "a1",
    )
    assert (second.id, second.status, second.missed_callids) == (f"{PHONE}/m2", CallbackStatus.OPEN, ("m2",))


def test_an_earlier_missed_call_arriving_late_joins_the_call_back_and_keeps_its_id() -> None:
    store = play([missed("m2", 10), missed("m1", 0)])
    (callback,) = store.items.values()
    assert callback.id == f"{PHONE}/m2"  # the id it was published with never changes
    assert (callback.missed_callids, callback.first_missed_at) == (("m1", "m2"), at(0))


def test_a_call_seen_as_an_event_then_as_history_is_one_call() -> None:
    # ACCEPTED stamps the arrival as the start; the history then gives the PBX's own, earlier start.
    event = CallFact("a1", PHONE, CallKind.ANSWERED, at(21), "mike")
    history = CallFact("a1", PHONE, CallKind.ANSWERED, at(20), "mike")
    store = play([missed("m1", 0), event, history])
    (callback,) = store.items.values()
    assert (callback.closed_at, callback.seconds_to_call_back) == (at(20), 1200)
    assert len(store.ledgers[PHONE].calls) == 2


def test_a_missed_call_that_turns_out_answered_hands_its_call_back_on_or_closes_it() -> None:
    # The PBX's ACCEPTED came after its history said missed: the call was answered after all.
    store = play([missed("m1", 0), missed("m2", 5), answered("m1", 0, "andy")])
    (callback,) = store.items.values()
    assert (callback.id, callback.status, callback.missed_callids) == (f"{PHONE}/m1", CallbackStatus.OPEN, ("m2",))
    assert store.ledgers[PHONE].callbacks() == [callback]
    alone = play([missed("m1", 0), answered("m1", 0, "andy")])
    (callback,) = alone.items.values()
    assert (callback.status, callback.closed_callid, callback.closed_by, callback.seconds_to_call_back) == (
        CallbackStatus.CLOSED,
        "m1",
        "andy",
        0,
    )
    assert alone.ledgers[PHONE].callbacks() == []


def test_call_backs_settled_days_ago_are_forgotten_and_late_calls_before_them_ignored() -> None:
    day = 24 * 60
    store = play([missed("m1", 0), answered("a1", 10), missed("m2", 20), answered("a2", 30)])
    assert store.ledgers[PHONE].boundary is None  # recent: a late call still corrects them
    play([missed("m3", 5 * day)], store)
    ledger = store.ledgers[PHONE]
    assert ledger.boundary == at(30)  # m1's and m2's call-backs are settled
    assert set(ledger.calls) == {"a2", "m3"}
    before = dict(store.items)
    play([missed("m0", 5), answered("a0", 1)], store)  # started before the boundary: returned long ago
    assert store.items == before
    assert [c.status for c in sorted(store.items.values(), key=lambda c: c.first_missed_at)] == [
        CallbackStatus.CLOSED,
        CallbackStatus.CLOSED,
        CallbackStatus.OPEN,
    ]


def test_a_late_call_within_days_still_corrects_a_closed_call_back() -> None:
    store = play([missed("m1", 0), missed("m2", 20), answered("a2", 30), missed("m3", 60)])
    play([answered("a1", 10)], store)  # reconciliation found it: m1 was returned sooner
    first, second, third = sorted(store.items.values(), key=lambda c: c.first_missed_at)
    assert (first.missed_callids, first.closed_callid, first.seconds_to_call_back) == (("m1",), "a1", 600)
    assert (second.missed_callids, second.closed_callid) == (("m2",), "a2")
    assert (third.missed_callids, third.status) == (("m3",), CallbackStatus.OPEN)


def test_a_number_that_is_always_answered_keeps_a_small_ledger() -> None:
    day = 24 * 60
    store = play([answered(f"a{i}", i * day / 4) for i in range(60)])  # four calls a day for 15 days
    ledger = store.ledgers[PHONE]
    assert store.items == {}
    assert len(ledger.calls) <= 4 * 3 + 1  # the last three days, and the answered call at the boundary


def test_a_number_that_only_ever_misses_stops_growing_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(domain, "MAX_LEDGER_CALLS", 5)
    store = play([missed(f"m{i}", i) for i in range(12)])
    (callback,) = store.items.values()
    assert callback.missed_count == 10  # then the ledger is full, and nothing answered to settle it at
    assert callback.missed_callids[-1] == "m9"


def test_the_owner_is_the_responsible_as_a_login_else_who_was_rung() -> None:
    logins = {PHONE: "andy"}
    owner = owner_by(logins.get)
    assert owner(missed("m1", 0, user="g_sales")) == "andy"
    other = replace(missed("m2", 0, user="g_sales"), phone="+79990000000")
    assert owner(other) == "g_sales"
    assert owner(replace(other, user=None)) == domain.UNASSIGNED


def test_the_rung_user_is_resolved_to_a_login_and_a_group_stays_a_group() -> None:
    owner = owner_by(lambda phone: None, {"mike@tenant.ru": "mike", "102": "mike"}.get)
    assert owner(missed("m1", 0, user="mike@tenant.ru")) == "mike"
    assert owner(missed("m1", 0, user="g_sales")) == "g_sales"
    assert owner(missed("m1", 0, user="someone")) == "someone"  # unknown to the directory: as the PBX named it


@pytest.mark.parametrize(
    ("call", "owner"),
    [
        # An unknown number rang mike alone; the PBX's history names nobody (`pbx`).
        ({"user": "pbx", "pbx_user": None, "legs_rang": {"mike@tenant.ru"}}, "mike"),
        # The history names the user: that user, whatever rang.
        ({"user": "andy", "pbx_user": "andy", "legs_rang": {"mike", "olga"}}, "andy"),
        # A group call that rang one member: that member.
        ({"user": "g_sales@tenant.ru", "legs_rang": {"mike"}}, "mike"),
        # A group call that rang several: the group (from the history's user, or its `group` field).
        ({"user": "g_sales@tenant.ru", "legs_rang": {"mike", "andy"}}, "g_sales"),
        ({"user": "pbx", "group": "g_sales@tenant.ru", "legs_rang": {"mike", "andy"}}, "g_sales"),
        # Several rang and no group is known: the first login, alphabetically.
        ({"user": "pbx", "legs_rang": {"olga", "mike@tenant.ru", "pbx"}}, "mike"),
        # No leg seen (reconciliation), a group named: the group.
        ({"user": "g_sales@tenant.ru"}, "g_sales"),
        ({"user": "pbx"}, None),
    ],
)
def test_a_missed_call_is_for_the_user_that_was_rung(call: dict[str, object], owner: str | None) -> None:
    item = {"callid": "c1", "client": PHONE, "started_at": "2026-11-27T10:00:00Z", "direction": "in", **call}
    (fact,) = call_facts({**item, "outcome": "missed"}, ["CallEnded", "CallMissed"])
    assert fact.user == owner
    assert owner_by(lambda phone: None)(fact) == (owner or domain.UNASSIGNED)
    assert owner_by(lambda phone: "boss")(fact) == "boss"  # the responsible first, always


def test_whom_a_missed_call_rang_learnt_late_gives_an_unowned_call_back_its_owner() -> None:
    store = play([missed("m1", 0, user=None)])
    (callback,) = store.items.values()
    assert callback.owner == domain.UNASSIGNED
    play([missed("m1", 0, user="mike")], store)  # its ringing legs came after its history
    (callback,) = store.items.values()
    assert (callback.id, callback.owner, callback.missed_count) == (f"{PHONE}/m1", "mike", 1)
    assert store.ledgers[PHONE].opened["m1"].owner == "mike"
    play([missed("m1", 0, user="olga")], store)  # an owner, once known, stays
    assert store.items[f"{PHONE}/m1"].owner == "mike"
    # A closed call-back keeps the owner it had.
    closed = play([missed("m1", 0, user=None), answered("a1", 5)])
    play([missed("m1", 0, user="mike")], closed)
    assert closed.items[f"{PHONE}/m1"].owner == domain.UNASSIGNED


def test_a_missed_call_whose_legs_come_after_its_history_is_the_same_call_with_its_user() -> None:
    item = {"callid": "c1", "client": PHONE, "started_at": "2026-11-27T10:00:00Z", "direction": "in"}
    before = {**item, "outcome": "missed", "user": "pbx"}
    after = {**before, "legs_rang": {"mike"}}
    assert [(f.kind, f.user) for f in call_facts(after, [], before)] == [(CallKind.MISSED, "mike")]
    assert call_facts(after, [], after) == []  # nothing new about whom it rang
    assert call_facts({**after, "direction": "out"}, [], {**before, "direction": "out"}) == []
    assert call_facts(after, [], {**item, "user": "pbx"}) == []  # not yet missed before: CallMissed decides


def test_a_call_back_in_the_same_second_as_the_missed_call_closes_it_whatever_the_ids() -> None:
    # Starts are known to the second: the answered call counts as after the missed one it shares it with.
    for closer in ("a1", "z1"):
        for order in ((missed("m1", 0), answered(closer, 0)), (answered(closer, 0), missed("m1", 0))):
            (callback,) = play(order).items.values()
            assert (callback.status, callback.closed_callid, callback.seconds_to_call_back) == (
                CallbackStatus.CLOSED,
                closer,
                0,
            )
    # An unanswered attempt in that second counts as one, and still before the answer.
    for ids in (("a0", "a1"), ("z0", "b1")):
        (callback,) = play([answered(ids[1], 0), attempt(ids[0], 0), missed("m1", 0)]).items.values()
        assert (callback.status, callback.attempts) == (CallbackStatus.CLOSED, 1)
    # Precise starts (an event's arrival) are compared to the second too.
    (callback,) = play([missed("m1", 0.01), answered("a1", 0)]).items.values()
    assert callback.status is CallbackStatus.CLOSED


def test_racing_writers_retry_and_lose_nothing() -> None:
    store = MemoryStore()
    # Another writer saves between our read and our write: our guarded save fails, we read again.
    store.before_save.append(lambda: record_call(store, missed("m2", 5), owner_of))
    record_call(store, missed("m1", 0), owner_of)
    (callback,) = store.items.values()
    assert callback.missed_count == 2
    assert store.conflicts == 1


def test_writers_that_never_win_give_up_with_a_retryable_error() -> None:
    class Contended(MemoryStore):
        def save(self, ledger: Ledger, expected_version: int, changed: Sequence[Callback]) -> bool:
            return False

    with pytest.raises(domain.CallbackConflictError):
        record_call(Contended(), missed("m1", 0), owner_of)


@pytest.mark.parametrize(
    ("call", "types", "kind"),
    [
        ({"direction": "in", "outcome": "missed", "pbx_user": None, "user": "g_x@t.ru"}, ["CallMissed"], "missed"),
        ({"direction": "in", "accepted_by": "andy"}, ["CallAnswered"], "answered"),
        ({"direction": "out", "outcome": "answered", "pbx_user": "andy"}, ["CallEnded"], "answered"),
        ({"direction": "out", "outcome": "busy", "pbx_user": "andy"}, ["CallEnded"], "attempt"),
        ({"direction": "in", "outcome": "busy"}, ["CallEnded"], None),
        # The live PBX's inbound `Cancel` (the caller hung up first) and `NotFound`: missed calls too.
        ({"direction": "in", "outcome": "cancelled", "user": "g_x@t.ru"}, ["CallEnded"], "missed"),
        ({"direction": "in", "outcome": "not_found", "user": "g_x@t.ru"}, ["CallEnded"], "missed"),
        ({"direction": "in", "outcome": "cancelled"}, ["CallRinging"], None),
        ({"direction": "out", "outcome": "cancelled", "pbx_user": "andy"}, ["CallEnded"], "attempt"),
        ({"direction": "in"}, ["CallRinging"], None),
    ],
)
def test_what_a_call_change_means(call: dict[str, object], types: list[str], kind: str | None) -> None:
    item = {"callid": "c1", "client": PHONE, "started_at": "2026-11-27T10:00:00Z", **call}
    facts = call_facts(item, types)
    assert [f.kind.value for f in facts] == ([kind] if kind else [])
    if kind == "missed":
        assert facts[0].user == "g_x"
    assert call_facts({**item, "started_at": None}, types) == []


# Every order, with duplicates: the open call-back and everything stored match one replay in start order.


@dataclass(frozen=True)
class Expected:
    missed: tuple[str, ...]
    attempts: int
    closer: str | None


def reference(facts: Sequence[CallFact]) -> list[Expected]:
    """The call-backs, by definition: walk the distinct calls in start order."""
    cycles: list[Expected] = []
    current: list[str] | None = None
    tries = 0
    order = {CallKind.MISSED: 0, CallKind.ATTEMPT: 1, CallKind.ANSWERED: 2}  # within one second
    for fact in sorted({f.callid: f for f in facts}.values(), key=lambda f: (f.at, order[f.kind], f.callid)):
        if fact.kind is CallKind.MISSED:
            if current is None:
                current, tries = [], 0
            current.append(fact.callid)
        elif fact.kind is CallKind.ATTEMPT and current is not None:
            tries += 1
        elif fact.kind is CallKind.ANSWERED and current is not None:
            cycles.append(Expected(tuple(current), tries, fact.callid))
            current = None
    if current is not None:
        cycles.append(Expected(tuple(current), tries, None))
    return cycles


def seen(callback: Callback) -> Expected:
    return Expected(callback.missed_callids, callback.attempts, callback.closed_callid)


KINDS = {"m": CallKind.MISSED, "a": CallKind.ANSWERED, "o": CallKind.ATTEMPT}


@st.composite
def pushes(draw: st.DrawFn, span_minutes: int = 600) -> list[CallFact]:
    """Up to 12 distinct calls, some in the same minute (so in the same second), then shuffled and
    some delivered twice."""
    count = draw(st.integers(min_value=1, max_value=12))
    minutes = draw(st.lists(st.integers(0, span_minutes), min_size=count, max_size=count))
    kinds = draw(st.lists(st.sampled_from("mao"), min_size=count, max_size=count))
    calls = [
        CallFact(f"{kind}{i}", PHONE, KINDS[kind], at(minute), "andy")
        for i, (minute, kind) in enumerate(zip(minutes, kinds, strict=True))
    ]
    duplicates = draw(st.lists(st.sampled_from(calls), max_size=4))
    return draw(st.permutations(calls + duplicates))


def assert_consistent(store: MemoryStore, *, ids_from_openers: bool = True) -> None:
    stored = list(store.items.values())
    assert len([c for c in stored if c.status is CallbackStatus.OPEN]) <= 1
    for callback in stored:
        assert callback.id.split("/", 1)[1] in callback.missed_callids or not ids_from_openers
        assert callback.missed_count == len(callback.missed_callids)  # fewer than 50 here
        if callback.closed_at is not None:
            seconds = int((callback.closed_at - callback.first_missed_at).total_seconds())
            assert callback.seconds_to_call_back == seconds
    # What the ledger derives is what is stored.
    for callback in store.ledgers[PHONE].callbacks():
        assert store.items[callback.id] == callback


@settings(max_examples=300, deadline=None)
@given(pushes())
def test_any_order_and_any_duplicates_store_exactly_the_definition(facts: list[CallFact]) -> None:
    store = play(facts)
    stored = sorted(store.items.values(), key=lambda c: c.first_missed_at)
    assert [seen(c) for c in stored] == reference(facts)
    assert_consistent(store)


@settings(max_examples=200, deadline=None)
@given(pushes(span_minutes=14 * 24 * 60))
def test_over_weeks_the_open_call_back_is_always_exact(facts: list[CallFact]) -> None:
    store = play(facts)
    open_ = [seen(c) for c in store.items.values() if c.status is CallbackStatus.OPEN]
    assert open_ == [e for e in reference(facts) if e.closer is None]
    assert_consistent(store)


@st.composite
def pushes_seen_twice(draw: st.DrawFn) -> list[CallFact]:
    """As above, and some calls also seen as a live event first: started later (the event's arrival),
    or answered although the history said missed (an ACCEPTED after the history)."""
    facts = draw(pushes())
    echoes = []
    for fact in draw(st.lists(st.sampled_from(facts), max_size=3, unique_by=lambda f: f.callid)):
        kind = draw(st.sampled_from([fact.kind, CallKind.ANSWERED]))
        echoes.append(replace(fact, kind=kind, at=fact.at + timedelta(seconds=draw(st.integers(0, 90)))))
    return draw(st.permutations(facts + echoes))


def merged(facts: Sequence[CallFact]) -> list[CallFact]:
    seen_: dict[str, CallFact] = {}
    for fact in facts:
        seen_[fact.callid] = seen_[fact.callid].merge(fact) if fact.callid in seen_ else fact
    return list(seen_.values())


@settings(max_examples=300, deadline=None)
@given(pushes_seen_twice())
def test_calls_seen_twice_in_two_ways_settle_on_the_definition(facts: list[CallFact]) -> None:
    store = play(facts)
    expected = reference(merged(facts))
    open_ = [seen(c) for c in store.items.values() if c.status is CallbackStatus.OPEN]
    assert open_ == [e for e in expected if e.closer is None]
    current = [seen(c) for c in store.ledgers[PHONE].callbacks()]
    assert current == expected
    assert_consistent(store, ids_from_openers=False)


# The PBX's own verdict on a missed call (crmapi/v1's `missed_status`)

LEARNT = at(60)  # when reconciliation read the verdict


def told(callid: str, minutes: float, verdict: int, learnt: datetime = LEARNT) -> CallFact:
    """A missed call again, with the PBX's verdict on it."""
    return replace(missed(callid, minutes), verdict=verdict, verdict_at=learnt)


class History(MemoryStore):
    """Also keeps every status each call-back was saved with, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, list[CallbackStatus]] = {}

    def save(self, ledger: Ledger, expected_version: int, changed: Sequence[Callback]) -> bool:
        if not super().save(ledger, expected_version, changed):
            return False
        for callback in changed:
            self.statuses.setdefault(callback.id, []).append(callback.status)
        return True


def test_the_pbx_saying_called_back_closes_an_open_call_back_with_its_reason() -> None:
    store = play([missed("m1", 0), missed("m2", 5), attempt("o1", 7), told("m2", 5, 2)])
    (callback,) = store.items.values()
    assert callback.status is CallbackStatus.CLOSED
    assert (callback.closed_reason, callback.pbx_missed_status) == (domain.CloseReason.PBX_CALLED_BACK, 2)
    # The PBX does not say when or by whom: closed when we learnt it, by nobody we know, on that call.
    assert (callback.closed_by, callback.closed_callid, callback.closed_at) == (None, "m2", LEARNT)
    assert callback.seconds_to_call_back == 60 * 60
    assert callback.attempts == 1
    assert store.list_callbacks("andy", CallbackStatus.OPEN).callbacks == []


@pytest.mark.parametrize("verdict", [3, 4])
def test_the_pbx_saying_nobody_called_back_never_reopens_one_an_answered_call_closed(verdict: int) -> None:
    store = play([missed("m1", 0), answered("a1", 20)])
    before = store.items[f"{PHONE}/m1"]
    play([told("m1", 0, verdict)], store)
    after = store.items[f"{PHONE}/m1"]
    assert after.status is CallbackStatus.CLOSED
    assert (after.closed_reason, after.closed_callid, after.closed_by) == (domain.CloseReason.ANSWERED, "a1", "mike")
    # 4 (we tried) is one attempt at least, even one we never saw; 3 changes nothing.
    assert after == (before.model_copy(update={"attempts": 1}) if verdict == 4 else before)


def test_the_pbx_saying_we_tried_counts_an_attempt_and_leaves_it_open() -> None:
    store = play([missed("m1", 0), told("m1", 0, 4)])
    (callback,) = store.items.values()
    assert (callback.status, callback.attempts) == (CallbackStatus.OPEN, 1)
    play([attempt("o1", 3), attempt("o2", 4)], store)  # the attempts we see count as they are
    assert store.items[callback.id].attempts == 2


def test_an_answered_call_we_know_of_wins_over_the_pbx_and_the_call_back_closes_once() -> None:
    store = History()
    play([missed("m1", 0), told("m1", 0, 1), attempt("o1", 10), answered("a1", 20, "mike")], store)
    callback = store.items[f"{PHONE}/m1"]
    assert (callback.closed_reason, callback.closed_by, callback.closed_callid) == (
        domain.CloseReason.ANSWERED,
        "mike",
        "a1",
    )
    assert (callback.pbx_missed_status, callback.attempts, callback.seconds_to_call_back) == (None, 1, 20 * 60)
    # Closed once (by the PBX), then completed by the attempt and the answered call: never open again.
    assert store.statuses[callback.id] == [CallbackStatus.OPEN] + [CallbackStatus.CLOSED] * 3


def test_missed_calls_after_the_one_the_pbx_says_was_returned_stay_open() -> None:
    store = play([missed("m1", 0), missed("m2", 5), missed("m3", 30), told("m2", 5, 2)])
    first, second = sorted(store.items.values(), key=lambda c: c.first_missed_at)
    assert (first.id, first.status, first.missed_callids) == (f"{PHONE}/m1", CallbackStatus.CLOSED, ("m1", "m2"))
    assert (second.id, second.status, second.missed_callids) == (f"{PHONE}/m3", CallbackStatus.OPEN, ("m3",))


def test_a_verdict_only_moves_up_and_the_first_closing_one_is_kept() -> None:
    store = History()
    play([missed("m1", 0), told("m1", 0, 2), told("m1", 0, 3), told("m1", 0, 1, at(90)), told("m1", 0, 2)], store)
    callback = store.items[f"{PHONE}/m1"]
    assert (callback.status, callback.pbx_missed_status, callback.closed_at) == (CallbackStatus.CLOSED, 2, LEARNT)
    assert store.statuses[callback.id] == [CallbackStatus.OPEN, CallbackStatus.CLOSED]  # the rest changed nothing


@pytest.mark.parametrize(
    ("before", "after", "kind", "verdict"),
    [
        # A missed call reconciliation gave the PBX's verdict: the same missed call, with it.
        ({"missed_status": None}, {"missed_status": "2"}, CallKind.MISSED, 2),
        ({"missed_status": "3"}, {"missed_status": "1"}, CallKind.MISSED, 1),
        ({"missed_status": "3"}, {"missed_status": "3"}, None, None),  # nothing new
        ({"missed_status": None}, {"missed_status": "x"}, None, None),  # not a verdict
        # An outbound call to a number the PBX owes a call-back, pushed with missedStatus=2: an attempt.
        ({"direction": "out", "outcome": "busy"}, {"missed_status": "2"}, CallKind.ATTEMPT, None),
        ({"direction": "out", "outcome": "answered"}, {"missed_status": "2"}, None, None),  # the events close it
    ],
)
def test_what_the_pbx_verdict_on_a_call_means(
    before: dict[str, object], after: dict[str, object], kind: CallKind | None, verdict: int | None
) -> None:
    old = {
        "callid": "c1",
        "client": PHONE,
        "started_at": "2026-11-27T10:00:00Z",
        "direction": "in",
        "outcome": "missed",
        "user": "andy@tenant",
        "history_at": "2026-11-27T10:01:00Z",
        **before,
    }
    new = {**old, **after, "missed_status_at": "2026-11-27T11:00:00Z"}
    facts = call_facts(new, [], old)
    assert [f.kind for f in facts] == ([kind] if kind else [])
    if kind is CallKind.MISSED:
        assert (facts[0].verdict, facts[0].verdict_at, facts[0].user) == (verdict, LEARNT, "andy")


@st.composite
def pushes_and_verdicts(draw: st.DrawFn) -> list[CallFact]:
    """As `pushes`, and some missed calls seen again with a verdict of the PBX, in any order."""
    facts = draw(pushes())
    missed_ = [f for f in facts if f.kind is CallKind.MISSED]
    verdicts = [
        replace(fact, verdict=draw(st.sampled_from([1, 2, 3, 4])), verdict_at=fact.at + timedelta(hours=1))
        for fact in (draw(st.lists(st.sampled_from(missed_), max_size=4)) if missed_ else [])
    ]
    return draw(st.permutations(facts + verdicts))


@settings(max_examples=300, deadline=None)
@given(pushes_and_verdicts())
def test_verdicts_in_any_order_close_once_never_reopen_and_settle_on_one_result(facts: list[CallFact]) -> None:
    store = History()
    play(facts, store)
    for statuses in store.statuses.values():
        closed_at = statuses.index(CallbackStatus.CLOSED) if CallbackStatus.CLOSED in statuses else len(statuses)
        assert CallbackStatus.OPEN not in statuses[closed_at:]  # never reopened
    in_order = play(sorted(facts, key=lambda f: (f.at, f.callid, f.verdict or 0)))

    def outcome(c: Callback) -> tuple[object, ...]:  # all but the id, which the first arrival decides
        return (seen(c), c.status, c.closed_reason, c.pbx_missed_status, c.closed_at, c.first_missed_at)

    assert [outcome(c) for c in store.ledgers[PHONE].callbacks()] == [
        outcome(c) for c in in_order.ledgers[PHONE].callbacks()
    ]
    answered_ = {f.callid for f in facts if f.kind is CallKind.ANSWERED}
    for callback in store.ledgers[PHONE].callbacks():
        if callback.closed_reason is domain.CloseReason.PBX_CALLED_BACK:
            assert callback.closed_callid in callback.missed_callids
            assert callback.pbx_missed_status in (1, 2)
        elif callback.status is CallbackStatus.CLOSED:
            assert callback.closed_callid in answered_
