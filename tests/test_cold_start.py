"""What a container does at init (`prepare`) and after a SnapStart restore (`after_restore`)."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import types
from typing import Any

import pytest

from tests.conftest import CONTACT, EVENT, HISTORY, Webhook, drop_process_caches


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


def test_trimmed_service_models_are_botocores_own() -> None:
    """The trimmed models the Session reads are botocore's, cut to the operations we call: regenerated
    from the installed botocore, they are what is committed (`python -m local.service_models`)."""
    from local.service_models import expected_files

    files = expected_files()
    assert files
    for path, text in files.items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m local.service_models"


def test_the_session_builds_its_services_from_the_trimmed_models_and_no_other() -> None:
    import boto3
    from botocore.exceptions import UnknownServiceError

    from local.service_models import OPERATIONS
    from pbxbridge.aws import session

    for service, operations in OPERATIONS.items():
        trimmed = session().client(service, region_name="eu-central-1")
        assert sorted(trimmed.meta.service_model.operation_names) == sorted(operations)
    assert session().get_available_services() == sorted(OPERATIONS)
    # Its endpoints.json knows only those: a client of another service is refused, not misrouted.
    with pytest.raises(UnknownServiceError, match="dynamodb, ssm"):
        session().client("s3", region_name="us-east-1")
    # Other Sessions read botocore's whole models.
    plain = boto3.session.Session().client("dynamodb", region_name="eu-central-1")
    assert "Scan" in plain.meta.service_model.operation_names


def test_the_session_never_lists_botocores_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore lists its ~450 services to learn whether it knows one (~17 ms of a cold start)."""
    from botocore.loaders import Loader

    from pbxbridge.aws import session

    def listed(*_: Any, **__: Any) -> list[str]:
        raise AssertionError("botocore's services were listed")

    monkeypatch.setattr(Loader, "list_available_services", listed)
    fresh = session.__wrapped__()
    for service in ("dynamodb", "ssm"):
        assert fresh.client(service, region_name="eu-central-1").meta.service_model.service_name == service


@pytest.fixture
def aws_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's own endpoints, not the embedded AWS the other tests point every client at."""
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)


