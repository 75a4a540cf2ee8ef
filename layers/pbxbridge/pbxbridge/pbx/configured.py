"""The PBX client as a deployment configures it: URL and API from the environment, key from SSM (cached)."""

from __future__ import annotations

from functools import lru_cache

from pbxbridge.pbx.api import make_client
from pbxbridge.pbx.client import LegacyPbxClient
from pbxbridge.pbx.errors import PbxError
from pbxbridge.pbx.models import PbxApiKind
from pbxbridge.pbx.v1 import V1PbxClient


class PbxNotConfiguredError(PbxError):
    code = "pbx_error"


def configured_pbx(
    url: str, token_parameter: str, region: str, max_age: int, api: PbxApiKind | str = PbxApiKind.AUTO
) -> LegacyPbxClient | V1PbxClient:
    from aws_lambda_powertools.utilities import parameters

    if not url:
        raise PbxNotConfiguredError("the PBX URL is not configured (PbxUrl)")
    # One SecureString holds the PBX's key for either API: the legacy `token` or the v1 `X-API-KEY`.
    token = parameters.get_parameter(token_parameter, decrypt=True, max_age=max_age)
    return client_for(url, str(token), region, PbxApiKind(api))


@lru_cache(maxsize=2)
def client_for(url: str, token: str, region: str, api: PbxApiKind = PbxApiKind.AUTO) -> LegacyPbxClient | V1PbxClient:
    # One client (and its connection pool) per key: a rotated key gets a new one. With `auto`, the
    # API is detected here, once (the verdict is kept for the process), and a failed detection is
    # not cached: the next command tries again.
    return make_client(url, token, api, region=region)
