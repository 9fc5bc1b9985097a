"""Errors raised by the embedded marketplace, shaped like the MTurk API's own.

MTurk answers every failure with one of two modeled errors, ``RequestError`` (the caller's
fault, HTTP 400) or ``ServiceFault`` (the service's, HTTP 500), each carrying a ``Message``
and a ``TurkErrorCode`` such as ``AWS.MechanicalTurk.HitAlreadyExists``. botocore turns them
into ``ClientError`` with ``Error.Code`` set to ``RequestError``/``ServiceFault``.
"""

from __future__ import annotations

REQUEST_ERROR = "RequestError"
SERVICE_FAULT = "ServiceFault"
THROTTLING = "ThrottlingException"

# TurkErrorCodes used by this marketplace. The first group appears in AWS's documentation;
# the others follow MTurk's naming where the documentation names no code.
HIT_ALREADY_EXISTS = "AWS.MechanicalTurk.HitAlreadyExists"
INVALID_MAX_ASSIGNMENTS_INCREASE = "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease"
HIT_DOES_NOT_EXIST = "AWS.MechanicalTurk.HITDoesNotExist"
ASSIGNMENT_DOES_NOT_EXIST = "AWS.MechanicalTurk.AssignmentDoesNotExist"
INVALID_ASSIGNMENT_STATE = "AWS.MechanicalTurk.InvalidAssignmentState"
INVALID_HIT_STATE = "AWS.MechanicalTurk.InvalidHITState"
INSUFFICIENT_FUNDS = "AWS.MechanicalTurk.InsufficientFunds"
PARAMETER_OUT_OF_RANGE = "AWS.ParameterOutOfRange"
INVALID_PARAMETER_VALUE = "AWS.MechanicalTurk.InvalidParameterValue"
MISSING_PARAMETER = "AWS.MissingParameter"
XML_PARSE_ERROR = "AWS.MechanicalTurk.XMLParseError"
DUPLICATE_REQUEST = "AWS.MechanicalTurk.DuplicateRequest"
QUALIFICATION_TYPE_DOES_NOT_EXIST = "AWS.MechanicalTurk.QualificationTypeDoesNotExist"
QUALIFICATION_TYPE_ALREADY_EXISTS = "AWS.MechanicalTurk.QualificationTypeAlreadyExists"
QUALIFICATION_DOES_NOT_EXIST = "AWS.MechanicalTurk.QualificationDoesNotExist"
HIT_TYPE_DOES_NOT_EXIST = "AWS.MechanicalTurk.HITTypeDoesNotExist"
UNSUPPORTED = "AWS.MechanicalTurk.UnsupportedOperation"
# Worker-side refusals (the worker web pages and the simulated crowd see these).
WORKER_BLOCKED = "AWS.MechanicalTurk.WorkerBlocked"
WORKER_NOT_QUALIFIED = "AWS.MechanicalTurk.QualificationRequirementNotMet"
NO_ASSIGNMENTS_AVAILABLE = "AWS.MechanicalTurk.NoMoreAssignmentsAvailable"
ALREADY_WORKING = "AWS.MechanicalTurk.WorkerAlreadyHasAssignment"
NOT_YOUR_ASSIGNMENT = "AWS.MechanicalTurk.AssignmentNotOwned"


class MTurkError(Exception):
    """A failed marketplace call, as MTurk would report it.

    ``code`` is the wire error type (``RequestError``, ``ServiceFault`` or, for injected
    faults, ``ThrottlingException``); ``turk_error_code`` the finer MTurk reason.
    """

    def __init__(self, message: str, turk_error_code: str | None = None, code: str = REQUEST_ERROR):
        super().__init__(message)
        self.code = code
        self.message = message
        self.turk_error_code = turk_error_code

    @property
    def http_status(self) -> int:
        return 500 if self.code == SERVICE_FAULT else 400

    def __repr__(self) -> str:
        return f"MTurkError({self.code}, {self.turk_error_code}, {self.message!r})"
