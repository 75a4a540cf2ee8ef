"""Requests per push, counted on the webhook's own botocore client: the budgets of the design."""

from __future__ import annotations

from typing import Any

from tests.conftest import CONTACT, EVENT, HISTORY, Webhook


def warm(webhook: Webhook) -> None:
    # The first push reads the keys from SSM (cached afterwards); the budgets are per warm push.
    webhook.push(**{**CONTACT, "callid": "warm-up"})


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


def test_keys_are_read_once_and_cached(webhook: Webhook, aws: dict[str, str]) -> None:
    from pbxbridge.keys import fetch_keys_from_ssm

    ssm_calls: list[str] = []
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    provider: Any = DEFAULT_PROVIDERS.get("ssm") or parameters.SSMProvider()
    DEFAULT_PROVIDERS["ssm"] = provider

    def count(model: Any, **_: Any) -> None:
        ssm_calls.append(model.name)

    provider.client.meta.events.register("before-call.ssm", count)
    try:
        for _ in range(5):
            fetch_keys_from_ssm("/pbxbridge/crm-token", "/pbxbridge/crm-token-previous", 300)
        assert ssm_calls == ["GetParameters"]
        for _ in range(3):
            webhook.push(**CONTACT)
        assert ssm_calls == ["GetParameters"]
    finally:
        provider.client.meta.events.unregister("before-call.ssm", count)
