"""MTurk's wire protocol (AWS JSON 1.1) over a ``Marketplace``: bytes in, (status, headers, bytes) out.

Every transport (moto's mock, the in-process ``local`` client, the HTTP server) answers
requests through ``handle``, so they all speak exactly the same dialect:

- request: POST with ``X-Amz-Target: MTurkRequesterServiceV20170117.<Operation>`` and a JSON body;
- success: HTTP 200, the response structure as JSON, timestamps as epoch seconds;
- failure: HTTP 400 ``{"__type": "RequestError", "Message": ..., "TurkErrorCode": ...}``
  (``ServiceFault`` with HTTP 500), which botocore raises as ``ClientError``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from .errors import REQUEST_ERROR, SERVICE_FAULT, UNSUPPORTED, MTurkError
from .faults import FaultPlan, service_fault, throttled
from .service import Marketplace

TARGET_PREFIX = "MTurkRequesterServiceV20170117"
CONTENT_TYPE = "application/x-amz-json-1.1"


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _headers(length: int) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        "Content-Length": str(length),
        "x-amzn-RequestId": str(uuid.uuid4()),
    }


def error_response(error: MTurkError) -> tuple[int, dict[str, str], bytes]:
    """An MTurkError as MTurk sends it."""
    payload: dict[str, Any] = {"__type": error.code, "Message": error.message}
    if error.turk_error_code:
        payload["TurkErrorCode"] = error.turk_error_code
    if error.code not in (REQUEST_ERROR, SERVICE_FAULT):
        payload["message"] = error.message  # e.g. ThrottlingException, which botocore reads from "message"
    body = json.dumps(payload).encode()
    return error.http_status, _headers(len(body)), body


def operation_from_target(target: str | None) -> str:
    prefix, _, operation = (target or "").partition(".")
    if prefix != TARGET_PREFIX or not operation:
        raise MTurkError(f"Unknown X-Amz-Target {target!r}; expected {TARGET_PREFIX}.<Operation>.", UNSUPPORTED)
    return operation


def handle(
    market: Marketplace, target: str | None, body: bytes | str | None, faults: FaultPlan | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Answer one requester API request (``faults`` injects throttling and failures)."""
    fate = faults.draw() if faults is not None else None
    if fate == "throttle":
        return error_response(throttled())
    if fate == "fault":
        return error_response(service_fault())
    try:
        operation = operation_from_target(target)
        try:
            params = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise MTurkError("The request body is not valid JSON.", "AWS.MalformedQueryString") from None
        if not isinstance(params, dict):
            raise MTurkError("The request body must be a JSON object.", "AWS.MalformedQueryString")
        result = market.call(operation, params)
        if fate == "drop":
            raise service_fault("The request was processed but its response was lost.")
    except MTurkError as error:
        return error_response(error)
    except Exception as exc:  # a bug must still answer like a service, not hang the client
        return error_response(MTurkError(f"Internal error: {type(exc).__name__}: {exc}", None, SERVICE_FAULT))
    out = json.dumps(_wire(result)).encode()
    return 200, _headers(len(out)), out
