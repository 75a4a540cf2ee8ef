"""AWS clients for the functions: one boto3 Session per process, and requests bounded by a deadline.

A push has one budget for everything it asks of AWS (the key from SSM, the directory, its reads and
writes), not a timeout per request: `deadline()` sets it, and every request made through a
`BoundedClient` inside it gets the time that is left, as its read timeout and as the limit on its
retries. The SDK's own retries are off for these clients: it would sleep and retry past the budget.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, DataNotFoundError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as AwsConnectionError
from botocore.httpsession import URLLib3Session
from botocore.loaders import Loader

SERVICE_MODELS = os.path.join(os.path.dirname(__file__), "service_models")


@lru_cache(maxsize=1)
def session() -> boto3.session.Session:
    """One Session for every client of the process: each Session loads its own copy of the endpoint
    rules and service models, which a cold start pays for again with every extra Session.

    It builds clients of the services in SERVICE_MODELS only (SSM and DynamoDB), from botocore's own
    data cut down to what the functions use: each model cut to the operations they call (SSM's whole
    model is 1.6 MB of JSON, 20-40 ms of a cold start for one GetParameters; DynamoDB's ~10 ms), and
    endpoints.json cut to those services (1.25 MB whole, ~18 ms). A client has only those operations;
    `python -m local.service_models` lists them and writes the files, and a test finds any call in
    the package that is missing. Clients of other services come from boto3's default Session."""
    core = botocore.session.get_session()
    data_path = core.get_config_variable("data_path") or ""  # AWS_DATA_PATH
    user_paths = [os.path.expanduser(os.path.expandvars(path)) for path in data_path.split(os.pathsep) if path]
    core.register_component("data_loader", ModelLoader(user_paths))
    return boto3.session.Session(botocore_session=core)


class ModelLoader(Loader):  # type: ignore[misc]
    """botocore's Loader for the Session above, differing from it in three ways:

    - It reads SERVICE_MODELS before botocore's own data, and a user's data (AWS_DATA_PATH,
      ~/.aws/models) before both, as botocore reads a user's before its own.
    - The services it knows are those in SERVICE_MODELS. botocore lists all of its ~450 to learn
      whether it knows one (2,800 file checks, once for the model and once for the endpoint rules:
      ~17 ms of the first client here, more on Lambda's file system). A client of another service is
      refused with botocore's UnknownServiceError naming the ones it builds: endpoints.json here has
      no entries for the others, whose endpoints would be resolved wrongly (global ones, S3).
    - SERVICE_MODELS counts as botocore's own data, which it is, cut down. botocore takes an
      endpoints.json from elsewhere for a user's override and passes the URL it gives to the endpoint
      rules as an explicit endpoint, which would change how every request of our clients is routed.
    """

    def __init__(self, user_paths: list[str]) -> None:
        paths = [*user_paths, Loader.CUSTOMER_DATA_PATH, SERVICE_MODELS, Loader.BUILTIN_DATA_PATH]
        super().__init__(extra_search_paths=paths, include_default_search_paths=False)
        self._services = sorted(entry.name for entry in os.scandir(SERVICE_MODELS) if entry.is_dir())

    def list_available_services(self, type_name: str) -> list[str]:
        return [service for service in self._services if self._has(service, type_name)]

    def _has(self, service: str, type_name: str) -> bool:
        try:
            return bool(self.list_api_versions(service, type_name))
        except DataNotFoundError:
            return False

    def is_builtin_path(self, path: str) -> bool:
        return os.path.dirname(path) == SERVICE_MODELS or bool(super().is_builtin_path(path))


@dataclass(frozen=True, slots=True)
class Deadline:
    """When the work must be done (`time.monotonic()`), and the most one attempt of a request may take,
    so that a connection that hangs leaves time for another attempt on a fresh one."""

    expires: float
    attempt_seconds: float

    def remaining(self) -> float:
        return self.expires - time.monotonic()


_current: ContextVar[Deadline | None] = ContextVar("pbxbridge_deadline", default=None)


@contextmanager
def deadline(seconds: float, attempt_seconds: float | None = None) -> Iterator[Deadline]:
    """Every request made through a BoundedClient inside this block shares `seconds`. Nested, the
    inner deadline never extends the outer one: a refresh given its own small budget inside a push
    can only use less of the push's time, never more."""
    outer = _current.get()
    expires = time.monotonic() + seconds
    attempt = attempt_seconds or seconds
    if outer is not None:
        expires = min(expires, outer.expires)
        attempt = min(attempt, outer.attempt_seconds)
    token = _current.set(Deadline(expires, attempt))
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


class DeadlineExceededError(BotoCoreError):  # type: ignore[misc]
    """No time was left for (another attempt of) a request."""

    fmt = "no time left for {operation} within the deadline"


# Worth another attempt: AWS throttled us or failed, or the network did. Anything else it refused will
# be refused again.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
# An attempt with less time than this left is not started: it could not finish.
_MIN_ATTEMPT_SECONDS = 0.05
_MAX_PAUSE_SECONDS = 0.2


def is_retryable(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return exc.response.get("Error", {}).get("Code") in _RETRYABLE_CODES or status >= 500
    # Connection refused or reset, DNS, connect and read timeouts.
    return isinstance(exc, AwsConnectionError | HTTPClientError) and not isinstance(exc, DeadlineExceededError)


class BoundedClient:
    """A boto3 client whose operations we retry ourselves: within the current deadline when there is
    one (each attempt's read timeout is what is left of it), else up to `attempts` times.

    Everything that is not an operation (`meta`, `exceptions`, paginators) is the client's own.
    """

    def __init__(self, client: Any, attempts: int = 2) -> None:
        self._client = client
        self._attempts = attempts
        self._operations = frozenset(client.meta.method_to_api_mapping)
        self.meta = client.meta
        self.exceptions = client.exceptions
        client.meta.events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}", _read_timeout)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._operations:
            return attribute
        return lambda **params: self._call(attribute, params)

    def _call(self, operation: Callable[..., Any], params: dict[str, Any]) -> Any:
        bound = _current.get()
        attempt = 0
        while True:
            attempt += 1
            if bound is not None and bound.remaining() < _MIN_ATTEMPT_SECONDS:
                raise DeadlineExceededError(operation=getattr(operation, "__name__", "a request"))
            try:
                if bound is not None and not PER_REQUEST_READ_TIMEOUTS:
                    return _within(operation, params, min(bound.attempt_seconds, bound.remaining()))
                return operation(**params)
            except (ClientError, BotoCoreError) as exc:
                if not is_retryable(exc) or attempt >= self._attempts + (1 if bound is not None else 0):
                    raise
                # Full jitter on a short exponential: concurrent containers do not retry in step.
                pause = random.uniform(0, min(_MAX_PAUSE_SECONDS, 0.025 * 2**attempt))  # noqa: S311
                if bound is not None and bound.remaining() - pause < _MIN_ATTEMPT_SECONDS:
                    raise
                time.sleep(pause)


# botocore reads a per-request `read_timeout` from the request context since 2026 (boto/botocore#3770).
# The Lambda runtime's own boto3 may be older: there, an attempt is waited for in a worker thread for
# the time the deadline allows, and left to finish (or time out) on its own. Every write of the webhook
# is idempotent, so a retry after an abandoned attempt that did reach DynamoDB changes nothing.
PER_REQUEST_READ_TIMEOUTS = hasattr(URLLib3Session, "_get_request_timeout")


@lru_cache(maxsize=1)
def _workers() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="aws-attempt")


def _within(operation: Callable[..., Any], params: dict[str, Any], seconds: float) -> Any:
    from concurrent.futures import TimeoutError as FutureTimeoutError

    future = _workers().submit(operation, **params)
    try:
        return future.result(timeout=max(seconds, 0.001))
    except FutureTimeoutError:
        raise ReadTimeoutError(endpoint_url=getattr(operation, "__name__", "a request")) from None


def _read_timeout(context: dict[str, Any], **_: Any) -> None:
    """Each attempt may wait for an answer only as long as the deadline allows (botocore reads the
    request context's `read_timeout` per request; the client's own is the ceiling elsewhere)."""
    bound = _current.get()
    if bound is not None and PER_REQUEST_READ_TIMEOUTS:
        context["read_timeout"] = max(0.001, min(bound.attempt_seconds, bound.remaining()))


def bounded_client(service: str, *, connect_timeout: float, read_timeout: float, attempts: int = 2) -> BoundedClient:
    """A client of `service` from the process's one Session, with the SDK's retries off (ours apply)."""
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1},
        tcp_keepalive=True,
    )
    return BoundedClient(session().client(service, config=config), attempts=attempts)
