"""The PBX client: our commands to the PBX (`accounts`, `groups`, `makeCall`, `history`, ...). No AWS here.

Names are imported on first use: the webhook reads `pbx.models` through the stores, and must not
pay for importing `requests` on every cold start.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pbxbridge.pbx.client import PbxClient
    from pbxbridge.pbx.errors import (
        PbxError,
        PbxInvalidParametersError,
        PbxInvalidTokenError,
        PbxUnavailableError,
        PbxWrongTenantError,
    )

_HOMES = {
    "PbxClient": "pbxbridge.pbx.client",
    "PbxError": "pbxbridge.pbx.errors",
    "PbxInvalidParametersError": "pbxbridge.pbx.errors",
    "PbxInvalidTokenError": "pbxbridge.pbx.errors",
    "PbxUnavailableError": "pbxbridge.pbx.errors",
    "PbxWrongTenantError": "pbxbridge.pbx.errors",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(name)


__all__ = [
    "PbxClient",
    "PbxError",
    "PbxInvalidParametersError",
    "PbxInvalidTokenError",
    "PbxUnavailableError",
    "PbxWrongTenantError",
]
