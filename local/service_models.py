"""The trimmed botocore service models the functions' one Session reads (pbxbridge/service_models).

botocore parses a service's whole model when a client of it is built: SSM's is 1.6 MB of JSON, about
20-40 ms of every webhook cold start, for the one operation the webhook calls (GetParameters, both CRM
keys in one request); DynamoDB's 0.8 MB, ~10 ms, for the eight item operations the stores use. The
trimmed model is botocore's own, cut to those operations and the shapes they reach, documentation
left out; the endpoint rules, retries and partitions stay botocore's. Beside them, botocore's
endpoints.json (1.25 MB, ~18 ms) cut to the same services: every partition and region as it is, and
those services' entries. Only the functions' Session reads the folder (`pbxbridge.aws.session`), and
it builds clients of these services only (a test compares where their requests go, and how they are
signed, with a plain Session's).

`python -m local.service_models` rewrites the files from the installed botocore; a test fails when
they differ from what it would write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from local.template import REPO_ROOT

MODELS_DIR = REPO_ROOT / "layers" / "pbxbridge" / "pbxbridge" / "service_models"
# service -> the operations the functions call on it. A client of a trimmed service has only these.
# Powertools' idempotency store calls Get/Put/Update/DeleteItem on the client it is given (ours).
# (Tests that drop or scan tables use a plain boto3 client: the functions' Session cannot.)
OPERATIONS: dict[str, tuple[str, ...]] = {
    "ssm": ("GetParameter", "GetParameters"),
    "dynamodb": (
        "BatchGetItem",
        "BatchWriteItem",  # through boto3's BatchWriter
        "DeleteItem",
        "GetItem",
        "PutItem",
        "Query",
        "Scan",  # rebuildReports: a period's calls and call-backs, from the tables
        "TransactWriteItems",
        "UpdateItem",
    ),
}


def _botocores_own() -> Any:
    """A loader of botocore's data alone: a developer's own (AWS_DATA_PATH, ~/.aws/models) must not be
    written into files the Session takes for botocore's."""
    from botocore.loaders import Loader

    return Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)


def _shapes_reached(shapes: dict[str, Any], roots: list[str]) -> set[str]:
    reached: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        refs = [member["shape"] for member in shape.get("members", {}).values()]
        refs += [shape[key]["shape"] for key in ("member", "key", "value") if key in shape]
        todo.extend(refs)
    return reached


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _undocumented(v) for k, v in value.items() if k != "documentation"}
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def trimmed_model(service: str, operations: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """(API version, the model) of `service` cut to `operations`, from the installed botocore."""
    model = _botocores_own().load_service_model(service, "service-2")
    ops = {name: model["operations"][name] for name in operations}
    roots = [op[key]["shape"] for op in ops.values() for key in ("input", "output") if key in op]
    roots += [error["shape"] for op in ops.values() for error in op.get("errors", [])]
    reached = _shapes_reached(model["shapes"], roots)
    trimmed = {
        "version": model["version"],
        "metadata": model["metadata"],
        "operations": ops,
        "shapes": {name: model["shapes"][name] for name in sorted(reached)},
    }
    return model["metadata"]["apiVersion"], _undocumented(trimmed)


def trimmed_endpoints(services: tuple[str, ...]) -> dict[str, Any]:
    """botocore's endpoints.json with only `services` in each partition's services."""
    endpoints = _botocores_own().load_data("endpoints")
    partitions = []
    for partition in endpoints["partitions"]:
        kept = {name: entry for name, entry in partition["services"].items() if name in services}
        partitions.append({**partition, "services": kept})
    return {**endpoints, "partitions": partitions}


def expected_files() -> dict[Path, str]:
    files = {}
    for service, operations in OPERATIONS.items():
        version, model = trimmed_model(service, operations)
        path = MODELS_DIR / service / version / "service-2.json"
        files[path] = json.dumps(model, indent=1, sort_keys=True) + "\n"
    endpoints = trimmed_endpoints(tuple(OPERATIONS))
    files[MODELS_DIR / "endpoints.json"] = json.dumps(endpoints, indent=1, sort_keys=True) + "\n"
    return files


def main() -> None:
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
