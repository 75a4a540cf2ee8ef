"""Duplicated, reordered and concurrent pushes leave one correct record."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbxbridge.domain.calls import record_event, record_history
from pbxbridge.protocol.webhook import EventPush, HistoryPush, read_push
from tests.conftest import HISTORY, Webhook

CALLID = "group-call-1"
_STABLE = (
    "callid",
    "client",
    "client_raw",
    "direction",
    "status",
    "outcome",
    "user",
    "pbx_user",
    "started_at",
    "duration",
    "link",
    "legs_rang",
    "legs_cancelled",
    "accepted_by",
    "live_state",
    "transferred_to",
)


def push(**fields: str) -> Any:
    return read_push({"callid": CALLID, "phone": "79101234567", **fields}, "RU")


# A group call: andy and mike ring, andy answers, mike's leg is cancelled, the call completes.
GROUP_CALL: list[Any] = [
    push(cmd="event", type="INCOMING", user="andy"),
    push(cmd="event", type="INCOMING", user="mike"),
    push(cmd="event", type="ACCEPTED", user="andy"),
    push(cmd="event", type="CANCELLED", user="mike"),
    push(cmd="event", type="COMPLETED", user="andy"),
    push(
        cmd="history",
        type="in",
        status="Success",
        user="andy@tenant.example.ru",
        start="20260825T113440Z",
        duration="42",
        link="https://tenant.example.ru/rec/1.mp3",
    ),
]


def apply(store: Any, item: Any) -> bool:
    now = datetime.now(tz=UTC)
    if isinstance(item, HistoryPush):
        return record_history(store, item, now)
    assert isinstance(item, EventPush)
    return record_event(store, item, now)


def stable_view(call: dict[str, Any]) -> dict[str, Any]:
    """The call without the receipt times, which differ between runs by design."""
    return {key: call[key] for key in _STABLE if key in call}


@pytest.fixture
def in_order(call_store: Any) -> dict[str, Any]:
    for item in GROUP_CALL:
        apply(call_store, item)
    return stable_view(call_store.get_call(CALLID))


def test_a_group_call_in_order(in_order: dict[str, Any]) -> None:
    assert in_order == {
        "callid": CALLID,
        "client": "+79101234567",
        "client_raw": "79101234567",
        "direction": "in",
        "status": "Success",
        "outcome": "answered",
        "user": "andy@tenant.example.ru",
        "pbx_user": "andy",
        "started_at": "2026-08-25T11:34:40Z",
        "duration": 42,
        "link": "https://tenant.example.ru/rec/1.mp3",
        "legs_rang": ["andy", "mike"],
        "legs_cancelled": ["mike"],
        "accepted_by": "andy",
        "live_state": "COMPLETED",
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(GROUP_CALL))), repeats=st.lists(st.integers(0, len(GROUP_CALL) - 1), max_size=4))
def test_any_order_with_duplicates_gives_the_same_call(
    call_store: Any, in_order: dict[str, Any], order: list[int], repeats: list[int]
) -> None:
    from pbxbridge.storage.dynamodb import dynamodb_client

    # Each example starts from an empty call and timeline: the fixture's in-order call is the expected result.
    client = dynamodb_client()
    client.delete_item(TableName=call_store._calls_table, Key={"callid": {"S": CALLID}})
    for entry in call_store.timeline(CALLID):
        client.delete_item(
            TableName=call_store._events_table,
            Key={"callid": {"S": CALLID}, "event_key": {"S": entry["event_key"]}},
        )
    for index in [*order, *repeats]:
        apply(call_store, GROUP_CALL[index])
    assert stable_view(call_store.get_call(CALLID)) == in_order


def test_a_late_incoming_never_undoes_accepted(call_store: Any) -> None:
    apply(call_store, push(cmd="event", type="ACCEPTED", user="andy"))
    apply(call_store, push(cmd="event", type="INCOMING", user="andy"))
    assert call_store.get_call(CALLID)["live_state"] == "ACCEPTED"


def test_cancelled_legs_alone_never_mark_a_call_missed(call_store: Any) -> None:
    for user in ("andy", "mike"):
        apply(call_store, push(cmd="event", type="INCOMING", user=user))
        apply(call_store, push(cmd="event", type="CANCELLED", user=user))
    call = call_store.get_call(CALLID)
    assert "outcome" not in call
    assert call["live_state"] == "RINGING"
    apply(
        call_store, push(cmd="history", type="in", status="missed", user="pbx", start="20260825T113440Z", duration="9")
    )
    call = call_store.get_call(CALLID)
    assert call["outcome"] == "missed"
    assert "pbx_user" not in call  # `pbx` is nobody
    # No COMPLETED event came (lost, or never sent for a missed call): the outcome says it is over.
    assert call["live_state"] == "COMPLETED"


def test_listed_calls_carry_their_live_state(call_store: Any) -> None:
    apply(call_store, push(cmd="event", type="INCOMING", user="andy"))
    apply(call_store, push(cmd="event", type="ACCEPTED", user="andy"))
    listed = call_store.calls_by_client("+79101234567").calls
    assert [(call["callid"], call["live_state"]) for call in listed] == [(CALLID, "ACCEPTED")]


def test_a_non_empty_user_does_not_mean_answered(call_store: Any) -> None:
    apply(
        call_store, push(cmd="history", type="in", status="missed", user="andy", start="20260825T113440Z", duration="9")
    )
    assert call_store.get_call(CALLID)["outcome"] == "missed"


def test_transferred_links_the_second_call(call_store: Any) -> None:
    apply(call_store, push(cmd="event", type="TRANSFERRED", user="andy", second_callid="second-1"))
    apply(call_store, push(cmd="event", type="TRANSFERRED", user="andy", second_callid="second-2"))
    assert call_store.get_call(CALLID)["transferred_to"] == ["second-1", "second-2"]


def test_history_merges_with_event_data_whatever_the_order(call_store: Any) -> None:
    history = push(cmd="history", type="in", status="Success", user="andy", start="20260825T113440Z", duration="42")
    apply(call_store, history)
    apply(call_store, push(cmd="event", type="INCOMING", user="andy", diversion="74996861574"))
    call = call_store.get_call(CALLID)
    assert call["started_at"] == "2026-08-25T11:34:40Z"  # history's start, not the event's receipt
    assert call["diversion"] == "+74996861574"
    assert call["diversion_raw"] == "74996861574"
    assert call["outcome"] == "answered"


def test_the_timeline_keeps_arrival_order_and_drops_duplicates(call_store: Any) -> None:
    sequence = [GROUP_CALL[i] for i in (1, 0, 0, 3, 2, 4, 4)]
    duplicates = [apply(call_store, item) for item in sequence]
    assert duplicates == [False, False, True, False, False, False, True]
    timeline = call_store.timeline(CALLID)
    assert [(e["type"], e["user"]) for e in timeline] == [
        ("INCOMING", "mike"),
        ("INCOMING", "andy"),
        ("CANCELLED", "mike"),
        ("ACCEPTED", "andy"),
        ("COMPLETED", "andy"),
    ]


def test_duplicate_history_is_detected(webhook: Webhook, call_store: Any) -> None:
    from pbxbridge.domain.calls import record_history as record

    history = read_push(HISTORY, "RU")
    assert isinstance(history, HistoryPush)
    assert record(call_store, history, datetime.now(tz=UTC)) is False
    assert record(call_store, history, datetime.now(tz=UTC)) is True


def run_at_once(actions: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_concurrent_pushes_of_one_call_leave_one_correct_record(call_store: Any, in_order: dict[str, Any]) -> None:
    from pbxbridge.storage.dynamodb import dynamodb_client

    client = dynamodb_client()
    for _ in range(5):
        client.delete_item(TableName=call_store._calls_table, Key={"callid": {"S": CALLID}})
        # Every push of the call twice, all at the same moment from separate threads.
        run_at_once([functools.partial(apply, call_store, item) for item in GROUP_CALL * 2])
        assert stable_view(call_store.get_call(CALLID)) == in_order


def test_two_threads_pushing_the_same_history(call_store: Any) -> None:
    history = read_push({**HISTORY, "callid": "same-history"}, "RU")
    duplicates = run_at_once([lambda: apply(call_store, history), lambda: apply(call_store, history)])
    assert sorted(duplicates) == [False, True]
    assert call_store.get_call("same-history")["outcome"] == "answered"
