"""template.yaml read as the single source of truth for tables, routes, handlers and environment.

Only the intrinsics the template uses are resolved (Ref, Sub, GetAtt, If, Not, Equals), against
local values: a parameter resolves to its override or default, a resource to its local name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
LOCAL_REGION = "eu-central-1"
LOCAL_ACCOUNT = "123456789012"  # moto's default account: its ARNs and queue URLs use it


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads `!Ref X` as `{"Ref": "X"}` and `!Sub s` as `{"Fn::Sub": s}`."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.YAMLError(f"unexpected node for !{suffix}")
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        body: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
        return body


@dataclass
class Template:
    """The template with local values for its parameters and resource names."""

    body: dict[str, Any] = field(default_factory=load_template)
    parameters: dict[str, str] = field(default_factory=dict)
    endpoint: str = "http://127.0.0.1:8000"  # the embedded AWS, for values that name it (queue URLs)

    def parameter(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        return str(self.body.get("Parameters", {})[name].get("Default", ""))

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """The resources of a kind that a deploy with these parameters creates."""
        return {name: res for name, res in self.body["Resources"].items() if res["Type"] == kind and self.deployed(res)}

    def physical_name(self, logical_id: str) -> str:
        # Locally a resource is named by its logical id: short, stable and easy to find.
        return logical_id

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.body.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else resolved

    def _resolve(self, value: Any) -> Any:
        # An Fn::If may choose AWS::NoValue: the property (or list item) is then left out.
        if _is_no_value(value):
            return _NO_VALUE
        if isinstance(value, list):
            return [item for item in map(self._resolve, value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg
                return self._attribute(logical_id, attribute)
            if key == "Fn::If":
                name, then, otherwise = arg
                return self._resolve(then if self.condition(name) else otherwise)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Equals":
                return bool(self.resolve(arg[0]) == self.resolve(arg[1]))
        resolved = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": "pbxbridge-local",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.body.get("Parameters", {}):
            return self.parameter(name)
        if name in self.body["Resources"]:
            resource = self.body["Resources"][name]
            if resource["Type"] == "AWS::SQS::Queue":
                # Ref of a queue is its URL, which names the endpoint it lives at.
                return f"{self.endpoint}/{LOCAL_ACCOUNT}/{self.physical_name(name)}"
            if resource["Type"] == "AWS::Events::EventBus":
                return str(self.resolve(resource["Properties"]["Name"]))
            return self.physical_name(name)
        raise KeyError(f"template has no parameter or resource {name}")

    def _attribute(self, logical_id: str, attribute: str) -> str:
        kind = self.body["Resources"][logical_id]["Type"]
        service = {
            "AWS::DynamoDB::Table": "dynamodb:{r}:{a}:table/{n}",
            "AWS::Logs::LogGroup": "logs:{r}:{a}:log-group:{n}",
            "AWS::SQS::Queue": "sqs:{r}:{a}:{n}",
            "AWS::S3::Bucket": "s3:::{n}",
            "AWS::Events::EventBus": "events:{r}:{a}:event-bus/{n}",
        }
        template = service.get(kind, "local:{r}:{a}:{n}")
        if attribute == "Arn":
            return "arn:aws:" + template.format(r=LOCAL_REGION, a=LOCAL_ACCOUNT, n=self.physical_name(logical_id))
        if attribute == "StreamArn":  # the stream's label is its creation time; any fixed one will do locally
            arn = "arn:aws:" + template.format(r=LOCAL_REGION, a=LOCAL_ACCOUNT, n=self.physical_name(logical_id))
            return f"{arn}/stream/1970-01-01T00:00:00.000"
        return self.physical_name(logical_id)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._attribute(logical_id, attribute)
            return self._ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    # What the local stack needs from the template.

    def tables(self) -> dict[str, dict[str, Any]]:
        """CreateTable arguments for each AWS::DynamoDB::Table, by logical id."""
        tables = {}
        for logical_id, resource in self.resources("AWS::DynamoDB::Table").items():
            props = self.resolve(resource["Properties"])
            args: dict[str, Any] = {
                "TableName": self.physical_name(logical_id),
                "KeySchema": props["KeySchema"],
                "AttributeDefinitions": props["AttributeDefinitions"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if key in props:
                    args[key] = props[key]
            if "StreamSpecification" in props:
                args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            if "SSESpecification" in props:
                args["SSESpecification"] = {"Enabled": bool(props["SSESpecification"].get("SSEEnabled"))}
            tables[logical_id] = args
        return tables

    def queues(self) -> dict[str, dict[str, Any]]:
        """CreateQueue arguments for each AWS::SQS::Queue (dead-letter queues first)."""
        queues: dict[str, dict[str, Any]] = {}
        resources = self.resources("AWS::SQS::Queue")
        ordered = sorted(resources, key=lambda name: "RedrivePolicy" in resources[name].get("Properties", {}))
        for logical_id in ordered:
            props = self.resolve(resources[logical_id].get("Properties", {}))
            attributes = {k: str(v) for k, v in props.items() if k in ("VisibilityTimeout", "MessageRetentionPeriod")}
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
            queues[logical_id] = {"QueueName": self.physical_name(logical_id), "Attributes": attributes}
        return queues

    def deployed(self, resource: dict[str, Any]) -> bool:
        """Whether a deploy with these parameters creates the resource (its Condition holds)."""
        return "Condition" not in resource or self.condition(resource["Condition"])

    def event_sources(self, function: str) -> list[tuple[str, str]]:
        """(DynamoDB | SQS, the table's or queue's logical id) for each event source mapping of the
        function: SAM's DynamoDB/SQS events, or AWS::Lambda::EventSourceMapping resources."""
        sources: list[tuple[str, str]] = []
        for event in self.body["Resources"][function]["Properties"].get("Events", {}).values():
            if event["Type"] in ("DynamoDB", "SQS"):
                key = "Stream" if event["Type"] == "DynamoDB" else "Queue"
                sources.append((event["Type"], event["Properties"][key]["Fn::GetAtt"][0]))
        for mapping in self.resources("AWS::Lambda::EventSourceMapping").values():
            props = mapping["Properties"]
            if props["FunctionName"] != {"Ref": function} or not self.deployed(mapping):
                continue
            if props.get("Enabled") is not None and not self.resolve(props["Enabled"]):
                continue
            logical_id = props["EventSourceArn"]["Fn::GetAtt"][0]
            kind = self.body["Resources"][logical_id]["Type"]
            sources.append(("DynamoDB" if kind == "AWS::DynamoDB::Table" else "SQS", logical_id))
        return sources

    def functions(self) -> dict[str, LocalFunctionSpec]:
        globals_ = self.body.get("Globals", {}).get("Function", {})
        specs = {}
        for logical_id, resource in self.resources("AWS::Serverless::Function").items():
            if not self.deployed(resource):
                continue
            props = resource["Properties"]
            env = dict(self.resolve(globals_.get("Environment", {}).get("Variables", {})))
            env.update(self.resolve(props.get("Environment", {}).get("Variables", {})))
            routes, iam_routes, schedules = [], set(), []
            for event in props.get("Events", {}).values():
                if event["Type"] == "ScheduleV2":
                    event_props = self.resolve(event["Properties"])
                    if event_props.get("State", "ENABLED") == "ENABLED":
                        schedules.append((event_props["ScheduleExpression"], event_props.get("Input", "{}")))
                if event["Type"] == "HttpApi":
                    event_props = self.resolve(event["Properties"])
                    route = (event_props["Method"].upper(), event_props["Path"])
                    routes.append(route)
                    if event_props.get("Auth", {}).get("Authorizer") == "AWS_IAM":
                        iam_routes.add(route)
            specs[logical_id] = LocalFunctionSpec(
                logical_id=logical_id,
                code_dir=REPO_ROOT / props["CodeUri"],
                handler=props["Handler"],
                environment={k: str(v) for k, v in env.items()},
                http_routes=routes,
                iam_routes=frozenset(iam_routes),
                schedules=schedules,
                sources=self.event_sources(logical_id),
                timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
            )
        return specs


def _is_no_value(value: Any) -> bool:
    return bool(value == {"Ref": "AWS::NoValue"})


_NO_VALUE = object()


@dataclass(frozen=True)
class LocalFunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    http_routes: list[tuple[str, str]]
    timeout: int
    iam_routes: frozenset[tuple[str, str]] = frozenset()
    schedules: list[tuple[str, str]] = field(default_factory=list)  # (expression, input)
    sources: list[tuple[str, str]] = field(default_factory=list)  # (DynamoDB | SQS, logical id)
