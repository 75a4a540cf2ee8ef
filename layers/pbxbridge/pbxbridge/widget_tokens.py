"""Widget tokens: short-lived HS256 JWTs naming one PBX login.

The commands function signs them (issueWidgetToken), the widget's functions check them: this module
sits below both, with the protocol's formats (it reads no settings and calls no AWS).

The signing key lives in an SSM SecureString (rotatable: a previous key is accepted while set).
PyJWT checks the signature with `hmac.compare_digest` (HS256 only, whatever the token's header
says), the expiry and not-before (5 s of leeway), the audience, the issuer and the required claims;
a key shorter than the hash is never used, a token living longer than MAX_TTL_SECONDS is refused, and
a token is never logged, and neither is a key.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

AUDIENCE = "pbxbridge-widget"
ISSUER = "pbxbridge"
ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 8 * 3600  # one working shift: the CRM's page asks for a fresh one on load
MAX_TTL_SECONDS = 24 * 3600
# HS256 keys shorter than the hash are brute-forceable; refuse to sign with one.
MIN_KEY_BYTES = 32
_LEEWAY_SECONDS = 5  # clocks of Lambda hosts drift a little
_REQUIRED_CLAIMS = ["sub", "aud", "iss", "iat", "nbf", "exp"]
_TOKEN_OPTIONS: dict[str, Any] = {"require": _REQUIRED_CLAIMS, "strict_aud": True, "enforce_minimum_key_length": True}


class InvalidWidgetTokenError(ValueError):
    """Missing, malformed, forged or expired: the message says which, never the token."""


@dataclass(frozen=True, slots=True)
class WidgetIdentity:
    login: str
    expires_at: int  # epoch seconds


def issue_token(login: str, key: str, ttl: int = DEFAULT_TTL_SECONDS, now: float | None = None) -> tuple[str, int]:
    """A token for `login`, valid `ttl` seconds; returns (token, expires_at)."""
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ValueError(f"the widget token key must be at least {MIN_KEY_BYTES} bytes")
    if not 60 <= ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 60 and {MAX_TTL_SECONDS} seconds")
    issued = int(now if now is not None else time.time())
    expires = issued + ttl
    claims = {
        "sub": login,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM), expires


def verify_token(token: object, keys: Sequence[str]) -> WidgetIdentity:
    """The login a token names, if one of `keys` signed it and it has not expired."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise InvalidWidgetTokenError("no token")
    expired = False
    for key in keys:
        if len(key.encode()) < MIN_KEY_BYTES:  # unset, or too short to trust what it signed
            continue
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],  # never the token's own choice (no "none", no RS/HS confusion)
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=_LEEWAY_SECONDS,
                options=_TOKEN_OPTIONS,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            expired = True  # signed by this key, but too old; another key cannot make it younger
            continue
        except jwt.InvalidTokenError:
            continue
        login = claims.get("sub")
        if not isinstance(login, str) or not login:
            raise InvalidWidgetTokenError("the token names no user")
        if int(claims["exp"]) - int(claims["iat"]) > MAX_TTL_SECONDS:
            # issue_token never signs one: a longer life means the key signed it somewhere else.
            raise InvalidWidgetTokenError("the token is not valid")
        return WidgetIdentity(login=login, expires_at=int(claims["exp"]))
    raise InvalidWidgetTokenError("the token has expired" if expired else "the token is not valid")


def bearer(header: object) -> str | None:
    """The token of an `Authorization: Bearer ...` header."""
    if not isinstance(header, str):
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
