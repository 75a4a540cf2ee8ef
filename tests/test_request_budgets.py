"""Requests per push, counted on the webhook's own botocore client: the budgets of the design."""

from __future__ import annotations

from typing import Any

from tests.conftest import CONTACT, EVENT, HISTORY, PREVIOUS_CRM_TOKEN, Webhook


def warm(webhook: Webhook) -> None:
    # A container's first pushes read the keys (SSM) and the directory (one Query), both cached for
    # minutes; the budgets are per warm push.
    webhook.push(**{**CONTACT, "callid": "warm-up"})
    webhook.push(**{**HISTORY, "callid": "warm-up"})


def test_the_directory_is_read_once_per_container_not_per_push(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    for index in range(5):
        webhook.push(**{**HISTORY, "callid": f"d{index}"})
        webhook.push(**{**EVENT, "callid": f"d{index}"})
    assert dynamodb_requests.count("Query") == 1


def test_contact_is_exactly_one_read(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    warm(webhook)
    dynamodb_requests.clear()
    webhook.push(**CONTACT)
    assert dynamodb_requests == ["GetItem"]


def test_history_is_one_write(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    warm(webhook)
    dynamodb_requests.clear()
    webhook.push(**HISTORY)
    assert dynamodb_requests == ["UpdateItem"]


def test_duplicate_history_is_still_one_write(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    webhook.push(**HISTORY)
    dynamodb_requests.clear()
    webhook.push(**HISTORY)
    assert dynamodb_requests == ["UpdateItem"]


def test_event_is_at_most_two_writes(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    warm(webhook)
    for event_type in ("INCOMING", "ACCEPTED", "COMPLETED", "CANCELLED", "OUTGOING"):
        dynamodb_requests.clear()
        webhook.push(**{**EVENT, "type": event_type})
        assert dynamodb_requests == ["PutItem", "UpdateItem"], event_type
    dynamodb_requests.clear()
    webhook.push(**{**EVENT, "type": "TRANSFERRED", "second_callid": "B2"})
    assert dynamodb_requests == ["PutItem", "UpdateItem"]


def test_rating_is_one_write(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    warm(webhook)
    dynamodb_requests.clear()
    webhook.push(cmd="rating", callid=HISTORY["callid"], rating="4")
    assert dynamodb_requests == ["UpdateItem"]


def test_rejected_pushes_make_no_request(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    warm(webhook)
    dynamodb_requests.clear()
    webhook.push(token="wrong", **HISTORY)
    webhook.push(**{**HISTORY, "phone": "nope"})
    webhook.push(**{**HISTORY, "cmd": "nope"})
    assert dynamodb_requests == []


def count_ssm_requests() -> tuple[list[str], Any]:
    from pbxbridge.keys import ssm_client

    made: list[str] = []

    def count(model: Any, **_: Any) -> None:
        made.append(model.name)

    events = ssm_client().meta.events
    events.register("before-call.ssm", count)
    return made, lambda: events.unregister("before-call.ssm", count)


def test_keys_are_read_once_and_cached(webhook: Webhook) -> None:
    made, stop = count_ssm_requests()
    try:
        for _ in range(5):
            webhook.push(**CONTACT)
        assert made == ["GetParameters"]
    finally:
        stop()


def test_a_missing_previous_key_is_cached_too(webhook: Webhook, moto_url: str) -> None:
    """A rotation left half done (the previous key's parameter deleted) must not send every push to SSM."""
    from local.aws import client

    client("ssm", moto_url).delete_parameter(Name="/pbxbridge/crm-token-previous")
    made, stop = count_ssm_requests()
    try:
        for _ in range(5):
            assert webhook.push(**CONTACT).status == 200
        assert webhook.push(token=PREVIOUS_CRM_TOKEN, **CONTACT).status == 401
        assert made == ["GetParameters"]
    finally:
        stop()
