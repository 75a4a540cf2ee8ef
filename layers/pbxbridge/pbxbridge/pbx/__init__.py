"""The PBX clients: our commands to the PBX (`accounts`, `groups`, `makeCall`, `history`, ...), over
the legacy `/sys/crm_api.wcgp` API or `crmapi/v1`. No AWS here.

Names are imported on first use: the webhook reads `pbx.models` through the stores, and must not
pay for importing `requests` on every cold start.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pbxbridge.pbx.api import PbxApi, make_client
    from pbxbridge.pbx.client import LegacyPbxClient, PbxClient
    from pbxbridge.pbx.errors import (
        PbxError,
        PbxIntegrationDisabledError,
        PbxInvalidParametersError,
        PbxInvalidTokenError,
        PbxKeyMisplacedError,
        PbxPagingError,
        PbxUnavailableError,
        PbxWrongTenantError,
    )
    from pbxbridge.pbx.v1 import V1PbxClient

_HOMES = {
    "PbxApi": "pbxbridge.pbx.api",
    "make_client": "pbxbridge.pbx.api",
    "LegacyPbxClient": "pbxbridge.pbx.client",
    "PbxClient": "pbxbridge.pbx.client",
    "V1PbxClient": "pbxbridge.pbx.v1",
    "PbxError": "pbxbridge.pbx.errors",
    "PbxIntegrationDisabledError": "pbxbridge.pbx.errors",
    "PbxInvalidParametersError": "pbxbridge.pbx.errors",
    "PbxInvalidTokenError": "pbxbridge.pbx.errors",
    "PbxKeyMisplacedError": "pbxbridge.pbx.errors",
    "PbxPagingError": "pbxbridge.pbx.errors",
    "PbxUnavailableError": "pbxbridge.pbx.errors",
    "PbxWrongTenantError": "pbxbridge.pbx.errors",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(name)


__all__ = [
    "LegacyPbxClient",
    "PbxApi",
    "PbxClient",
    "PbxError",
    "PbxIntegrationDisabledError",
    "PbxInvalidParametersError",
    "PbxInvalidTokenError",
    "PbxKeyMisplacedError",
    "PbxPagingError",
    "PbxUnavailableError",
    "PbxWrongTenantError",
    "V1PbxClient",
    "make_client",
]
