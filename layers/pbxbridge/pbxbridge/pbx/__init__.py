"""The PBX client: our commands to the PBX (`accounts`, `groups`, `makeCall`, `history`, ...). No AWS here."""

from pbxbridge.pbx.client import PbxClient
from pbxbridge.pbx.errors import (
    PbxError,
    PbxInvalidParametersError,
    PbxInvalidTokenError,
    PbxUnavailableError,
    PbxWrongTenantError,
)

__all__ = [
    "PbxClient",
    "PbxError",
    "PbxInvalidParametersError",
    "PbxInvalidTokenError",
    "PbxUnavailableError",
    "PbxWrongTenantError",
]
