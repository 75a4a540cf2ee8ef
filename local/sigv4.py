"""SigV4 checking for the local API's IAM-authorised routes, as API Gateway does with AWS_IAM."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)


def signature_is_valid(
    method: str, url: str, headers: Mapping[str, str], body: bytes, credentials: Credentials
) -> bool:
    """True when the request was signed with `credentials` (the local stack's throwaway keys)."""
    match = _AUTHORIZATION.fullmatch(headers.get("Authorization", "").strip())
    timestamp = headers.get("X-Amz-Date", "")
    if not match or match["key"] != credentials.access_key or not timestamp.startswith(match["date"]):
        return False
    lowered = {name.lower(): value for name, value in headers.items()}
    signed = {name: lowered.get(name, "") for name in match["signed"].split(";")}
    request = AWSRequest(method=method, url=url, data=body, headers=signed)
    request.context["timestamp"] = timestamp
    signer = SigV4Auth(credentials, match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, match["signature"])
