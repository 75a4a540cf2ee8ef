"""The dashboard shows only metrics the code emits: same namespace, names and dimensions.

What the code emits is read from the package itself (every `add_metric` and `add_dimension` call of
the modules each function's handler calls, plus Powertools' own `service` dimension and ColdStart),
and the webhook's contact metrics are also checked in the EMF a real push prints.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.template import REPO_ROOT, Template
from pbxbridge.protocol.webhook import Command
from tests.conftest import CONTACT, Webhook

PACKAGE = REPO_ROOT / "layers" / "pbxbridge" / "pbxbridge"
_SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]+)\} MetricName=\"(?P<name>[^\"]+)\"'")


@dataclass
class Emitted:
    """What one function's invocations emit: metric names, dimension names, literal dimension values."""

    metrics: set[str] = field(default_factory=set)
    dimensions: set[str] = field(default_factory=set)
    values: dict[str, set[str | None]] = field(default_factory=dict)  # None: a value computed at run time
    cold_start: bool = False


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literals(expr: ast.expr | None) -> set[str]:
    """The names a call can pass: a constant, or each constant branch of `a if c else b`."""
    if isinstance(expr, ast.Constant):
        return {str(expr.value)}
    if isinstance(expr, ast.IfExp):
        return _literals(expr.body) | _literals(expr.orelse)
    return set()


def _scan(path: Path, emitted: Emitted) -> None:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = _keyword(node, "name")
        if node.func.attr == "add_metric":
            emitted.metrics |= _literals(name)
        elif node.func.attr == "add_dimension" and isinstance(name, ast.Constant):
            emitted.dimensions.add(str(name.value))
            value = _keyword(node, "value")
            literal = str(value.value) if isinstance(value, ast.Constant) else None
            emitted.values.setdefault(str(name.value), set()).add(literal)
        elif node.func.attr == "log_metrics":
            capture = _keyword(node, "capture_cold_start_metric")
            emitted.cold_start |= isinstance(capture, ast.Constant) and capture.value is True


