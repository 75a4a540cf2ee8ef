"""The CRM key (`crm_token`): kept in SSM, compared in constant time, never logged."""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any


class KeysUnavailableError(RuntimeError):
    """The current key could not be read, so no push can be trusted (answered 5xx, not 401)."""


def key_matches(presented: object, keys: Sequence[str]) -> bool:
    """True when `presented` equals one of `keys`; every key is compared, so timing reveals nothing."""
    if not isinstance(presented, str) or not presented:
        return False
    given = presented.encode("utf-8", "surrogatepass")
    matched = False
    for key in keys:
        if key:
            matched |= hmac.compare_digest(given, key.encode("utf-8"))
    return matched


@lru_cache(maxsize=1)
def ssm_provider() -> Any:
    """Powertools' SSM provider with timeouts that fit a ringing phone (botocore's default is 60 s)."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from botocore.config import Config

    return SSMProvider(
        boto_config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"})
    )


# (current, previous) parameter names -> (monotonic expiry, keys). Our own cache, instead of Powertools':
# Powertools caches only parameters it found, so a configured but missing previous key would send
# every push to SSM.
_keys_cache: dict[tuple[str, str | None], tuple[float, tuple[str, ...]]] = {}


def clear_key_cache() -> None:
    _keys_cache.clear()


def fetch_keys_from_ssm(current: str, previous: str | None, max_age: int) -> tuple[str, ...]:
    """The current and (during a rotation) previous key, in one GetParameters call per `max_age`."""
    now = time.monotonic()
    cached = _keys_cache.get((current, previous))
    if cached and cached[0] > now:
        return cached[1]
    names: dict[str, dict[str, Any]] = {current: {}, **({previous: {}} if previous else {})}
    try:
        values = ssm_provider().get_parameters_by_name(parameters=names, decrypt=True, max_age=0, raise_on_error=False)
    except Exception as exc:  # SSM unreachable or refusing: no push can be checked, so none is taken
        raise KeysUnavailableError(type(exc).__name__) from exc
    key = values.get(current)
    if not isinstance(key, str) or not key:
        raise KeysUnavailableError("the current CRM key parameter could not be read")
    old = values.get(previous) if previous else None
    keys = (key, old) if isinstance(old, str) and old else (key,)
    _keys_cache[(current, previous)] = (now + max_age, keys)
    return keys
