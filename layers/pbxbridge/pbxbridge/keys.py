"""The CRM key (`crm_token`): kept in SSM (SecureString), compared in constant time, never logged."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from functools import lru_cache
from typing import Any

from pbxbridge.aws import bounded_client, deadline

logger = logging.getLogger(__name__)


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
def ssm_client() -> Any:
    """SSM on the process's one Session, bounded by the push's deadline (botocore's default timeout is
    60 s). One GetParameters call reads both keys: Powertools' parameters utility would add ~20 ms of
    imports to every cold start (all its providers, boto3's resource layer) for that one call, and
    its cache does not fit (it keeps only what it found, below)."""
    return bounded_client("ssm", connect_timeout=0.25, read_timeout=1.0, attempts=2)


# (current, previous) parameter names -> (monotonic expiry, keys, monotonic time they were read). Our own
# cache, instead of Powertools': Powertools caches only parameters it found, so a configured but
# missing previous key would send every push to SSM.
_keys_cache: dict[tuple[str, str | None], tuple[float, tuple[str, ...], float]] = {}

# A refresh while keys are at hand gets this much of the push's time: SSM hanging must not cost the
# push its answer when the keys read minutes ago are still there to check it.
REFRESH_SECONDS = 0.25
# After a failed refresh, the keys at hand are used and SSM is asked again this much later, so an SSM
# outage costs one push in this many seconds a short wait, not every push.
RETRY_REFRESH_SECONDS = 15.0
# Keys at hand are used this long past their time at most: a rotation still takes effect during an
# SSM outage that lasts longer.
STALE_KEYS_SECONDS = 3600.0


def clear_key_cache() -> None:
    _keys_cache.clear()


def fetch_keys_from_ssm(current: str, previous: str | None, max_age: int) -> tuple[str, ...]:
    """The current and (during a rotation) previous key, in one GetParameters call per `max_age`.

    Bounded by the current deadline. When a refresh fails and keys read less than STALE_KEYS_SECONDS
    ago are at hand, those are used (and SSM is asked again RETRY_REFRESH_SECONDS later).
    """
    now = time.monotonic()
    cached = _keys_cache.get((current, previous))
    if cached and cached[0] > now:
        return cached[1]
    usable = cached if cached and now - cached[2] < max_age + STALE_KEYS_SECONDS else None
    try:
        with deadline(REFRESH_SECONDS) if usable else nullcontext():
            keys = _read_keys(current, previous)
    except KeysUnavailableError:
        if usable is None:
            raise
        logger.warning("CRM keys could not be refreshed; the keys at hand are used", exc_info=True)
        _keys_cache[(current, previous)] = (now + RETRY_REFRESH_SECONDS, usable[1], usable[2])
        return usable[1]
    _keys_cache[(current, previous)] = (now + max_age, keys, now)
    return keys


def _read_keys(current: str, previous: str | None) -> tuple[str, ...]:
    names = [current, previous] if previous else [current]
    try:
        response = ssm_client().get_parameters(Names=names, WithDecryption=True)
    except Exception as exc:  # SSM unreachable or refusing: no push can be checked, so none is taken
        raise KeysUnavailableError(type(exc).__name__) from exc
    # A name SSM does not know comes back in InvalidParameters, not as an error.
    values = {parameter.get("Name"): parameter.get("Value") for parameter in response.get("Parameters", [])}
    key = values.get(current)
    if not isinstance(key, str) or not key:
        raise KeysUnavailableError("the current CRM key parameter could not be read")
    old = values.get(previous) if previous else None
    return (key, old) if isinstance(old, str) and old else (key,)
