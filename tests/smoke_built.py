"""Smoke test of `sam build`'s output (run by `make smoke` in CI, after `sam build`).

The layer is built for arm64 and this machine may be x86_64, so its one compiled dependency that has
no pure-Python fallback (pydantic_core) is overlaid with this machine's wheel of the same version,
and boto3 is added as the Lambda runtime would. Everything else is imported exactly as built.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD = Path(__file__).resolve().parent.parent / ".aws-sam" / "build"
LAYER = BUILD / "PbxbridgeLayer" / "python"
FUNCTION = BUILD / "WebhookFunction"
COMMANDS = BUILD / "CommandsFunction"
RUNTIME_PYTHON = "python3.13"

PROBE = r"""
import base64, json, sys
import app
import pbxbridge.webhook
assert "/PbxbridgeLayer/" in pbxbridge.webhook.__file__, pbxbridge.webhook.__file__
assert "boto3" in sys.modules  # from the runtime (here: the overlay), not from the layer
def event(body, content_type="application/json", b64=False):
    return {"version": "2.0", "routeKey": "POST /pbx", "rawPath": "/pbx", "headers": {"content-type": content_type},
            "requestContext": {"http": {"method": "POST", "path": "/pbx", "sourceIp": "127.0.0.1"},
                               "requestId": "smoke", "stage": "$default", "timeEpoch": 0},
            "body": body, "isBase64Encoded": b64}
class Context:
    function_name = "smoke"; memory_limit_in_mb = 512; aws_request_id = "smoke"
    invoked_function_arn = "arn:aws:lambda:eu-central-1:000000000000:function:smoke"
    def get_remaining_time_in_millis(self): return 10000
# Answered before any AWS call: there is no AWS here.
print(json.dumps([app.lambda_handler(event("!!not base64!!", "application/x-www-form-urlencoded", True), Context()),
                  app.lambda_handler(event("x" * 70000, "text/plain"), Context())]))
"""

COMMANDS_PROBE = r"""
import json, sys
import app
import pbxbridge.commands
assert "/PbxbridgeLayer/" in pbxbridge.commands.__file__, pbxbridge.commands.__file__
class Context:
    function_name = "smoke"; memory_limit_in_mb = 512; aws_request_id = "smoke"
    invoked_function_arn = "arn:aws:lambda:eu-central-1:000000000000:function:smoke"
    def get_remaining_time_in_millis(self): return 10000
