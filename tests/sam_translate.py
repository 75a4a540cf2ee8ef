"""Translate template.yaml with the SAM translator, as CloudFormation's transform will on deploy.

`sam validate` and cfn-lint do not catch everything the transform refuses (an IAM authorizer on an
HTTP API that does not enable it, say); this runs the transform itself. Run by `make sam-validate`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


def translate() -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")
    # Local paths are what `sam build` packages; the transform wants S3 locations in their place.
    text = re.sub(r"(CodeUri|ContentUri): \S+", r"\1: s3://bucket/key", TEMPLATE.read_text())
    return dict(transform(yaml_parse(text), {}, NoManagedPolicies()))


def main() -> None:
    if sys.argv[1:] == ["--json"]:  # the whole result, for tests/test_least_privilege.py
        print(json.dumps(translate()))
        return
    resources = translate()["Resources"]
    kinds: dict[str, int] = {}
    for resource in resources.values():
        kinds[resource["Type"]] = kinds.get(resource["Type"], 0) + 1
    print("sam transform: OK,", json.dumps(dict(sorted(kinds.items()))))
    if len(sys.argv) > 1:
        print(json.dumps(resources[sys.argv[1]], indent=2))


if __name__ == "__main__":
    main()
