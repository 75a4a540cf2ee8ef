"""Shared fixtures: one moto server for the session, fresh tables and keys for every test.

Everything is provisioned from template.yaml, and the webhook is the template's own handler.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from local.apigw import http_api_event, http_response
from local.aws import create_tables, free_port, start_moto, store_crm_keys, use_local_aws
from local.lambdas import LocalFunction
from local.template import Template

if TYPE_CHECKING:
    from local.stack import LocalStack

CRM_TOKEN = "test-crm-token-3f9a"
TEST_BUDGETS = {"CONTACT_BUDGET_SECONDS": "5", "CONTACT_ATTEMPT_SECONDS": "2.5", "WRITE_BUDGET_SECONDS": "8"}
PREVIOUS_CRM_TOKEN = "test-previous-token-77c1"


@pytest.fixture(scope="session")
def template() -> Template:
    # A previous key parameter is configured, as during a rotation, and a PBX (without one, the
    # template leaves out reconciliation); tests that talk to the PBX point PBX_URL at a simulator.
    return Template(
        parameters={
            "CrmTokenPreviousParameterName": "/pbxbridge/crm-token-previous",
            "PbxUrl": "https://tenant.example.ru",
        }
    )


@pytest.fixture(scope="session", autouse=True)
def moto_url(template: Template) -> Iterator[str]:
    """The embedded AWS, and the functions' environment set before any pbxbridge module is imported
    (as in Lambda, where Powertools reads it at import)."""
    server, url = start_moto(free_port())
    use_local_aws(url)
    template.endpoint = url
    for spec in template.functions().values():
        os.environ.update(spec.environment)
    # Every function and the embedded AWS share this process (and its GIL) on a machine other test runs
    # share too: the webhook's push budgets are for Lambda's own environment. test_deadlines sets them
    # back to the production defaults, and `make bench faults` measures them.
    os.environ.update(TEST_BUDGETS)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def webhook_function(moto_url: str, template: Template) -> LocalFunction:
    return LocalFunction(template.functions()["WebhookFunction"])


@pytest.fixture
def aws(moto_url: str, template: Template) -> dict[str, str]:
    """Empty tables and the two keys, as the template defines them; caches of the last test dropped."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    tables = create_tables(template, moto_url)
    store_crm_keys(template, moto_url, CRM_TOKEN, PREVIOUS_CRM_TOKEN)
    drop_process_caches(keep_clients=True)
    return tables


def drop_process_caches(keep_clients: bool = False) -> None:
    """Forget what a warm Lambda environment keeps: keys, settings and (optionally) AWS clients."""
    from pbxbridge import commands, overdue, recorder, stream
    from pbxbridge.keys import clear_key_cache, ssm_client
    from pbxbridge.pbx.api import forget_detected
    from pbxbridge.pbx.configured import client_for
    from pbxbridge.settings import commands_settings, history_sync_settings, webhook_settings
    from pbxbridge.storage.dynamodb import batch_dynamodb_client, dynamodb_client
    from pbxbridge.storage.s3 import s3_client
    from pbxbridge.webhook import default_dependencies
    from pbxbridge.widget import api as widget_api
    from pbxbridge.widget import push as widget_push
    from pbxbridge.widget import settings as widget_settings
    from pbxbridge.widget import socket as widget_socket

    parameters.clear_caches()  # type: ignore[no-untyped-call]
    clear_key_cache()
    forget_detected()
    widget_settings.clear_caches()
    for widget_cache in (
        widget_api.default_dependencies,
        widget_push.default_dependencies,
        widget_socket.default_dependencies,
    ):
        widget_cache.cache_clear()
    for cache in (
        webhook_settings,
        commands_settings,
        history_sync_settings,
        default_dependencies,
        client_for,
        commands.default_dependencies,
        recorder.default_dependencies,
        stream.default_dependencies,
        overdue.default_dependencies,
    ):
        cache.cache_clear()
    if not keep_clients:
        from pbxbridge.aws import session

        session.cache_clear()
        DEFAULT_PROVIDERS.clear()
        ssm_client.cache_clear()
        dynamodb_client.cache_clear()
        batch_dynamodb_client.cache_clear()
        s3_client.cache_clear()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Webhook:
    """Pushes through the template's handler, as API Gateway would deliver them."""

    function: LocalFunction
    path: str = "/pbx"
    requests_made: list[str] = field(default_factory=list)

    def raw(self, body: bytes | None, content_type: str | None = "application/x-www-form-urlencoded") -> Answer:
        headers = [("content-type", content_type)] if content_type else []
        event = http_api_event("POST", self.path, self.path, body, headers=headers)
        return Answer(*http_response(self.function.invoke(event)))

    def push(self, token: str | None = CRM_TOKEN, **fields: Any) -> Answer:
        if token is not None:
            fields["crm_token"] = token
        return self.raw(urlencode(fields).encode())

    def push_json(self, token: str | None = CRM_TOKEN, **fields: Any) -> Answer:
        if token is not None:
            fields["crm_token"] = token
        return self.raw(json.dumps(fields).encode(), "application/json")


