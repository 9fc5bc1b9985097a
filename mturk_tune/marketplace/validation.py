"""Checks a request's parameters against botocore's MTurk service model, as the real service does.

botocore validates types, required members and minimums on the client, but not regex patterns
(Reward's ``^[0-9]+(\\.)?[0-9]{0,2}$``) or maximums (MaxResults <= 100); the real service does.
Requests that come over the wire from other clients get no client-side checks at all, so
the marketplace checks everything here, once, for every transport.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.model import OperationNotFoundError, ServiceModel, Shape

from .errors import (
    INVALID_PARAMETER_VALUE,
    MISSING_PARAMETER,
    PARAMETER_OUT_OF_RANGE,
    UNSUPPORTED,
    MTurkError,
)


@lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("mturk")


def operation_names() -> list[str]:
    return list(service_model().operation_names)


def to_datetime(value: Any, where: str) -> datetime:
    """A timestamp member as a UTC datetime: botocore's JSON wire form is epoch seconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        raise MTurkError(f"Value {value!r} at '{where}' is not a timestamp.", INVALID_PARAMETER_VALUE)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            return to_datetime(float(value), where)
        except ValueError:
            pass
        try:
            return to_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")), where)
        except ValueError:
            pass
    raise MTurkError(f"Value {value!r} at '{where}' is not a timestamp.", INVALID_PARAMETER_VALUE)


def _fail(where: str, value: Any, constraint: str, turk_code: str = INVALID_PARAMETER_VALUE) -> MTurkError:
    shown = value if isinstance(value, (int, float)) else repr(value)
    return MTurkError(
        f"1 validation error detected: Value {shown} at '{where}' failed to satisfy constraint: {constraint}",
        turk_code,
    )


def _check(shape: Shape, value: Any, where: str) -> Any:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            raise _fail(where, value, "Member must be a structure")
        return _check_structure(shape, value, where)
    if kind == "list":
        if not isinstance(value, list):
            raise _fail(where, value, "Member must be a list")
        return [_check(shape.member, item, f"{where}.{i + 1}.member") for i, item in enumerate(value)]
    if kind == "string":
        if not isinstance(value, str):
            raise _fail(where, value, "Member must be a string")
        if "min" in meta and len(value) < meta["min"]:
            raise _fail(where, value, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            raise _fail(where, value, f"Member must have length less than or equal to {meta['max']}")
        if "pattern" in meta and not re.match(meta["pattern"], value):
            raise _fail(where, value, f"Member must satisfy regular expression pattern: {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            raise _fail(where, value, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        return value
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _fail(where, value, "Member must be an integer")
        if "min" in meta and value < meta["min"]:
            raise _fail(where, value, f"Member must have value greater than or equal to {meta['min']}",
                        PARAMETER_OUT_OF_RANGE)
        if "max" in meta and value > meta["max"]:
            raise _fail(where, value, f"Member must have value less than or equal to {meta['max']}",
                        PARAMETER_OUT_OF_RANGE)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(where, value, "Member must be a boolean")
        return value
    if kind == "timestamp":
        return to_datetime(value, where)
    return value


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _check_structure(shape: Shape, params: dict, where: str) -> dict:
    prefix = f"{where}." if where else ""
    for name in shape.required_members:
        if params.get(name) is None:
            raise MTurkError(
                f"1 validation error detected: Value null at '{prefix}{_lower_first(name)}' failed to satisfy "
                "constraint: Member must not be null",
                MISSING_PARAMETER,
            )
    checked = {}
    for name, value in params.items():
        if name not in shape.members:
            raise MTurkError(f"Unknown parameter '{prefix}{name}'.", INVALID_PARAMETER_VALUE)
        if value is None:
            continue
        checked[name] = _check(shape.members[name], value, f"{prefix}{_lower_first(name)}")
    return checked


def validate_input(operation: str, params: dict) -> dict:
    """Parameters of ``operation`` checked against the model; timestamps become UTC datetimes."""
    try:
        op = service_model().operation_model(operation)
    except OperationNotFoundError:
        raise MTurkError(f"Unknown operation {operation}.", UNSUPPORTED) from None
    if op.input_shape is None:
        return {}
    return _check_structure(op.input_shape, dict(params), "")