def emitted_by_function(template: Template) -> dict[str, Emitted]:
    """Each function (by its name) -> what its handler and the pbxbridge modules it calls emit."""
    found = {}
    for logical_id, spec in template.functions().items():
        emitted = Emitted()
        handler = spec.code_dir / f"{spec.handler.rsplit('.', 1)[0]}.py"
        _scan(handler, emitted)
        for node in ast.walk(ast.parse(handler.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pbxbridge."):
                _scan(PACKAGE / f"{node.module.removeprefix('pbxbridge.').replace('.', '/')}.py", emitted)  # type: ignore[union-attr]
        found[template.resolve({"Ref": logical_id})] = emitted
    return found


@dataclass(frozen=True)
class Shown:
    namespace: str
    name: str
    dimensions: dict[str, str | None]  # None: any value (a SEARCH over that dimension)
    widget: str


def shown_metrics(template: Template) -> Iterator[Shown]:
    body = json.loads(template.resolve(template.body["Resources"]["Dashboard"]["Properties"]["DashboardBody"]))
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        title = widget["properties"]["title"]
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                expression = line[0]["expression"]
                for match in _SEARCH.finditer(expression):
                    namespace, *keys = match["schema"].split(",")
                    yield Shown(namespace, match["name"], dict.fromkeys(keys), title)
                continue
            values = [item for item in line if not isinstance(item, dict)]
            namespace, name, *pairs = values
            yield Shown(namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), title)


@pytest.fixture(scope="module")
def deployed() -> Template:
    # Forwarding on, so the CRM's dead-letter queue is on the dashboard too.
    return Template(parameters={"CrmEndpointUrl": "https://crm.example.com/pbx"})


def test_every_metric_shown_is_one_the_code_emits(deployed: Template) -> None:
    env = deployed.resolve(deployed.body["Globals"]["Function"]["Environment"]["Variables"])
    namespace, service = env["POWERTOOLS_METRICS_NAMESPACE"], env["POWERTOOLS_SERVICE_NAME"]
    functions = emitted_by_function(deployed)
    shown = [metric for metric in shown_metrics(deployed) if not metric.namespace.startswith("AWS/")]
    assert len(shown) >= 15
    for metric in shown:
        assert metric.namespace == namespace, metric
        assert "service" in metric.dimensions, metric
        assert metric.dimensions["service"] in (service, None), metric
        if metric.name == "ColdStart":
            assert set(metric.dimensions) == {"function_name", "service"}, metric
            assert functions[str(metric.dimensions["function_name"])].cold_start, metric
            continue
        emitters = [f for f in functions.values() if metric.name in f.metrics]
        assert emitters, f"{metric.name} ({metric.widget}) is emitted by no function"
        # Powertools puts every dimension of an invocation (and `service`) on each of its metrics.
        assert any(set(metric.dimensions) == {"service", *f.dimensions} for f in emitters), metric
        for key, value in metric.dimensions.items():
            if value is None or key == "service":
                continue
            literals = set().union(*(f.values.get(key, set()) for f in emitters))
            if key == "cmd":
                assert value in {c.value for c in Command}, metric
            else:
                assert value in literals, metric


def test_the_dashboard_shows_what_the_issue_asks_for(deployed: Template) -> None:
    names = {m.name for m in shown_metrics(deployed)}
    assert {"Pushes", "ContactHits", "ContactMisses", "ContactLatency"} <= names
    assert {"CallsCreatedByReconciliation", "RecordingsArchived", "RecordingsRejected"} <= names
    assert {"Commands", "PbxLatency", "ColdStart", "ApproximateNumberOfMessagesVisible"} <= names
    assert {"CallbacksOpened", "CallbacksClosed", "TimeToCallBack"} <= names  # the call-back list's (issue 9)
    assert {"SipRegistrationErrors", "UnknownWebhookPushes"} <= names  # cmd=webhook pushes (issue 14)
    queues = {
        m.dimensions["QueueName"] for m in shown_metrics(deployed) if m.name == "ApproximateNumberOfMessagesVisible"
    }
    dead_letter_queues = {
        deployed.physical_name(name) for name in deployed.queues() if "RedrivePolicy" not in deployed.queues()[name]
    } - {"RecordingsQueue"}
    assert queues == dead_letter_queues  # every dead-letter queue, the CRM's included when it is on
    latency = [m for m in shown_metrics(deployed) if m.name == "ContactLatency"]
    assert len(latency) == 2
    cold = {m.dimensions["function_name"] for m in shown_metrics(deployed) if m.name == "ColdStart"}
    assert cold == set(emitted_by_function(deployed))


def test_the_dashboard_renders_without_forwarding_and_its_url_is_an_output() -> None:
    template = Template()
    assert not [m for m in shown_metrics(template) if m.dimensions.get("QueueName") == "CrmDeadLetterQueue"]
    assert "Dashboard" in template.body["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


def test_a_contact_push_emits_the_metrics_the_dashboard_reads(webhook: Webhook, deployed: Template) -> None:
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert webhook.push(**CONTACT).status == 200
    blobs = [json.loads(line) for line in printed.getvalue().splitlines() if line.startswith('{"_aws"')]
    emitted: dict[str, tuple[str, frozenset[str], dict[str, Any]]] = {}
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dimensions in directive["Dimensions"]:
                    emitted[metric["Name"]] = (directive["Namespace"], frozenset(dimensions), blob)
    for shown in shown_metrics(deployed):
        if shown.name not in ("ContactMisses", "ContactLatency", "Pushes"):
            continue
        namespace, dimensions, blob = emitted[shown.name]
        assert namespace == shown.namespace
        assert dimensions == set(shown.dimensions), shown
        for key, value in shown.dimensions.items():
            assert value is None or blob[key] == value, shown
    latency = emitted["ContactLatency"][2]["ContactLatency"]
    assert min(latency if isinstance(latency, list) else [latency]) > 0
