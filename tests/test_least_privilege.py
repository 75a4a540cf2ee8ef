"""No `Resource: "*"` in any role: the template as the SAM transform turns it into CloudFormation.

The transform adds roles, policies and managed policy ARNs of its own (event sources, schedules,
tracing), so the template as written proves nothing: this runs the transform (the SAM CLI's own
translator, in its environment, as `make sam-validate` does) and checks every statement of every
role in the result, with the template's conditions resolved for the parameters a deploy would give.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.template import LOCAL_ACCOUNT, LOCAL_REGION, Template

REPO = Path(__file__).resolve().parent.parent
SAM_PYTHON = Path(os.environ.get("SAM_PYTHON", REPO / ".venv-sam" / "bin" / "python"))
# X-Ray's write actions take no resource but "*"; they may appear only with Tracing=Active.
XRAY_WRITE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    if not SAM_PYTHON.exists():
        if "SAM_PYTHON" in os.environ:
            pytest.fail(f"{SAM_PYTHON} is missing: `make test` installs it")
        pytest.skip("the SAM translator's environment is not installed (`make test` installs it)")
    result = subprocess.run(
        [str(SAM_PYTHON), "tests/sam_translate.py", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def deployed(translated: dict[str, Any], **parameters: str) -> tuple[Template, dict[str, dict[str, Any]]]:
    """The translated template with its conditions resolved: the resources a deploy creates."""
    template = Template(body=translated, parameters=parameters)
    return template, {
        name: resource for name, resource in translated["Resources"].items() if template.deployed(resource)
    }


def role_statements(
    template: Template, resources: dict[str, dict[str, Any]]
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every statement each role grants, by role: inline policies, and the managed policies the
    template defines (an AWS managed policy cannot be checked here, so it fails the test)."""
    granted: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        props = template.resolve(resource["Properties"])
        statements: list[tuple[str, dict[str, Any]]] = []
        for policy in props.get("Policies", []):
            statements += [(policy["PolicyName"], s) for s in as_list(policy["PolicyDocument"]["Statement"])]
        for arn in props.get("ManagedPolicyArns", []):
            assert arn in resources, f"{name}: managed policy {arn} is not the template's own"
            document = template.resolve(resources[arn]["Properties"]["PolicyDocument"])
            statements += [(arn, s) for s in as_list(document["Statement"])]
        granted[name] = statements
    return granted


def wildcard(resource: str) -> bool:
    """ "*", or an ARN whose service, region or account is a wildcard ("arn:aws:sqs:*:*:*")."""
    return resource == "*" or "*" in ":".join(resource.split(":")[:5])


PARAMETER_SETS = [
    pytest.param({}, id="defaults"),
    pytest.param({"PbxUrl": "https://tenant.example.ru", "CrmTokenPreviousParameterName": "/old"}, id="with-pbx"),
]


@pytest.mark.parametrize("parameters", PARAMETER_SETS)
def test_no_role_grants_a_wildcard_resource(translated: dict[str, Any], parameters: dict[str, str]) -> None:
    template, resources = deployed(translated, **parameters)
    granted = role_statements(template, resources)
    assert {"WebhookRole", "CommandsRole", "StreamRole", "RecorderRole"} <= set(granted)
    for role, statements in granted.items():
        assert statements, f"{role} grants nothing"
        for policy, statement in statements:
            assert not {"NotResource", "NotAction"} & set(statement), (role, policy)
            assert statement["Effect"] == "Allow", (role, policy)
            for resource in as_list(statement["Resource"]):
                assert isinstance(resource, str), (role, policy, resource)
                assert not wildcard(resource), f"{role} ({policy}): {statement['Action']} on {resource}"
            for action in as_list(statement["Action"]):
                assert "*" not in action, (role, policy, action)


