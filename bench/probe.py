"""What the cold-start and fault benchmarks share: the webhook run in a fresh process, as Lambda's
runtime would call it (an HTTP API event, a context), in the template's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

# Defines `event(body, request_id)` and `Context` in a probe: the webhook's API Gateway event and
# Lambda's context, as the handler gets them.
WEBHOOK_CALL = r"""
def event(body, request_id="bench"):
    return {"version": "2.0", "routeKey": "POST /pbx", "rawPath": "/pbx", "body": body, "isBase64Encoded": False,
            "headers": {"content-type": "application/x-www-form-urlencoded"},
            "requestContext": {"http": {"method": "POST", "path": "/pbx", "sourceIp": "127.0.0.1"},
                               "requestId": request_id, "stage": "$default", "timeEpoch": 0}}
class Context:
    function_name = "bench"; memory_limit_in_mb = 512; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:eu-central-1:000000000000:function:bench"
    def get_remaining_time_in_millis(self): return 10000
"""


def aws_environment(moto_url: str) -> dict[str, str]:
    """This process's environment with the embedded AWS's settings in place of its own AWS and
    Powertools ones."""
    from local.aws import local_aws_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    return {**env, **local_aws_environment(moto_url)}


def webhook_environment(moto_url: str, key: str) -> dict[str, str]:
    """`aws_environment` with the webhook's own (from the template), its handler's folder and the CRM key."""
    from local.template import Template

    spec = Template().functions()["WebhookFunction"]
    env = aws_environment(moto_url)
    env.update(spec.environment, BENCH_FUNCTION=str(spec.code_dir), BENCH_KEY=key)
    return env


def fresh_process(probe: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Run `probe` in a new interpreter: its wall time, and the JSON it printed last on stderr."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False, timeout=300
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return wall, json.loads(result.stderr.strip().splitlines()[-1])
