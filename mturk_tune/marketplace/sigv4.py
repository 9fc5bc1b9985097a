"""Checking AWS Signature Version 4 on requests to the marketplace server, with botocore's own signer.

The server rebuilds the canonical request from what it received (method, path, query, the
headers the client says it signed, the body), lets botocore's ``SigV4Auth`` compute the
signature for the stored secret, and compares. Anything else (unknown key, another service's
scope, a stale date, a tampered body) is refused.
"""

from __future__ import annotations

import hmac
import re
import time
from calendar import timegm
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "mturk-requester"
MAX_CLOCK_SKEW_S = 15 * 60
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class AuthFailure(Exception):
    """A request the server must refuse with HTTP 403; ``code`` is the AWS error type."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def verify(
    method: str,
    path_and_query: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    now: float | None = None,
) -> str:
    """Return the access key of a correctly signed request, or raise AuthFailure."""
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        raise AuthFailure("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise AuthFailure("IncompleteSignatureException", "The Authorization header is not a SigV4 signature.")
    if match["service"] != SERVICE:
        raise AuthFailure("InvalidSignatureException", f"Credential should be scoped to service '{SERVICE}'.")
    secret = secrets.get(match["key"])
    if secret is None:
        raise AuthFailure("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = match["signed"].split(";")
    if "host" not in signed or any(name not in lower for name in signed):
        raise AuthFailure("IncompleteSignatureException", "SignedHeaders must include host and name sent headers.")
    stamp = lower.get("x-amz-date", "")
    if not re.fullmatch(r"\d{8}T\d{6}Z", stamp) or stamp[:8] != match["date"]:
        raise AuthFailure("IncompleteSignatureException", "X-Amz-Date is missing or does not match the credential.")
    signed_at = timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    if abs((time.time() if now is None else now) - signed_at) > MAX_CLOCK_SKEW_S:
        raise AuthFailure("InvalidSignatureException", "Signature expired: the request time is more than 15 "
                                                       "minutes away from the server time.")

    request = AWSRequest(method=method, url=f"http://{lower['host']}{path_and_query}", data=body,
                         headers={name: lower[name] for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(match["key"], secret), SERVICE, match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise AuthFailure("InvalidSignatureException", "The request signature we calculated does not match the "
                                                       "signature you provided.")
    return match["key"]