@pytest.fixture
def webhook(aws: dict[str, str], webhook_function: LocalFunction) -> Webhook:
    return Webhook(webhook_function)


@pytest.fixture
def dynamodb_requests(aws: dict[str, str]) -> Iterator[list[str]]:
    """The names of the DynamoDB operations the webhook's client makes during the test."""
    from pbxbridge.storage.dynamodb import dynamodb_client

    made: list[str] = []

    def count(model: Any, **_: Any) -> None:
        made.append(model.name)

    events = dynamodb_client().meta.events
    events.register("before-call.dynamodb", count)
    yield made
    events.unregister("before-call.dynamodb", count)


@pytest.fixture
def call_store(aws: dict[str, str]) -> Any:
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    return DynamoCallStore(dynamodb_client(), aws["CallsTable"], aws["CallEventsTable"])


@pytest.fixture
def contact_store(aws: dict[str, str]) -> Any:
    from pbxbridge.storage.contacts import DynamoContactStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    return DynamoContactStore(dynamodb_client(), aws["ContactsTable"])


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the functions' Powertools loggers write, as it would reach CloudWatch."""
    buffer = io.StringIO()
    swapped = []
    for name in ("pbxbridge", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                swapped.append((handler, handler.setStream(buffer)))
    yield buffer
    for handler, stream in swapped:
        handler.setStream(stream)


HISTORY = {
    "cmd": "history",
    "type": "out",
    "status": "Success",
    "phone": "79101234567",
    "user": "user",
    "start": "20170703T121110Z",
    "duration": "124",
    "link": "https://link/file.mp3",
    "callid": "B10D0EB124F4E64AF4EA-1511",
}
EVENT = {
    "cmd": "event",
    "type": "INCOMING",
    "phone": "79101234567",
    "user": "andy",
    "callid": "B10D0EB124F4E64AF4EA-1511",
}
CONTACT = {"cmd": "contact", "phone": "79101234567", "callid": "B10D0EB124F4E64AF4EA-1511"}

Pusher = Callable[..., Answer]


@contextlib.contextmanager
def running_stack(moto_url: str, crm_token: str, **options: Any) -> Iterator[LocalStack]:
    """The local stack as `make run` starts it (real HTTP server, simulator, pollers, the widget's
    WebSocket), stopped whole afterwards and the environment put back. `options` go to `start`."""
    from local.stack import serving

    saved = dict(os.environ)
    # moto keeps its state per process, shared by every server in it: start the stack on a clean one.
    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    drop_process_caches()  # clients made for the session's moto server must not be reused
    try:
        with serving(port=free_port(), dynamodb_port=free_port(), crm_token=crm_token, **options) as stack:
            yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        drop_process_caches()  # and the stack's clients must not outlive it


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check` until it gives something true or `timeout` passes; what it gave last."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(moto_url: str) -> Iterator[LocalStack]:
    """The local stack, per module."""
    with running_stack(moto_url, "e2e-key") as stack:
        yield stack
