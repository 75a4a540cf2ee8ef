"""The template is deployable and least-privilege; dependencies have one source; docs do not drift."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from local.template import Template

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    return Template().body


def resources(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: res for name, res in body["Resources"].items() if res["Type"] == kind}


def test_runtime_architecture_and_no_xray_sdk(body: dict[str, Any]) -> None:
    function_globals = body["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == {"Ref": "Tracing"}
    assert body["Parameters"]["Tracing"]["Default"] == "PassThrough"  # on, it needs X-Ray's "*" (docs/operations.md)
    sources = "\n".join(p.read_text() for p in (REPO / "layers/pbxbridge/pbxbridge").rglob("*.py"))
    assert "Tracer" not in sources
    assert "aws_xray_sdk" not in sources


def test_layer_is_a_makefile_arm64_build_without_boto3(body: dict[str, Any]) -> None:
    layer = body["Resources"]["PbxbridgeLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    makefile = (REPO / layer["Properties"]["ContentUri"] / "Makefile").read_text()
    assert "--invalidation-mode unchecked-hash" in makefile
    requirements = (REPO / "layers/pbxbridge/requirements.txt").read_text().lower()
    assert "boto3" not in re.sub(r"#.*", "", requirements)


def test_tables_are_durable(body: dict[str, Any]) -> None:
    tables = resources(body, "AWS::DynamoDB::Table")
    assert set(tables) == {
        "CallsTable",
        "CallEventsTable",
        "ContactsTable",
        "IdempotencyTable",
        "SyncStateTable",
        "DirectoryTable",
        "ConnectionsTable",
        "CallbacksTable",
        "WebhookPushesTable",
        "ReportsTable",
        "BoardTable",
    }
    # Idempotency records live an hour and open widget connections two at most (TTL); the board holds
    # the calls in progress now (TTL) and the last DND state read (`get_dnd` reads it again): nothing
    # to recover or protect there.
    assert tables.pop("IdempotencyTable")["Properties"]["TimeToLiveSpecification"]["Enabled"] is True
    assert tables.pop("ConnectionsTable")["Properties"]["TimeToLiveSpecification"]["Enabled"] is True
    board = tables.pop("BoardTable")["Properties"]
    assert board["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert (board["BillingMode"], board["SSESpecification"]["SSEEnabled"]) == ("PAY_PER_REQUEST", True)
    for name, table in tables.items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert props["DeletionProtectionEnabled"] is True, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert table["DeletionPolicy"] == "Retain", name


def test_every_function_has_a_log_group_with_retention(body: dict[str, Any]) -> None:
    for name, function in resources(body, "AWS::Serverless::Function").items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert body["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_alarms_cover_errors_throttles_and_api_5xx(body: dict[str, Any]) -> None:
    metrics = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in resources(body, "AWS::CloudWatch::Alarm").values()
    }
    assert {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "5xx")} <= metrics


def test_outputs_give_the_webhook_url_and_tables(body: dict[str, Any]) -> None:
    assert {"WebhookUrl", "CallsTableName", "CallEventsTableName", "ContactsTableName"} <= set(body["Outputs"])


def test_routes_are_post_root_and_pbx_and_iam_signed_commands(body: dict[str, Any]) -> None:
    functions = Template().functions()
    assert functions["WebhookFunction"].http_routes == [("POST", "/"), ("POST", "/pbx")]
    assert functions["WebhookFunction"].iam_routes == frozenset()
    assert functions["CommandsFunction"].http_routes == [("POST", "/commands")]
    assert functions["CommandsFunction"].iam_routes == {("POST", "/commands")}


def test_iam_is_least_privilege(body: dict[str, Any]) -> None:
    """Each function runs under a role of the template's own (a role SAM makes carries AWS managed
    policies on "*"); tests/test_least_privilege.py checks them again after the SAM transform."""
    for name, function in resources(body, "AWS::Serverless::Function").items():
        assert "Policies" not in function["Properties"], name
        role = body["Resources"][function["Properties"]["Role"]["Fn::GetAtt"][0]]
        assert role["Type"] == "AWS::IAM::Role", name
        assert role.get("Condition") == function.get("Condition"), name
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all("*" not in action for action in actions), (name, actions)
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                assert all(target != "*" for target in targets), (name, targets)
        for event in function["Properties"].get("Events", {}).values():
            # SAM's DynamoDB and SQS events attach AWSLambdaDynamoDBExecutionRole / AWSLambdaSQSQueueExecutionRole.
            assert event["Type"] not in ("DynamoDB", "SQS", "Kinesis"), name


def test_local_tables_are_the_templates(body: dict[str, Any]) -> None:
    tables = Template().tables()
    calls = tables["CallsTable"]
    assert calls["KeySchema"] == body["Resources"]["CallsTable"]["Properties"]["KeySchema"]
    assert {index["IndexName"] for index in calls["GlobalSecondaryIndexes"]} == {"by_client", "by_user"}
    assert tables["CallEventsTable"]["LocalSecondaryIndexes"][0]["IndexName"] == "by_arrival"


def test_layer_requirements_are_the_installed_dependencies() -> None:
    """One source of truth: pyproject reads the layer's file, and the dev install matches its pins."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["dynamic"] == ["dependencies"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["layers/pbxbridge/requirements.txt"]
    pins = [
        line.split("==")
        for line in (REPO / "layers/pbxbridge/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert pins, "the layer requirements pin nothing"
    for name, pinned in pins:
        assert version(name) == pinned, f"{name}: installed {version(name)}, layer pins {pinned}"
    dev = (REPO / "requirements-dev.txt").read_text().lower()
    for name, _ in pins:
        assert f"\n{name.lower()}" not in dev, f"{name} is pinned twice"


def test_openapi_document_is_current() -> None:
    import json
    import unicodedata

    from pbxbridge.openapi import render

    kept = (REPO / "openapi" / "webhook.json").read_text()
    # Which characters are digits or spaces depends on the Python's Unicode tables, as the server's
    # reading does: the document is the runtime's (3.13), checked by the suite's run under it.
    written_for = json.loads(kept)["x-pbxbridge-unicode"]
    if written_for != unicodedata.unidata_version:
        pytest.skip(f"the document is for Unicode {written_for}; this Python has {unicodedata.unidata_version}")
    assert kept == render(), "openapi/webhook.json is stale: run `make openapi`"


def test_readme_shows_the_two_commands_and_ci_runs_make_test() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_webhook_does_not_import_what_it_does_not_use() -> None:
    """Every import in the handler is paid on every cold start: the webhook never needs the PBX
    client's `requests`, the X-Ray SDK, or Powertools' idempotency and event handler."""
    import os
    import subprocess
    import sys

    probe = (
        "import sys; sys.path[:0] = ['functions/webhook']; import app; "
        "print(','.join(sorted(m for m in ('requests', 'aws_xray_sdk', "
        "'aws_lambda_powertools.utilities.idempotency', 'aws_lambda_powertools.event_handler', "
        "'aws_lambda_powertools.utilities.parameters', 'aws_lambda_powertools.utilities.data_classes', "
        "'pbxbridge.domain.reconciliation', 'pbxbridge.pbx', 'boto3.dynamodb.table', 'boto3.dynamodb.conditions') "
        "if m in sys.modules)))"
    )
    env = {
        **os.environ,
        "CALLS_TABLE": "a",
        "CALL_EVENTS_TABLE": "b",
        "CONTACTS_TABLE": "c",
        "CRM_TOKEN_PARAMETER": "/k",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_the_docs_tell_the_recorders_retry_timing_the_template_sets(body: dict[str, Any]) -> None:
    queue = body["Resources"]["RecordingsQueue"]["Properties"]
    recorder = body["Resources"]["RecorderFunction"]["Properties"]
    minutes, tries = queue["VisibilityTimeout"] // 60, queue["RedrivePolicy"]["maxReceiveCount"]
    assert queue["VisibilityTimeout"] >= 6 * recorder["Timeout"]  # Lambda's guidance for SQS triggers
    readme = " ".join((REPO / "docs" / "how-it-works.md").read_text().split())
    assert f"back after {minutes} min, {tries} times" in readme
    assert f"comes back every {minutes} minutes (the queue's visibility timeout" in readme
    assert f"{tries} times (about {minutes * tries / 60:g} hours)" in readme
    default = body["Parameters"]["RecorderMaxConcurrency"]["Default"]
    assert f"At most `RecorderMaxConcurrency` ({default}) recordings" in readme


def test_without_a_pbx_nothing_is_scheduled() -> None:
    """A deploy with PbxUrl empty runs no schedule into errors: only the overdue call-backs checker,
    which needs no PBX (call-backs come from its pushes); the local stack (with the simulator) runs
    them all."""
    quiet = Template().functions()
    assert {name: spec.schedules for name, spec in quiet.items() if spec.schedules} == {
        "OverdueFunction": [("rate(1 minute)", "{}")]
    }
    local = Template(parameters={"PbxUrl": "http://127.0.0.1:3100"}).functions()
    assert [expr for expr, _ in local["HistorySyncFunction"].schedules] == ["rate(10 minutes)", "cron(30 3 * * ? *)"]
    assert local["CommandsFunction"].schedules == [("rate(1 day)", '{"cmd": "syncDirectory", "raiseOnError": true}')]


def test_the_webhook_builds_at_init_only_what_contact_needs() -> None:
    """Init builds the `contact` model and the clients; the write pushes' models are built on their
    first push (on-demand), or at init when nobody waits on it (SnapStart, provisioned concurrency)."""
    import os
    import subprocess
    import sys

    probe = (
        "import sys; sys.path[:0] = ['functions/webhook']; import app; "
        "from pbxbridge.protocol.webhook import PUSH_MODELS; "
        "print(','.join(m.__name__ for m in PUSH_MODELS if m.__pydantic_complete__))"
    )
    env = {
        **os.environ,
        "CALLS_TABLE": "a",
        "CALL_EVENTS_TABLE": "b",
        "CONTACTS_TABLE": "c",
        "CRM_TOKEN_PARAMETER": "/k",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }
    env.pop("AWS_LAMBDA_INITIALIZATION_TYPE", None)

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, env={**env, **extra}, capture_output=True, text=True, timeout=60
        )

    on_demand = run()
    assert on_demand.returncode == 0, on_demand.stderr[-2000:]
    assert on_demand.stdout.strip() == "ContactQuery"
    snapstart = run(AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    assert snapstart.stdout.strip() == "ContactQuery,HistoryPush,EventPush,RatingPush,WebhookPush"


def test_the_webhook_start_mode_is_a_parameter(body: dict[str, Any]) -> None:
    parameter = body["Parameters"]["WebhookStartMode"]
    assert parameter["Default"] == "on-demand"
    assert parameter["AllowedValues"] == ["on-demand", "snapstart", "provisioned"]
    webhook = body["Resources"]["WebhookFunction"]["Properties"]
    # Versions are always published behind one alias: SnapStart and provisioned concurrency need them.
    assert webhook["AutoPublishAlias"] == "live"
    assert webhook["SnapStart"]["ApplyOn"] == {"Fn::If": ["WebhookSnapStart", "PublishedVersions", "None"]}
    concurrency = webhook["ProvisionedConcurrencyConfig"]["Fn::If"]
    assert concurrency[0] == "WebhookProvisioned"
    assert concurrency[1] == {"ProvisionedConcurrentExecutions": {"Ref": "WebhookProvisionedConcurrency"}}
    assert body["Conditions"]["WebhookSnapStart"] == {"Fn::Equals": [{"Ref": "WebhookStartMode"}, "snapstart"]}
    assert webhook["MemorySize"] == {"Ref": "WebhookMemorySize"}


def test_the_pbx_api_is_a_parameter_every_function_commanding_the_pbx_reads(body: dict[str, Any]) -> None:
    from pbxbridge.function_settings import CommandsSettings

    parameter = body["Parameters"]["PbxApi"]
    assert parameter["Default"] == "auto"
    assert sorted(parameter["AllowedValues"]) == ["auto", "legacy", "v1"]
    # The settings model reads exactly these values (and the default), so the two cannot drift.
    field = CommandsSettings.model_fields["pbx_api"]
    assert field.alias == "PBX_API"
    assert str(field.default) == parameter["Default"]
    commanding = {
        name: res["Properties"]["Environment"]["Variables"]
        for name, res in resources(body, "AWS::Serverless::Function").items()
        if "PBX_TOKEN_PARAMETER" in res["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert set(commanding) == {"CommandsFunction", "HistorySyncFunction", "WidgetApiFunction"}
    assert all(variables["PBX_API"] == {"Ref": "PbxApi"} for variables in commanding.values())


def test_every_log_group_has_retention_and_no_access_log_can_hold_a_token(body: dict[str, Any]) -> None:
    for name, group in resources(body, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    formats = [
        (name, resource["Properties"]["AccessLogSettings"]["Format"])
        for name, resource in body["Resources"].items()
        if "AccessLogSettings" in resource.get("Properties", {})
    ]
    assert {name for name, _ in formats} >= {"Api", "WidgetApi", "WidgetSocketStage"}
    for name, line in formats:
        variables = set(re.findall(r"\$context\.[A-Za-z.]+", line))
        assert variables, name
        # The WebSocket's $connect has the widget token in its query string; the HTTP APIs' requests
        # carry it (or the CRM key) in a header or the body: never those, nor a raw request.
        leaky = {v for v in variables if re.search(r"querystring|header|requestOverride|input", v, re.I)}
        assert not leaky, (name, leaky)
        assert not re.search(r"\$input|\$request", line), name
    # Nor API Gateway's execution logs, which would log whole requests with their query strings.
    for name, resource in body["Resources"].items():
        settings = resource.get("Properties", {}).get("DefaultRouteSettings", {})
        assert not settings.get("DataTraceEnabled"), name
        assert settings.get("LoggingLevel", "OFF") == "OFF", name
