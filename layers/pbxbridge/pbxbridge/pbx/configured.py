"""The PBX client as a deployment configures it: URL from the environment, key from SSM (cached)."""

from __future__ import annotations

from functools import lru_cache

from pbxbridge.pbx.client import PbxClient
from pbxbridge.pbx.errors import PbxError


class PbxNotConfiguredError(PbxError):
    code = "pbx_error"


def configured_pbx(url: str, token_parameter: str, region: str, max_age: int) -> PbxClient:
    from aws_lambda_powertools.utilities import parameters

    if not url:
        raise PbxNotConfiguredError("the PBX URL is not configured (PbxUrl)")
    token = parameters.get_parameter(token_parameter, decrypt=True, max_age=max_age)
    return client_for(url, str(token), region)


@lru_cache(maxsize=2)
def client_for(url: str, token: str, region: str) -> PbxClient:
    # One client (and its connection pool) per key: a rotated key gets a new one.
    return PbxClient(url, token, region=region)