class _Sent(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _where_sent(client: Any, operation: str, params: dict[str, Any]) -> str:
    """Where `client` would send the request and how it would sign it (or the error resolving it),
    without sending it."""

    def stop(request: Any, **_: Any) -> None:
        raise _Sent(request)

    client.meta.events.register("before-send", stop)
    try:
        getattr(client, operation)(**params)
    except _Sent as sent:
        authorization = sent.request.headers["Authorization"].decode()
        scope = authorization.split("Credential=")[1].split(",")[0].split("/", 2)[2]  # key/date/(region/service/...)
        return f"{sent.request.url} signed for {scope}"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    raise AssertionError("the request was not sent")


@pytest.mark.parametrize(
    "region", ["eu-central-1", "us-east-1", "ap-southeast-7", "cn-north-1", "us-gov-west-1", "aws-global"]
)
@pytest.mark.parametrize(
    "variant",
    [{}, {"use_fips_endpoint": True}, {"use_dualstack_endpoint": True}, {"account_id": "111122223333"}],
    ids=["plain", "fips", "dualstack", "account"],
)
@pytest.mark.usefixtures("aws_endpoints")
def test_the_sessions_clients_send_requests_where_botocores_would(region: str, variant: dict[str, Any]) -> None:
    """The Session's loader reads a cut-down endpoints.json: every request of our clients still goes
    where a plain Session's would, signed for the same region and service, in every partition and
    variant (DynamoDB routes by account when the credentials carry one)."""
    import boto3
    from botocore.config import Config

    from pbxbridge.aws import session

    account = variant.get("account_id")
    config = Config(**{key: value for key, value in variant.items() if key != "account_id"})
    credentials = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"}
    calls: dict[str, tuple[str, dict[str, Any]]] = {
        "dynamodb": ("get_item", {"TableName": "calls", "Key": {"callid": {"S": "1"}}}),
        "ssm": ("get_parameters", {"Names": ["/pbxbridge/key"]}),
    }
    for service, (operation, params) in calls.items():
        ours = session().client(service, region_name=region, config=config, **credentials, aws_account_id=account)
        plain = boto3.session.Session().client(
            service, region_name=region, config=config, **credentials, aws_account_id=account
        )
        assert _where_sent(ours, operation, params) == _where_sent(plain, operation, params)


@pytest.mark.usefixtures("aws_endpoints")
def test_a_users_own_endpoints_data_still_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """An endpoints.json in AWS_DATA_PATH overrides botocore's, and so ours."""
    import json

    from local.service_models import trimmed_endpoints
    from pbxbridge.aws import session

    endpoints = trimmed_endpoints(("dynamodb",))
    aws = next(partition for partition in endpoints["partitions"] if partition["partition"] == "aws")
    aws["services"]["dynamodb"]["endpoints"]["eu-central-1"] = {"hostname": "dynamodb.internal.example"}
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    client = session.__wrapped__().client(
        "dynamodb", region_name="eu-central-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    where = _where_sent(client, "get_item", {"TableName": "calls", "Key": {"callid": {"S": "1"}}})
    assert where.startswith("https://dynamodb.internal.example/"), where


def test_every_operation_the_package_calls_is_in_its_trimmed_model() -> None:
    """A call missing from the trimmed model would fail only when it is made: find them in the source."""
    import re
    from pathlib import Path

    import botocore

    from local.service_models import OPERATIONS

    package = Path(__file__).resolve().parent.parent / "layers" / "pbxbridge" / "pbxbridge"
    source = "\n".join(path.read_text() for path in package.rglob("*.py"))
    for service, operations in OPERATIONS.items():
        allowed = {botocore.xform_name(name) for name in operations}
        every = {botocore.xform_name(name) for name in _full_model_operations(service)}
        called = {name for name in re.findall(r"\.([a-z_]+)\(", source) if name in every}
        # Called for us: boto3's BatchWriter sends batch_write_item.
        called |= {"batch_write_item"} & every if "BatchWriter(" in source else set()
        assert called <= allowed, f"{service}: add {sorted(called - allowed)} to local/service_models.OPERATIONS"


def _full_model_operations(service: str) -> list[str]:
    import boto3

    return list(boto3.session.Session().client(service, region_name="eu-central-1").meta.service_model.operation_names)


# What `contact` never uses: the write path's domain, scenarios and calls store; the `cmd=webhook` pushes'.
WRITE_PATH_MODULES = (
    "pbxbridge.domain.calls",
    "pbxbridge.domain.scenarios",
    "pbxbridge.storage.calls",
    "pbxbridge.domain.webhook_pushes",
    "pbxbridge.storage.webhook_pushes",
)


def test_a_cold_container_imports_no_write_path_until_a_write_arrives(webhook: Webhook) -> None:
    """Import and init in a fresh process, as Lambda does: the write path is not on the import path."""
    probe = (
        "import sys; from pbxbridge.webhook import prepare; prepare(); "
        "print(' '.join(m for m in sys.modules if m.startswith('pbxbridge')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(result.stdout.split())
    assert "pbxbridge.storage.contacts" in loaded  # the probe saw the package
    assert loaded.isdisjoint(WRITE_PATH_MODULES)
    assert loaded.isdisjoint({"pbxbridge.function_settings"})  # the other functions' settings


def test_contact_never_builds_the_write_path_and_the_first_write_does(webhook: Webhook, call_store: Any) -> None:
    from pbxbridge.webhook import default_dependencies, prepare

    drop_process_caches()
    prepare()
    deps = default_dependencies()
    assert "writes" not in vars(deps)
    assert webhook.push(**CONTACT).status == 200
    assert "writes" not in vars(deps)
    assert webhook.push(**HISTORY).status == 200
    assert "writes" in vars(deps)  # built by the first write, and kept for the next ones
    assert call_store.get_call(HISTORY["callid"])["outcome"] == "answered"
    assert webhook.push(**EVENT).status == 200
    assert [entry["type"] for entry in call_store.timeline(EVENT["callid"])] == ["INCOMING"]


def test_an_init_nobody_waits_on_builds_the_write_path(monkeypatch: pytest.MonkeyPatch, webhook: Webhook) -> None:
    from pbxbridge.webhook import default_dependencies, prepare

    drop_process_caches()
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")
    prepare()
    assert "writes" in vars(default_dependencies())
    assert "webhook_pushes" in vars(default_dependencies())


def test_contact_never_builds_the_webhook_pushes_store_and_the_first_webhook_push_does(webhook: Webhook) -> None:
    from pbxbridge.webhook import default_dependencies, prepare

    drop_process_caches()
    prepare()
    deps = default_dependencies()
    assert webhook.push(**CONTACT).status == 200
    assert "webhook_pushes" not in vars(deps)
    assert webhook.push(cmd="webhook", type="sipregs_error", id="cold-1").status == 200
    assert "webhook_pushes" in vars(deps)
    assert "writes" not in vars(deps)  # the calls' write path is not built for it either