def test_with_tracing_the_only_wildcard_is_sending_traces(translated: dict[str, Any]) -> None:
    template, resources = deployed(translated, PbxUrl="https://tenant.example.ru", Tracing="Active")
    granted = role_statements(template, resources)
    for function in ("Webhook", "Commands", "HistorySync", "Stream", "Recorder"):
        policies = {policy for policy, _ in granted[f"{function}Role"]}
        assert "TracingPolicy" in policies, function
    for role, statements in granted.items():
        for policy, statement in statements:
            if any(wildcard(resource) for resource in as_list(statement["Resource"])):
                assert (policy, set(as_list(statement["Action"]))) == ("TracingPolicy", XRAY_WRITE), role
    assert all(
        resources[f]["Properties"]["TracingConfig"] == {"Mode": {"Ref": "Tracing"}} for f in functions(resources)
    )


def functions(resources: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Function"]


def test_every_function_runs_under_the_templates_own_role(translated: dict[str, Any]) -> None:
    """A role SAM makes for a function always carries AWSLambdaBasicExecutionRole (logs on "*")."""
    _, resources = deployed(translated, PbxUrl="https://tenant.example.ru")
    for name in functions(resources):
        role = resources[name]["Properties"]["Role"]["Fn::GetAtt"][0]
        assert resources[role]["Type"] == "AWS::IAM::Role", name
        assert name.removesuffix("Function") + "Role" == role, name


@pytest.mark.parametrize(
    ("kind", "actions"),
    [
        ("dynamodb", {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}),
        ("sqs", {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}),
    ],
)
def test_each_event_source_is_readable_by_its_function_and_nothing_else(
    translated: dict[str, Any], kind: str, actions: set[str]
) -> None:
    """What the managed policies granted on every stream and queue, granted on exactly these."""
    template, resources = deployed(translated)
    granted = role_statements(template, resources)
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    sources = [m for m in mappings if template.resolve(m["EventSourceArn"]).startswith(f"arn:aws:{kind}:")]
    assert sources, kind
    for mapping in sources:
        source = template.resolve(mapping["EventSourceArn"])
        function = mapping["FunctionName"]["Ref"]
        role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
        covering = set()
        for _, statement in granted[role]:
            if any(fnmatch.fnmatchcase(source, pattern) for pattern in as_list(statement["Resource"])):
                covering |= set(as_list(statement["Action"]))
        assert actions <= covering, (function, source, actions - covering)
    reading = {
        role
        for role, statements in granted.items()
        for _, statement in statements
        if set(as_list(statement["Action"])) & actions
    }
    consumers = {resources[m["FunctionName"]["Ref"]]["Properties"]["Role"]["Fn::GetAtt"][0] for m in sources}
    assert reading == consumers


def test_the_recorders_concurrency_is_capped(translated: dict[str, Any]) -> None:
    template, resources = deployed(translated)
    (recorder,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "RecorderFunction"}
    ]
    assert template.resolve(recorder["ScalingConfig"]) == {"MaximumConcurrency": "2"}
    parameter = translated["Parameters"]["RecorderMaxConcurrency"]
    assert (parameter["MinValue"], parameter["Default"]) == (2, 2)  # Lambda refuses less than 2


def test_arns_resolve_locally() -> None:
    """The checks above compare resolved ARNs: stream ARNs must look like DynamoDB's."""
    template = Template()
    stream = template.resolve({"Fn::GetAtt": ["CallsTable", "StreamArn"]})
    assert fnmatch.fnmatchcase(stream, f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/CallsTable/stream/*")


def test_without_a_pbx_the_deploy_schedules_nothing(translated: dict[str, Any]) -> None:
    """PbxUrl empty: the reconciliation and directory sync schedules exist, disabled (the overdue
    call-backs checker needs no PBX: it runs either way)."""
    for parameters, enabled in (({}, set()), ({"PbxUrl": "https://tenant.example.ru"}, {"rate(1 day)"})):
        template = Template(body=translated, parameters=parameters)
        schedules = {
            name: template.resolve(resource["Properties"])
            for name, resource in template.resources("AWS::Scheduler::Schedule").items()
        }
        running = {props["ScheduleExpression"] for props in schedules.values() if props.get("State") != "DISABLED"}
        running.discard("rate(1 minute)")
        assert running >= enabled, parameters
        if not parameters:
            assert running == set()
            assert {p["ScheduleExpression"] for p in schedules.values()} >= {"rate(10 minutes)", "rate(1 day)"}
        else:
            assert {"rate(10 minutes)", "cron(30 3 * * ? *)"} <= running
