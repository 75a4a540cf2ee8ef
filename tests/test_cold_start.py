"""What a container does at init (`prepare`) and after a SnapStart restore (`after_restore`)."""

from __future__ import annotations

import logging
import random
import sys
import types
from typing import Any

import pytest

from tests.conftest import CONTACT, Webhook, drop_process_caches


def test_init_builds_everything_and_asks_aws_nothing(webhook: Webhook, dynamodb_requests: list[str]) -> None:
    """Nothing fetched or connected at init: a SnapStart snapshot holds no key and no connection."""
    from pbxbridge.aws import session
    from pbxbridge.keys import _keys_cache
    from pbxbridge.webhook import default_dependencies, prepare

    drop_process_caches()
    sent: list[str] = []
    session().events.register("before-send", lambda request, **_: sent.append(request.url))
    prepare()
    assert sent == []
    assert _keys_cache == {}
    assert default_dependencies.cache_info().currsize == 1  # built, and kept for the first push
    assert webhook.push(**CONTACT).status == 200
    assert len(sent) >= 2  # the first push asks SSM for the keys and DynamoDB for the contact


def test_prepare_registers_the_restore_hook_on_snapstart(monkeypatch: pytest.MonkeyPatch, webhook: Webhook) -> None:
    from pbxbridge.webhook import after_restore, prepare

    registered: list[Any] = []
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    prepare()
    assert registered == [after_restore]


def test_after_restore_reseeds_forgets_keys_and_closes_connections(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    from pbxbridge.keys import _keys_cache
    from pbxbridge.webhook import after_restore

    assert webhook.push(**CONTACT).status == 200  # keys fetched, connections opened
    assert _keys_cache
    state = random.getstate()
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        caplog.clear()
        webhook.push(**CONTACT)
        assert "Starting new HTTP connection" not in caplog.text  # kept alive, as in a warm container
        after_restore()
        assert random.getstate() != state
        assert _keys_cache == {}
        caplog.clear()
        assert webhook.push(**CONTACT).status == 200
        assert "Starting new HTTP connection" in caplog.text  # a restored copy opens its own
