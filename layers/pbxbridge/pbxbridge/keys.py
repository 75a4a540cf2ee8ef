"""The CRM key (`crm_token`): kept in SSM, compared in constant time, never logged."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
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


def fetch_keys_from_ssm(current: str, previous: str | None, max_age: int) -> tuple[str, ...]:
    """The current and (during a rotation) previous key, in one cached GetParameters call."""
    from aws_lambda_powertools.utilities import parameters

    names: dict[str, dict[str, Any]] = {current: {}, **({previous: {}} if previous else {})}
    try:
        values = parameters.get_parameters_by_name(
            parameters=names, decrypt=True, max_age=max_age, raise_on_error=False
        )
    except Exception as exc:  # SSM unreachable or refusing: no push can be checked, so none is taken
        raise KeysUnavailableError(type(exc).__name__) from exc
    key = values.get(current)
    if not isinstance(key, str) or not key:
        raise KeysUnavailableError("the current CRM key parameter could not be read")
    old = values.get(previous) if previous else None
    return (key, old) if isinstance(old, str) and old else (key,)
