"""template.yaml read as the single source of truth for tables, routes, handlers and environment.

Only the intrinsics the template uses are resolved (Ref, Sub, GetAtt, If, Not, And, Or, Equals, Join), against
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


# libyaml's loader when PyYAML has it (~6x faster: the tests and the local stack read the template
# a few dozen times), the pure-Python one otherwise; both build the same body.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_SafeLoader):  # type: ignore[valid-type,misc]
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
        """The resources of a type that this deployment creates (their Condition, if any, holds)."""
        return {name: res for name, res in self.body["Resources"].items() if res["Type"] == kind and self.deployed(res)}

    def deployed(self, resource: dict[str, Any]) -> bool:
        """Whether a deploy with these parameters creates the resource (its Condition holds)."""
        return "Condition" not in resource or self.condition(resource["Condition"])

    def physical_name(self, logical_id: str) -> str:
        # Locally a resource is named by its logical id: short, stable and easy to find.
        return logical_id

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.body.get("Conditions", {})[name]))

    def rule_failures(self) -> list[str]:
        """The template's `Rules` these parameters break, as CloudFormation says them at deploy time
        (each assertion's AssertDescription) before it creates anything."""
        failures = []
        for name, rule in self.body.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self.resolve(assertion["Assert"]):
                    failures.append(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")
        return failures

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if not _is_no_value(item)]
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
                chosen = then if self.condition(name) else otherwise
                # An If that chose AWS::NoValue stays unresolved, so the list or mapping around it drops it.
                return chosen if _is_no_value(chosen) else self.resolve(chosen)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(item) for item in self.resolve(items))
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in arg)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in arg)
            if key == "Fn::Equals":
                return bool(self.resolve(arg[0]) == self.resolve(arg[1]))
        resolved = {k: self.resolve(v) for k, v in value.items() if not _is_no_value(v)}
        return {k: v for k, v in resolved.items() if not _is_no_value(v)}

    def _ref(self, name: str) -> Any:
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
            if self.body["Parameters"][name].get("Type") == "CommaDelimitedList":
                return [item.strip() for item in self.parameter(name).split(",")]
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
            return str(self._ref(name))

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

    def functions(self) -> dict[str, LocalFunctionSpec]:
        globals_ = self.body.get("Globals", {}).get("Function", {})
        specs = {}
        for logical_id, resource in self.resources("AWS::Serverless::Function").items():
            props = resource["Properties"]
            env = dict(self.resolve(globals_.get("Environment", {}).get("Variables", {})))
            env.update(self.resolve(props.get("Environment", {}).get("Variables", {})))
            routes, iam_routes, schedules = [], set(), []
            authorizers: dict[tuple[str, str], HttpAuthorizer] = {}
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
                    authorizer = self._route_authorizer(event["Properties"])
                    if authorizer is not None:
                        authorizers[route] = authorizer
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
                authorizers=authorizers,
            )
        return specs

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
            if props["FunctionName"] != {"Ref": function}:
                continue
            if props.get("Enabled") is not None and not self.resolve(props["Enabled"]):
                continue
            logical_id = props["EventSourceArn"]["Fn::GetAtt"][0]
            kind = self.body["Resources"][logical_id]["Type"]
            sources.append(("DynamoDB" if kind == "AWS::DynamoDB::Table" else "SQS", logical_id))
        return sources

    def _route_authorizer(self, event_props: dict[str, Any]) -> HttpAuthorizer | None:
        """The Lambda authorizer of an HttpApi route: its own `Auth.Authorizer`, else its API's default."""
        api_ref = event_props.get("ApiId", {})
        api = self.body["Resources"].get(api_ref.get("Ref", "")) if isinstance(api_ref, dict) else None
        auth = (api or {}).get("Properties", {}).get("Auth", {})
        name = event_props.get("Auth", {}).get("Authorizer") or auth.get("DefaultAuthorizer")
        if not name or name in ("NONE", "AWS_IAM"):
            return None
        config = auth["Authorizers"][name]
        return HttpAuthorizer(
            function=config["FunctionArn"]["Fn::GetAtt"][0],
            headers=tuple(h.lower() for h in config.get("Identity", {}).get("Headers", ())),
        )

    def websocket_apis(self) -> dict[str, WebSocketApiSpec]:
        """Each WEBSOCKET API: its stage, its routes' functions, and `$connect`'s authorizer."""

        def function_of(uri: Any) -> str:
            # "arn:...:functions/${SomeFunction.Arn}/invocations" names the function.
            match = re.search(r"\$\{([A-Za-z0-9]+)\.Arn\}", uri["Fn::Sub"] if isinstance(uri, dict) else str(uri))
            if match is None:
                raise ValueError(f"cannot tell the function of {uri}")
            return match.group(1)

        resources = self.body["Resources"]
        apis = {}
        for api_id, api in self.resources("AWS::ApiGatewayV2::Api").items():
            if api["Properties"].get("ProtocolType") != "WEBSOCKET":
                continue

            def of_api(kind: str, api_id: str = api_id) -> dict[str, dict[str, Any]]:
                return {
                    n: r for n, r in self.resources(kind).items() if r["Properties"].get("ApiId") == {"Ref": api_id}
                }

            routes: dict[str, str] = {}
            authorizer: HttpAuthorizer | None = None
            for route in of_api("AWS::ApiGatewayV2::Route").values():
                props = route["Properties"]
                integration = re.sub(r"^integrations/\$\{(.+)\}$", r"\1", props["Target"]["Fn::Sub"])
                routes[props["RouteKey"]] = function_of(resources[integration]["Properties"]["IntegrationUri"])
                if props["RouteKey"] == "$connect" and props.get("AuthorizationType") == "CUSTOM":
                    config = resources[props["AuthorizerId"]["Ref"]]["Properties"]
                    sources = tuple(str(s).rsplit(".", 1)[-1] for s in config.get("IdentitySource", ()))
                    authorizer = HttpAuthorizer(function=function_of(config["AuthorizerUri"]), query=sources)
            stage = next(iter(of_api("AWS::ApiGatewayV2::Stage").values()))["Properties"]["StageName"]
            apis[api_id] = WebSocketApiSpec(
                logical_id=api_id, stage=stage, routes=routes, connect_authorizer=authorizer
            )
        return apis


def _is_no_value(value: Any) -> bool:
    return bool(value == {"Ref": "AWS::NoValue"})


@dataclass(frozen=True)
class HttpAuthorizer:
    """A Lambda authorizer: its function, and where the identity comes from (headers or query string)."""

    function: str
    headers: tuple[str, ...] = ()
    query: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebSocketApiSpec:
    logical_id: str
    stage: str
    routes: dict[str, str]  # route key ($connect, $disconnect, $default, ...) -> function logical id
    connect_authorizer: HttpAuthorizer | None


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
    authorizers: dict[tuple[str, str], HttpAuthorizer] = field(default_factory=dict)  # route -> Lambda authorizer