print(json.dumps([app.lambda_handler({"cmd": "teleport"}, Context())]))
"""


def fail(message: str) -> None:
    print(f"smoke: FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def check_layer_contents() -> None:
    if not LAYER.is_dir() or not (FUNCTION / "app.py").is_file() or not (COMMANDS / "app.py").is_file():
        fail("run `sam build` first")
    for forbidden in ("boto3", "botocore", "s3transfer"):
        if (LAYER / forbidden).exists():
            fail(f"{forbidden} is in the layer; the runtime provides it")
    sources = [p for p in LAYER.rglob("*.py") if "__pycache__" not in p.parts]
    missing, checked = [], []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not pyc.is_file():
            missing.append(source)
            continue
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        if flags != 0b01:  # hash-based and not checked against the source
            checked.append(pyc)
    if missing:
        fail(f"{len(missing)} modules have no bytecode, e.g. {missing[0]}")
    if checked:
        fail(f"{len(checked)} .pyc files are not unchecked-hash, e.g. {checked[0]}")
    if not list(LAYER.glob("pydantic_core/*aarch64*.so")):
        fail("pydantic_core is not the arm64 build")
    print(f"smoke: layer has bytecode (unchecked-hash) for all {len(sources)} modules, no boto3, arm64 binaries")


def _pip_target(target: Path, *args: str) -> Path:
    subprocess.run(
        [
            RUNTIME_PYTHON,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *args,
        ],
        check=True,
    )
    return target


def import_as_built(work: Path) -> None:
    # sys.path as in Lambda: the function, the layer, then the runtime's boto3. On a machine that is
    # not arm64, this machine's pydantic_core (same version, nothing else) goes before the layer.
    runtime = _pip_target(work / "runtime", "boto3")
    paths = [str(FUNCTION)]
    if platform.machine() not in ("aarch64", "arm64"):
        version = next(LAYER.glob("pydantic_core-*.dist-info")).name.removesuffix(".dist-info").split("-")[1]
        paths.append(str(_pip_target(work / "native", "--no-deps", f"pydantic-core=={version}")))
    layer = work / "PbxbridgeLayer" / "python"
    shutil.copytree(LAYER, layer)
    # Proof that the bytecode is what runs: a source that would fail if it were ever compiled.
    (layer / "pbxbridge" / "webhook.py").write_text("raise SystemExit('the source was compiled, not the .pyc')\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))},
        "PYTHONPATH": os.pathsep.join([*paths, str(layer), str(runtime)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "smoke",
        "AWS_SECRET_ACCESS_KEY": "smoke",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "CALLS_TABLE": "Calls",
        "CALL_EVENTS_TABLE": "CallEvents",
        "CONTACTS_TABLE": "Contacts",
        "CRM_TOKEN_PARAMETER": "/pbxbridge/crm-token",
        "IDEMPOTENCY_TABLE": "Idempotency",
        "PBX_URL": "https://tenant.example.ru",
        "PBX_TOKEN_PARAMETER": "/pbxbridge/pbx-token",
        "POWERTOOLS_SERVICE_NAME": "pbxbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "PbxBridge",
    }
    commands_env = {**env, "PYTHONPATH": env["PYTHONPATH"].replace(str(FUNCTION), str(COMMANDS), 1)}
    commands = subprocess.run(
        [RUNTIME_PYTHON, "-c", COMMANDS_PROBE],
        env=commands_env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if commands.returncode != 0:
        fail(f"importing the built commands handler failed:\n{commands.stderr[-3000:]}")
    answer = json.loads(commands.stdout.strip().splitlines()[-1])[0]
    if answer.get("ok") is not False or answer["error"]["code"] != "invalid_request":
        fail(f"unexpected answer from the built commands handler: {answer}")
    print("smoke: built commands handler imported from the layer and refused an unknown command")
    for name in (
        "HistorySyncFunction",
        "StreamFunction",
        "RecorderFunction",
        # The widget's functions (issue 9).
        "CardFunction",
        "WidgetSocketFunction",
        "WidgetAuthorizerFunction",
        "WidgetApiFunction",
        "WidgetPageFunction",
    ):
        others = {**env, "PYTHONPATH": env["PYTHONPATH"].replace(str(FUNCTION), str(BUILD / name), 1)}
        imported = subprocess.run(
            [RUNTIME_PYTHON, "-c", "import app, pbxbridge; assert '/PbxbridgeLayer/' in pbxbridge.__file__"],
            env=others,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if imported.returncode != 0:
            fail(f"importing the built {name} failed:\n{imported.stderr[-3000:]}")
    print("smoke: built reconciliation, stream, recorder and widget handlers import from the layer")
    result = subprocess.run(
        [RUNTIME_PYTHON, "-c", PROBE], env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        fail(f"importing the built handler failed:\n{result.stderr[-3000:]}")
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    statuses = [answer["statusCode"] for answer in answers]
    bodies = [json.loads(answer["body"]) for answer in answers]
    if statuses != [400, 413] or bodies != [{"error": "Invalid parameters"}] * 2:
        fail(f"unexpected answers from the built handler: {answers}")
    print("smoke: built handler imported from the built layer's bytecode and answered 400 and 413")


def main() -> None:
    check_layer_contents()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        import_as_built(work)
    print("smoke: OK")


if __name__ == "__main__":
    main()
