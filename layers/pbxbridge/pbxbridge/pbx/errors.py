"""What can go wrong when we command the PBX, as exceptions a caller can act on.

Each carries the PBX's own message (never our key) and a stable `code` for machines.
"""

from __future__ import annotations


class PbxError(Exception):
    code = "pbx_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class PbxInvalidParametersError(PbxError):
    """400: the PBX rejected a parameter (its message names it, e.g. `Invalid parameters: [cmd]`)."""

    code = "invalid_parameters"


class PbxInvalidTokenError(PbxError):
    """401: the PBX key is wrong or was rotated."""

    code = "invalid_token"


class PbxWrongTenantError(PbxError):
    """3xx: the PBX redirects, which live PBXs do for a wrong tenant domain."""

    code = "wrong_tenant"


class PbxUnavailableError(PbxError):
    """5xx, a timeout, a broken connection, or not JSON where JSON was due.

    `request_sent` is False only when the connection failed before the request left: then the PBX
    surely did nothing. Otherwise a `makeCall` may or may not have dialled.
    """

    code = "pbx_unavailable"

    def __init__(self, message: str, *, status: int | None = None, request_sent: bool = True) -> None:
        super().__init__(message, status=status)
        self.request_sent = request_sent


class PbxIntegrationDisabledError(PbxInvalidTokenError):
    """401 `Domain disabled`: the tenant's CRM integration is switched off in the PBX cabinet."""


class PbxKeyMisplacedError(PbxInvalidTokenError):
    """401 for a key that is not shaped like the PBX's API keys: most often our own `crm_token`
    pasted where the key the PBX cabinet issued belongs."""


class PbxPagingError(PbxError):
    """A paged list that did not end within our cap: what was read is not the whole list, so nothing
    (the directory sync above all) may act on it as if it were."""


class PbxUnsupportedError(PbxError):
    """What the PBX's API cannot do at all (caller ids on the legacy API): no retry changes it."""

    code = "invalid_request"
