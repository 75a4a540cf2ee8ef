"""The template's functions, run in this process the way Lambda runs them."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.template import LOCAL_ACCOUNT, LOCAL_REGION, LocalFunctionSpec


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    timeout_seconds: int
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_seconds * 1000


# Lambda gives every function its own process; here they share one, and with it Powertools' module
# state (the logger's context, the pending metrics). Invocations therefore take turns, all functions
# together, so each sees that state as its own environment would.
_ONE_AT_A_TIME = threading.RLock()


class LocalFunction:
    """One function's handler, loaded from its CodeUri with its template environment."""

    def __init__(self, spec: LocalFunctionSpec) -> None:
        self.spec = spec
        self._lock = _ONE_AT_A_TIME
        os.environ.update(spec.environment)
        os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", spec.logical_id)
        self.handler = self._load()

    def _load(self) -> Callable[[dict[str, Any], Any], Any]:
        module_name, function_name = self.spec.handler.rsplit(".", 1)
        path = self.spec.code_dir / f"{module_name.replace('.', '/')}.py"
        unique = f"lambda_{self.spec.logical_id}_{module_name}"
        loader_spec = importlib.util.spec_from_file_location(unique, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[unique] = module
        loader_spec.loader.exec_module(module)
        handler: Callable[[dict[str, Any], Any], Any] = getattr(module, function_name)
        return handler

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=self.spec.logical_id, timeout_seconds=self.spec.timeout)
        with self._lock:
            result = self.handler(event, context)
        # Lambda hands back what json.dumps makes of the result: a tuple becomes a list, a datetime fails.
        return json.loads(json.dumps(result))
