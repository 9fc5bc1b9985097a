"""Qualification requirements: checking a worker's qualification value against a comparator.

A worker's value is an int, a ``Locale`` (country and optional subdivision), or ``None`` when
the worker lacks the qualification (never granted, or revoked). As on MTurk, a worker without
the qualification meets no requirement except ``DoesNotExist``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import INVALID_PARAMETER_VALUE, MTurkError

PERCENT_APPROVED = "000000000000000000L0"
NUMBER_HITS_APPROVED = "00000000000000000040"
LOCALE = "00000000000000000071"
ADULT = "00000000000000000060"
MASTERS_SANDBOX = "2ARFPLSP75KLA8M8DH1HTEQFJHVNQK"
MASTERS_PRODUCTION = "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"
# System qualification types exist without CreateQualificationType; values come from the
# worker's history (approval rate, approved count) or profile (locale, adult). Only MTurk
# grants Masters, so here nobody holds it.
SYSTEM_TYPES = {PERCENT_APPROVED, NUMBER_HITS_APPROVED, LOCALE, ADULT, MASTERS_SANDBOX, MASTERS_PRODUCTION}

NUMERIC_COMPARATORS = {"LessThan", "LessThanOrEqualTo", "GreaterThan", "GreaterThanOrEqualTo", "EqualTo", "NotEqualTo"}
SET_COMPARATORS = {"In", "NotIn"}
EXISTENCE_COMPARATORS = {"Exists", "DoesNotExist"}


@dataclass(frozen=True)
class Locale:
    country: str
    subdivision: str | None = None

    def matches(self, wanted: dict) -> bool:
        if wanted.get("Country") != self.country:
            return False
        return wanted.get("Subdivision") in (None, self.subdivision)


WorkerValue = int | Locale | None


def check_requirement_shape(req: dict) -> None:
    """Refuse requirements MTurk would refuse at CreateHITType (values missing or of the wrong kind)."""
    comparator = req["Comparator"]
    ints = req.get("IntegerValues") or []
    locales = req.get("LocaleValues") or []
    where = f"QualificationRequirement {req['QualificationTypeId']} ({comparator})"
    if comparator in EXISTENCE_COMPARATORS:
        if ints or locales:
            raise MTurkError(f"{where} takes no IntegerValues or LocaleValues.", INVALID_PARAMETER_VALUE)
        return
    if req["QualificationTypeId"] == LOCALE:
        if ints or not locales:
            raise MTurkError(f"{where}: the Locale qualification compares LocaleValues.", INVALID_PARAMETER_VALUE)
        if comparator not in {"EqualTo", "NotEqualTo"} | SET_COMPARATORS:
            raise MTurkError(f"{where}: Locale supports EqualTo, NotEqualTo, In and NotIn.", INVALID_PARAMETER_VALUE)
        if comparator in {"EqualTo", "NotEqualTo"} and len(locales) != 1:
            raise MTurkError(f"{where} takes exactly one LocaleValue.", INVALID_PARAMETER_VALUE)
        return
    if locales or not ints:
        raise MTurkError(f"{where} needs IntegerValues.", INVALID_PARAMETER_VALUE)
    if comparator in NUMERIC_COMPARATORS and len(ints) != 1:
        raise MTurkError(f"{where} takes exactly one IntegerValue.", INVALID_PARAMETER_VALUE)


def meets(req: dict, value: WorkerValue) -> bool:
    """Does a worker with ``value`` for the requirement's qualification type satisfy it?"""
    comparator = req["Comparator"]
    if comparator == "DoesNotExist":
        return value is None
    if value is None:
        return False
    if comparator == "Exists":
        return True
    if isinstance(value, Locale):
        hits = [value.matches(loc) for loc in req.get("LocaleValues") or []]
        return any(hits) if comparator in ("EqualTo", "In") else not any(hits)
    ints = req.get("IntegerValues") or []
    if comparator == "In":
        return value in ints
    if comparator == "NotIn":
        return value not in ints
    target = ints[0] if ints else 0
    return {
        "LessThan": value < target,
        "LessThanOrEqualTo": value <= target,
        "GreaterThan": value > target,
        "GreaterThanOrEqualTo": value >= target,
        "EqualTo": value == target,
        "NotEqualTo": value != target,
    }[comparator]
