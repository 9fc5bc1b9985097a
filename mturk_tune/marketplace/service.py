"""The embedded MTurk-compatible marketplace: the requester API's state machine plus the worker side.

``Marketplace`` keeps all state in SQLite, so a marketplace reopened on the same file (another
process, or after a crash) continues where the last one stopped. Requester operations are
methods named like boto3's (``create_hit``, ``list_hits``, ...) that take the API's parameter
names as keywords and return the API's response dicts (timestamps as UTC ``datetime``), or
raise ``MTurkError``. ``call("CreateHIT", {...})`` does the same by operation name.

Time-driven transitions (HIT expiry, abandoned assignments, auto-approval) are evaluated
lazily against ``clock()`` at the start of every call, so an injected clock can jump ahead.

This module must not import moto: moto_backend.py, local.py and server.py adapt it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import errors as E
from .documents import ParsedQuestion, build_answer_xml, parse_question
from .errors import MTurkError
from .money import (
    assignment_fee_cents,
    bonus_fee_cents,
    format_amount,
    parse_amount,
)
from .qualifications import (
    ADULT,
    LOCALE,
    NUMBER_HITS_APPROVED,
    PERCENT_APPROVED,
    SYSTEM_TYPES,
    Locale,
    WorkerValue,
    check_requirement_shape,
    meets,
)
from .schema import migrate
from .validation import to_datetime, validate_input

SANDBOX_START_BALANCE = "10000.00"
DEFAULT_PAGE_SIZE = 10  # MTurk's List* operations return 10 results unless MaxResults says otherwise
TOKEN_LIFETIME_S = 24 * 3600
DEFAULT_AUTO_APPROVAL_DELAY_S = 30 * 24 * 3600
OVERRIDE_REJECTION_WINDOW_S = 30 * 24 * 3600
MIN_DURATION_S, MAX_DURATION_S = 30, 365 * 24 * 3600
MAX_AUTO_APPROVAL_DELAY_S = 30 * 24 * 3600
MAX_ASSIGNMENTS_LIMIT = 1_000_000
TITLE_MAX, DESCRIPTION_MAX, KEYWORDS_MAX, FEEDBACK_MAX = 128, 2000, 1000, 1024
# botocore's model documents "2006-05-05"; AWS's API reference (and every published example)
# says "2014-08-15". Both are accepted; a message carries the version its specification named.
NOTIFICATION_VERSIONS = ("2014-08-15", "2006-05-05")
DEFAULT_SOURCE_ACCOUNT = "000000000000"
WORKER_ID_PATTERN = re.compile(r"^A[A-Z0-9]{1,63}$")

_LIVE_SQL = "('Accepted', 'Submitted', 'Approved', 'Rejected')"  # statuses that occupy a slot
REVIEWABLE_ASSIGNMENT_STATUSES = ("Submitted", "Approved", "Rejected")  # what requesters can see

_HIT_COLUMNS = """
    SELECT h.*, t.title, t.description, t.keywords, t.reward_cents, t.assignment_duration,
           t.auto_approval_delay, t.qualification_requirements,
           (SELECT COUNT(*) FROM assignments a WHERE a.hit_id = h.hit_id AND a.status = 'Accepted') AS pending,
           (SELECT COUNT(*) FROM assignments a WHERE a.hit_id = h.hit_id
                AND a.status IN ('Approved', 'Rejected')) AS completed,
           (SELECT COUNT(*) FROM assignments a WHERE a.hit_id = h.hit_id
                AND a.status IN ('Accepted', 'Submitted', 'Approved', 'Rejected')) AS taken
    FROM hits h JOIN hit_types t USING (hit_type_id)
"""
# HITStatus, derived rather than stored so that expiry needs no background job.
_HIT_QUERY = f"""
    SELECT *, CASE
        WHEN disposed THEN 'Disposed'
        WHEN reviewing THEN 'Reviewing'
        WHEN expiration > :now AND max_assignments > taken THEN 'Assignable'
        WHEN pending > 0 THEN 'Unassignable'
        ELSE 'Reviewable' END AS hit_status
    FROM ({_HIT_COLUMNS}) AS x
"""


def _new_id(length: int = 30) -> str:
    """A random id in MTurk's shape (upper-case letters and digits, 30 long): 150 random bits."""
    return base64.b32encode(secrets.token_bytes(20)).decode()[:length]


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise MTurkError(f"{name} must be between {low} and {high}, got {value}.", E.PARAMETER_OUT_OF_RANGE)


def _check_length(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise MTurkError(f"{name} is {len(value)} characters; at most {limit} are allowed.", E.INVALID_PARAMETER_VALUE)


def check_worker_id(worker_id: str) -> None:
    if not isinstance(worker_id, str) or not WORKER_ID_PATTERN.match(worker_id):
        raise MTurkError(
            f"Worker id {worker_id!r} is not valid: it must be 'A' followed by 1-63 upper-case letters or digits.",
            E.INVALID_PARAMETER_VALUE,
        )


class Marketplace:
    """An MTurk requester account with its workers, persisted in one SQLite file.

    ``db_path`` ":memory:" keeps everything in this object. ``clock`` returns "now" (UTC);
    tests inject one to jump past expirations and auto-approval. Thread-safe: one connection,
    serialised by a lock; several processes may open the same file (WAL, immediate transactions).
    """

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        clock: Callable[[], datetime] | None = None,
        *,
        initial_balance: str = SANDBOX_START_BALANCE,
        account_id: str | None = None,
    ):
        self.db_path = str(db_path)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(timezone.utc))
        # Called (outside the lock) after a transaction that queued notifications committed;
        # delivery.py hangs its deliverer here. The state machine itself never sends anything.
        self.on_notification: Callable[[], None] | None = None
        self._queued = False
        self._touched: set[str] = set()  # HITs whose assignments changed in the current transaction
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if self.db_path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL survives a killed process; only a power cut can lose the last commits.
            self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self._lock:
            migrate(self._conn)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('initial_balance_cents', ?)",
                (str(parse_amount(initial_balance)),),
            )
            # Who the notification messages say they come from: the AWS account (SourceAccount)
            # and the requester's customer id (CustomerId), fixed once per marketplace.
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('source_account', ?)",
                               (account_id or DEFAULT_SOURCE_ACCOUNT,))
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('customer_id', ?)", ("A" + _new_id(13),))

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Marketplace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        value = self.clock()
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

    @contextmanager
    def _tx(self) -> Iterator[float]:
        """One immediate transaction per call; yields "now" after applying due transitions."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            self._queued = False
            self._touched = set()
            try:
                now = _epoch(self.now())
                self._advance(now)
                yield now
                self._emit_hit_transitions(now)
            except BaseException:
                conn.execute("ROLLBACK")
                self._queued = False
                raise
            conn.execute("COMMIT")
            queued, self._queued = self._queued, False
        listener = self.on_notification
        if queued and listener is not None:
            listener()

    def _q(self, sql: str, params: Mapping[str, Any] | tuple = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Mapping[str, Any] | tuple = ()) -> sqlite3.Row | None:
        return self._conn.execute(sql, params).fetchone()

    def _advance(self, now: float) -> None:
        """Abandon assignments past their deadline and auto-approve those past their approval time."""
        notify = self._one("SELECT 1 FROM notification_settings WHERE active LIMIT 1") is not None
        if notify:
            for row in self._q("SELECT assignment_id, hit_id FROM assignments WHERE status = 'Accepted' "
                               "AND deadline <= ?", (now,)):
                self._emit("AssignmentAbandoned", now, row["hit_id"], row["assignment_id"])
            for row in self._q("SELECT assignment_id, hit_id FROM assignments WHERE status = 'Submitted' "
                               "AND auto_approval_time <= ?", (now,)):
                self._emit("AssignmentApproved", now, row["hit_id"], row["assignment_id"])
        self._conn.execute("UPDATE assignments SET status = 'Abandoned' WHERE status = 'Accepted' AND deadline <= ?",
                           (now,))
        self._conn.execute(
            "UPDATE assignments SET status = 'Approved', approval_time = auto_approval_time "
            "WHERE status = 'Submitted' AND auto_approval_time <= ?",
            (now,),
        )

    def call(self, operation: str, params: Mapping[str, Any] | None = None) -> dict:
        """Run one requester API operation by its MTurk name with MTurk-shaped parameters."""
        handler = getattr(self, "_op_" + _snake(operation), None)
        checked = validate_input(operation, dict(params or {}))
        if handler is None:
            raise MTurkError(f"{operation} is not supported by the embedded marketplace.", E.UNSUPPORTED)
        with self._tx() as now:
            return handler(checked, now)

    # ------------------------------------------------------------------ paging

    @staticmethod
    def _page_args(p: dict, scope: str) -> tuple[int, int]:
        limit = p.get("MaxResults", DEFAULT_PAGE_SIZE)
        _check_range("MaxResults", limit, 1, 100)
        token = p.get("NextToken")
        if token is None:
            return 0, limit
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
            if decoded["scope"] != scope:
                raise ValueError(scope)
            return int(decoded["after"]), limit
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            raise MTurkError("The NextToken is not valid for this operation.", E.INVALID_PARAMETER_VALUE) from None

    @staticmethod
    def _page(rows: list[sqlite3.Row], limit: int, scope: str) -> tuple[list[sqlite3.Row], str | None]:
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        token = base64.urlsafe_b64encode(json.dumps({"scope": scope, "after": rows[-1]["seq"]}).encode()).decode()
        return rows, token

    @staticmethod
    def _listing(key: str, items: list[dict], token: str | None) -> dict:
        return _drop_none({"NextToken": token, "NumResults": len(items), key: items})

    # ------------------------------------------------------------------ money

    def _available_cents(self, now: float) -> int:
        initial = int(self._one("SELECT value FROM meta WHERE key = 'initial_balance_cents'")[0])
        # A live HIT reserves every slot not rejected; an expired or disposed one only the slots
        # taken and not rejected (open slots of an expired HIT are refunded).
        reserved = self._one(
            """
            SELECT COALESCE(SUM(h.unit_cost_cents * CASE
                WHEN h.disposed = 0 AND h.expiration > :now
                    THEN h.max_assignments - COALESCE(c.rejected, 0)
                ELSE COALESCE(c.busy, 0) END), 0)
            FROM hits h LEFT JOIN (
                SELECT hit_id, SUM(status = 'Rejected') AS rejected,
                       SUM(status IN ('Accepted', 'Submitted', 'Approved')) AS busy
                FROM assignments GROUP BY hit_id) c ON c.hit_id = h.hit_id
            """,
            {"now": now},
        )[0]
        bonuses = self._one("SELECT COALESCE(SUM(amount_cents + fee_cents), 0) FROM bonuses")[0]
        return initial - reserved - bonuses

    def _require_funds(self, now: float, what: str) -> None:
        """Called after a change that spends money; raising rolls the change back."""
        available = self._available_cents(now)
        if available < 0:
            raise MTurkError(
                f"Your account balance is too low for {what}: {format_amount(available)} after it.",
                E.INSUFFICIENT_FUNDS,
            )

    # ------------------------------------------------------------------ tokens

    def _token_owner(self, scope: str, token: str | None, now: float) -> str | None:
        if token is None:
            return None
        row = self._one("SELECT result_id, created FROM request_tokens WHERE scope = ? AND token = ?", (scope, token))
        if row is not None and now - row["created"] < TOKEN_LIFETIME_S:
            return row["result_id"]
        return None

    def _remember_token(self, scope: str, token: str | None, result_id: str, now: float) -> None:
        if token is not None:
            self._conn.execute("INSERT OR REPLACE INTO request_tokens VALUES (?, ?, ?, ?)", (scope, token, result_id, now))

    # ------------------------------------------------------------------ notifications

    def _emit(self, event_type: str, now: float, hit_id: str, assignment_id: str | None = None) -> None:
        self._touched.add(hit_id)
        row = self._one(
            "SELECT n.specification, h.hit_type_id FROM hits h JOIN notification_settings n USING (hit_type_id) "
            "WHERE h.hit_id = ? AND n.active",
            (hit_id,),
        )
        if row is None:
            return
        spec = json.loads(row["specification"])
        if event_type not in spec["EventTypes"]:
            return
        event = _drop_none({
            "EventType": event_type,
            "EventTimestamp": _dt(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "HITTypeId": row["hit_type_id"],
            "HITId": hit_id,
            "AssignmentId": assignment_id,
        })
        self._queue_notification(spec, [event], now)

    def _queue_notification(self, spec: dict, events: list[dict], now: float) -> None:
        """One message in MTurk's SQS/SNS format: EventDocId lets receivers drop repeated deliveries."""
        doc = {
            "EventDocId": uuid.uuid4().hex,
            "SourceAccount": self._meta("source_account"),
            "CustomerId": self._meta("customer_id"),
            "EventDocVersion": spec["Version"],
            "Events": events,
        }
        self._conn.execute(
            "INSERT INTO notification_outbox (destination, transport, message, created) VALUES (?, ?, ?, ?)",
            (spec["Destination"], spec["Transport"], json.dumps(doc), now),
        )
        self._queued = True

    def _meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def _emit_hit_transitions(self, now: float) -> None:
        """HITExpired and HITReviewable, once per transition, for HIT types with notifications on.

        Both states are derived from the clock and the assignments, so they are checked at the end
        of every transaction. Only two kinds of HIT can have changed: those whose assignments this
        transaction touched (a last submission makes a live HIT reviewable) and expired ones not yet
        announced; the rest are never looked at.
        """
        if self._one("SELECT 1 FROM notification_settings WHERE active LIMIT 1") is None:
            return
        touched = sorted(self._touched)
        marks = ",".join("?" * len(touched))
        rows = self._q(
            _HIT_QUERY.replace(":now", "?") + " WHERE NOT disposed AND (expiration <= ? AND NOT "
            f"(expired_notified AND reviewable_notified) OR hit_id IN ({marks})) AND hit_type_id IN "
            "(SELECT hit_type_id FROM notification_settings WHERE active) ORDER BY seq",
            (now, now, *touched),
        )
        for row in rows:
            expired = row["expiration"] <= now and not row["expired_notified"]
            reviewable = row["hit_status"] == "Reviewable" and not row["reviewable_notified"]
            if expired:
                self._emit("HITExpired", now, row["hit_id"])
            if reviewable:
                self._emit("HITReviewable", now, row["hit_id"])
            if expired or reviewable:
                self._conn.execute(
                    "UPDATE hits SET expired_notified = expired_notified OR ?, "
                    "reviewable_notified = reviewable_notified OR ? WHERE hit_id = ?",
                    (int(expired), int(reviewable), row["hit_id"]),
                )

    def _mark_hit_states_announced(self, hit_type_id: str, now: float) -> None:
        """When notifications start, HITs already expired or reviewable are not announced again."""
        self._conn.execute(
            "UPDATE hits SET expired_notified = (expiration <= :now), reviewable_notified = hit_id IN "
            f"(SELECT hit_id FROM ({_HIT_QUERY}) WHERE hit_status = 'Reviewable') WHERE hit_type_id = :type",
            {"now": now, "type": hit_type_id},
        )

    # -- the outbox: at-least-once delivery (delivery.py sends, these record what happened)

    def claim_notifications(self, limit: int = 100, lease_s: float = 60.0) -> list[dict]:
        """Undelivered messages, oldest first, held for ``lease_s`` seconds so that another
        deliverer on the same file skips them; a crashed deliverer's claim simply runs out.

        Each is ``{"Seq", "Destination", "Transport", "Message", "Attempts"}``; Message is the
        JSON event document MTurk would send to the SQS queue / SNS topic / e-mail address.
        Report the outcome with ``notification_delivered`` or ``notification_failed``.
        """
        wall = time.time()  # leases coordinate processes, so they follow the wall clock, not ``clock``
        with self._tx():
            rows = self._q(
                "SELECT * FROM notification_outbox WHERE delivered = 0 AND (claimed_until IS NULL OR claimed_until "
                "< ?) ORDER BY seq LIMIT ?", (wall, limit))
            self._conn.executemany("UPDATE notification_outbox SET claimed_until = ? WHERE seq = ?",
                                   [(wall + lease_s, r["seq"]) for r in rows])
        return [{"Seq": r["seq"], "Destination": r["destination"], "Transport": r["transport"],
                 "Message": r["message"], "Attempts": r["attempts"]} for r in rows]

    def notification_delivered(self, seq: int) -> None:
        with self._tx():
            self._conn.execute("UPDATE notification_outbox SET delivered = 1, claimed_until = NULL, "
                               "attempts = attempts + 1, last_error = NULL WHERE seq = ?", (seq,))

    def notification_failed(self, seq: int, error: str, retry_after_s: float = 0.0, give_up: bool = False) -> None:
        """A send failed: the message stays queued (retried after ``retry_after_s``) unless ``give_up``."""
        with self._tx():
            self._conn.execute(
                "UPDATE notification_outbox SET attempts = attempts + 1, last_error = ?, claimed_until = ?, "
                "delivered = ? WHERE seq = ?",
                (error[:1000], time.time() + retry_after_s if retry_after_s > 0 else None, 2 if give_up else 0, seq),
            )

    def notification_outbox(self) -> list[dict]:
        """Every queued message with its state (delivered: 0 waiting, 1 sent, 2 given up), oldest first."""
        with self._tx():
            rows = self._q("SELECT seq, destination, transport, message, delivered, attempts, last_error "
                           "FROM notification_outbox ORDER BY seq")
        return [{"Seq": r["seq"], "Destination": r["destination"], "Transport": r["transport"],
                 "Message": r["message"], "Delivered": r["delivered"], "Attempts": r["attempts"],
                 "LastError": r["last_error"]} for r in rows]

    def take_notifications(self, limit: int = 100) -> list[dict]:
        """Undelivered messages, oldest first, marked as delivered at once (at most once: prefer
        ``claim_notifications`` and report each outcome).

        Each is ``{"Destination", "Transport", "Message"}``.
        """
        with self._tx():
            rows = self._q("SELECT * FROM notification_outbox WHERE delivered = 0 ORDER BY seq LIMIT ?", (limit,))
            self._conn.executemany("UPDATE notification_outbox SET delivered = 1 WHERE seq = ?",
                                   [(r["seq"],) for r in rows])
        return [{"Destination": r["destination"], "Transport": r["transport"], "Message": r["message"]} for r in rows]

    @staticmethod
    def _check_notification(spec: dict) -> None:
        transport, destination = spec["Transport"], spec["Destination"]
        if spec["Version"] not in NOTIFICATION_VERSIONS:
            raise MTurkError(f"Notification Version must be {NOTIFICATION_VERSIONS[0]}.", E.INVALID_PARAMETER_VALUE)
        if not spec["EventTypes"]:
            raise MTurkError("Notification EventTypes must name at least one event type.", E.INVALID_PARAMETER_VALUE)
        valid = {
            "SQS": destination.startswith("https://sqs.") or destination.startswith("http"),
            "SNS": destination.startswith("arn:aws:sns:"),
            "Email": "@" in destination,
        }[transport]
        if not valid:
            raise MTurkError(f"Destination {destination!r} is not a valid {transport} destination.",
                             E.INVALID_PARAMETER_VALUE)

    # ------------------------------------------------------------------ HIT types

    def _check_requirements(self, requirements: list[dict]) -> None:
        for req in requirements:
            qid = req["QualificationTypeId"]
            if qid not in SYSTEM_TYPES and self._one(
                "SELECT 1 FROM qualification_types WHERE qualification_type_id = ? AND NOT deleted", (qid,)
            ) is None:
                raise MTurkError(f"QualificationType {qid} does not exist.", E.QUALIFICATION_TYPE_DOES_NOT_EXIST)
            check_requirement_shape(req)

    def _create_hit_type(self, p: dict, now: float) -> str:
        _check_length("Title", p["Title"], TITLE_MAX)
        _check_length("Description", p["Description"], DESCRIPTION_MAX)
        _check_length("Keywords", p.get("Keywords"), KEYWORDS_MAX)
        duration = p["AssignmentDurationInSeconds"]
        _check_range("AssignmentDurationInSeconds", duration, MIN_DURATION_S, MAX_DURATION_S)
        delay = p.get("AutoApprovalDelayInSeconds", DEFAULT_AUTO_APPROVAL_DELAY_S)
        _check_range("AutoApprovalDelayInSeconds", delay, 0, MAX_AUTO_APPROVAL_DELAY_S)
        requirements = p.get("QualificationRequirements", [])
        self._check_requirements(requirements)
        reward = parse_amount(p["Reward"])
        canonical = json.dumps(
            [p["Title"], p["Description"], p.get("Keywords"), reward, duration, delay, requirements], sort_keys=True
        )
        # Identical parameters give the identical id, as on MTurk: derive it from them.
        digest = hashlib.sha256(canonical.encode()).digest()
        hit_type_id = base64.b32encode(digest).decode()[:30]
        self._conn.execute(
            "INSERT OR IGNORE INTO hit_types VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (hit_type_id, p["Title"], p["Description"], p.get("Keywords"), reward, duration, delay,
             json.dumps(requirements), now),
        )
        return hit_type_id

    def _op_create_hit_type(self, p: dict, now: float) -> dict:
        return {"HITTypeId": self._create_hit_type(p, now)}

    # ------------------------------------------------------------------ HITs

    def _hit_row(self, hit_id: str, now: float) -> sqlite3.Row:
        row = self._one(_HIT_QUERY + " WHERE hit_id = :hit_id", {"now": now, "hit_id": hit_id})
        if row is None:
            raise MTurkError(f"Hit {hit_id} does not exist.", E.HIT_DOES_NOT_EXIST)
        return row

    @staticmethod
    def _hit_dict(row: sqlite3.Row) -> dict:
        return _drop_none({
            "HITId": row["hit_id"],
            "HITTypeId": row["hit_type_id"],
            "HITGroupId": row["hit_type_id"],
            "CreationTime": _dt(row["created"]),
            "Title": row["title"],
            "Description": row["description"],
            "Question": row["question"],
            "Keywords": row["keywords"],
            "HITStatus": row["hit_status"],
            "MaxAssignments": row["max_assignments"],
            "Reward": format_amount(row["reward_cents"]),
            "AutoApprovalDelayInSeconds": row["auto_approval_delay"],
            "Expiration": _dt(row["expiration"]),
            "AssignmentDurationInSeconds": row["assignment_duration"],
            "RequesterAnnotation": row["requester_annotation"],
            "QualificationRequirements": json.loads(row["qualification_requirements"]),
            "HITReviewStatus": "NotReviewed",
            "NumberOfAssignmentsPending": row["pending"],
            "NumberOfAssignmentsAvailable": 0 if row["disposed"] else row["max_assignments"] - row["taken"],
            "NumberOfAssignmentsCompleted": row["completed"],
        })

    def _op_create_hit_with_hit_type(self, p: dict, now: float) -> dict:
        type_row = self._one("SELECT * FROM hit_types WHERE hit_type_id = ?", (p["HITTypeId"],))
        if type_row is None:
            raise MTurkError(f"HITType {p['HITTypeId']} does not exist.", E.HIT_TYPE_DOES_NOT_EXIST)
        for unsupported in ("HITLayoutId", "HITLayoutParameters", "AssignmentReviewPolicy", "HITReviewPolicy"):
            if unsupported in p:
                raise MTurkError(f"{unsupported} is not supported by the embedded marketplace; send a Question.",
                                 E.UNSUPPORTED)
        if "Question" not in p:
            raise MTurkError("Question is required (HIT layouts are not supported).", E.MISSING_PARAMETER)
        token = p.get("UniqueRequestToken")
        existing = self._token_owner("hit", token, now)
        if existing is not None:
            raise MTurkError(
                f'The HIT with ID "{existing}" already exists. (UniqueRequestToken "{token}" was used within 24 hours.)',
                E.HIT_ALREADY_EXISTS,
            )
        parse_question(p["Question"])
        lifetime = p["LifetimeInSeconds"]
        _check_range("LifetimeInSeconds", lifetime, MIN_DURATION_S, MAX_DURATION_S)
        max_assignments = p.get("MaxAssignments", 1)
        _check_range("MaxAssignments", max_assignments, 1, MAX_ASSIGNMENTS_LIMIT)
        _check_length("RequesterAnnotation", p.get("RequesterAnnotation"), 255)
        reward = type_row["reward_cents"]
        unit_cost = reward + assignment_fee_cents(reward, max_assignments)
        hit_id = _new_id()
        self._conn.execute(
            "INSERT INTO hits (hit_id, hit_type_id, question, requester_annotation, max_assignments, "
            "unit_cost_cents, created, expiration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (hit_id, p["HITTypeId"], p["Question"], p.get("RequesterAnnotation"), max_assignments, unit_cost,
             now, now + lifetime),
        )
        self._require_funds(now, f"{max_assignments} assignments at {format_amount(unit_cost)} each")
        self._remember_token("hit", token, hit_id, now)
        self._emit("HITCreated", now, hit_id)
        return {"HIT": self._hit_dict(self._hit_row(hit_id, now))}

    def _op_create_hit(self, p: dict, now: float) -> dict:
        type_keys = ("AutoApprovalDelayInSeconds", "AssignmentDurationInSeconds", "Reward", "Title", "Keywords",
                     "Description", "QualificationRequirements")
        hit_type_id = self._create_hit_type({k: p[k] for k in type_keys if k in p}, now)
        rest = {k: v for k, v in p.items() if k not in type_keys}
        return self._op_create_hit_with_hit_type({**rest, "HITTypeId": hit_type_id}, now)

    def _op_get_hit(self, p: dict, now: float) -> dict:
        return {"HIT": self._hit_dict(self._hit_row(p["HITId"], now))}

    def _op_list_hits(self, p: dict, now: float) -> dict:
        after, limit = self._page_args(p, "ListHITs")
        rows = self._q(_HIT_QUERY + " WHERE NOT disposed AND seq > :after ORDER BY seq LIMIT :n",
                       {"now": now, "after": after, "n": limit + 1})
        rows, token = self._page(rows, limit, "ListHITs")
        return self._listing("HITs", [self._hit_dict(r) for r in rows], token)

    def _op_list_reviewable_hits(self, p: dict, now: float) -> dict:
        after, limit = self._page_args(p, "ListReviewableHITs")
        rows = self._q(
            _HIT_QUERY + " WHERE hit_status = :status AND (:type IS NULL OR hit_type_id = :type) AND seq > :after "
            "ORDER BY seq LIMIT :n",
            {"now": now, "status": p.get("Status", "Reviewable"), "type": p.get("HITTypeId"), "after": after,
             "n": limit + 1},
        )
        rows, token = self._page(rows, limit, "ListReviewableHITs")
        return self._listing("HITs", [self._hit_dict(r) for r in rows], token)

    def _op_list_hits_for_qualification_type(self, p: dict, now: float) -> dict:
        after, limit = self._page_args(p, "ListHITsForQualificationType")
        rows = self._q(
            _HIT_QUERY + " WHERE NOT disposed AND seq > :after AND EXISTS (SELECT 1 FROM "
            "json_each(qualification_requirements) j WHERE json_extract(j.value, '$.QualificationTypeId') = :q) "
            "ORDER BY seq LIMIT :n",
            {"now": now, "after": after, "q": p["QualificationTypeId"], "n": limit + 1},
        )
        rows, token = self._page(rows, limit, "ListHITsForQualificationType")
        return self._listing("HITs", [self._hit_dict(r) for r in rows], token)

    def _op_update_expiration_for_hit(self, p: dict, now: float) -> dict:
        row = self._hit_row(p["HITId"], now)
        if row["disposed"]:
            raise MTurkError(f"Hit {p['HITId']} has been deleted.", E.INVALID_HIT_STATE)
        expire_at = _epoch(p["ExpireAt"])
        extended = expire_at > now
        self._conn.execute("UPDATE hits SET expiration = ? WHERE hit_id = ?", (max(expire_at, now), p["HITId"]))
        if extended:  # open again: it may expire and become reviewable again
            self._conn.execute("UPDATE hits SET expired_notified = 0, reviewable_notified = 0 WHERE hit_id = ?",
                               (p["HITId"],))
        if extended:
            self._require_funds(now, "re-opening the HIT's remaining assignments")
            self._emit("HITExtended", now, p["HITId"])
        return {}

    def _op_create_additional_assignments_for_hit(self, p: dict, now: float) -> dict:
        extra = p["NumberOfAdditionalAssignments"]
        _check_range("NumberOfAdditionalAssignments", extra, 1, MAX_ASSIGNMENTS_LIMIT)
        row = self._hit_row(p["HITId"], now)
        token = p.get("UniqueRequestToken")
        existing = self._token_owner("extend", token, now)
        if existing is not None:
            raise MTurkError(
                f'Assignments were already added to HIT "{existing}" with UniqueRequestToken "{token}" '
                "within the last 24 hours.",
                E.DUPLICATE_REQUEST,
            )
        if row["disposed"]:
            raise MTurkError(f"Hit {p['HITId']} has been deleted.", E.INVALID_HIT_STATE)
        old = row["max_assignments"]
        if old < 10 <= old + extra:
            raise MTurkError(
                f"HIT {p['HITId']} has {old} assignments; adding {extra} would bring it from fewer than 10 to 10 "
                "or more, which changes its fee. Create a new HIT instead.",
                E.INVALID_MAX_ASSIGNMENTS_INCREASE,
            )
        self._conn.execute("UPDATE hits SET max_assignments = max_assignments + ?, reviewable_notified = 0 "
                           "WHERE hit_id = ?", (extra, p["HITId"]))
        self._require_funds(now, f"{extra} more assignments")
        self._remember_token("extend", token, p["HITId"], now)
        self._emit("HITExtended", now, p["HITId"])
        return {}

    def _op_update_hit_review_status(self, p: dict, now: float) -> dict:
        row = self._hit_row(p["HITId"], now)
        revert = p.get("Revert", False)
        wanted = "Reviewing" if revert else "Reviewable"
        if row["hit_status"] != wanted:
            raise MTurkError(f"HIT {p['HITId']} is {row['hit_status']}; this operation needs it {wanted}.",
                             E.INVALID_HIT_STATE)
        self._conn.execute("UPDATE hits SET reviewing = ? WHERE hit_id = ?", (0 if revert else 1, p["HITId"]))
        return {}

    def _op_update_hit_type_of_hit(self, p: dict, now: float) -> dict:
        row = self._hit_row(p["HITId"], now)
        type_row = self._one("SELECT * FROM hit_types WHERE hit_type_id = ?", (p["HITTypeId"],))
        if type_row is None:
            raise MTurkError(f"HITType {p['HITTypeId']} does not exist.", E.HIT_TYPE_DOES_NOT_EXIST)
        if row["hit_status"] != "Assignable" or row["taken"]:
            raise MTurkError("Only an Assignable HIT that no worker has accepted can change its HIT type.",
                             E.INVALID_HIT_STATE)
        reward = type_row["reward_cents"]
        self._conn.execute("UPDATE hits SET hit_type_id = ?, unit_cost_cents = ? WHERE hit_id = ?",
                           (p["HITTypeId"], reward + assignment_fee_cents(reward, row["max_assignments"]), p["HITId"]))
        self._require_funds(now, "the new reward")
        return {}

    def _op_delete_hit(self, p: dict, now: float) -> dict:
        row = self._hit_row(p["HITId"], now)
        if row["disposed"]:
            return {}  # deleting twice is harmless, so a retried DeleteHIT succeeds
        if row["hit_status"] not in ("Reviewable", "Reviewing"):
            raise MTurkError(
                f"HIT {p['HITId']} is {row['hit_status']}: only a Reviewable HIT (expired, or with every "
                "assignment submitted) can be deleted. Expire it with UpdateExpirationForHIT first.",
                E.INVALID_HIT_STATE,
            )
        unsettled = self._one("SELECT COUNT(*) FROM assignments WHERE hit_id = ? AND status IN "
                              "('Accepted', 'Submitted')", (p["HITId"],))[0]
        if unsettled:
            raise MTurkError(
                f"HIT {p['HITId']} has {unsettled} submitted assignments that are neither approved nor rejected.",
                E.INVALID_HIT_STATE,
            )
        self._conn.execute("UPDATE hits SET disposed = 1 WHERE hit_id = ?", (p["HITId"],))
        self._emit("HITDisposed", now, p["HITId"])
        return {}

    # ------------------------------------------------------------------ assignments

    def _assignment_row(self, assignment_id: str) -> sqlite3.Row:
        row = self._one("SELECT * FROM assignments WHERE assignment_id = ?", (assignment_id,))
        if row is None:
            raise MTurkError(f"Assignment {assignment_id} does not exist.", E.ASSIGNMENT_DOES_NOT_EXIST)
        return row

    def _reviewable_assignment(self, assignment_id: str) -> sqlite3.Row:
        row = self._assignment_row(assignment_id)
        if row["status"] not in REVIEWABLE_ASSIGNMENT_STATUSES:
            raise MTurkError(f"Assignment {assignment_id} has not been submitted.", E.ASSIGNMENT_DOES_NOT_EXIST)
        return row

    @staticmethod
    def _assignment_dict(row: sqlite3.Row) -> dict:
        return _drop_none({
            "AssignmentId": row["assignment_id"],
            "WorkerId": row["worker_id"],
            "HITId": row["hit_id"],
            "AssignmentStatus": row["status"],
            "AutoApprovalTime": _dt(row["auto_approval_time"]),
            "AcceptTime": _dt(row["accept_time"]),
            "SubmitTime": _dt(row["submit_time"]),
            "ApprovalTime": _dt(row["approval_time"]),
            "RejectionTime": _dt(row["rejection_time"]),
            "Deadline": _dt(row["deadline"]),
            "Answer": row["answer"],
            "RequesterFeedback": row["requester_feedback"],
        })

    def _op_list_assignments_for_hit(self, p: dict, now: float) -> dict:
        self._hit_row(p["HITId"], now)
        after, limit = self._page_args(p, "ListAssignmentsForHIT")
        statuses = p.get("AssignmentStatuses") or list(REVIEWABLE_ASSIGNMENT_STATUSES)
        marks = ",".join("?" * len(statuses))
        rows = self._q(
            f"SELECT * FROM assignments WHERE hit_id = ? AND status IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?",
            (p["HITId"], *statuses, after, limit + 1),
        )
        rows, token = self._page(rows, limit, "ListAssignmentsForHIT")
        return self._listing("Assignments", [self._assignment_dict(r) for r in rows], token)

    def _op_get_assignment(self, p: dict, now: float) -> dict:
        row = self._reviewable_assignment(p["AssignmentId"])
        return {"Assignment": self._assignment_dict(row), "HIT": self._hit_dict(self._hit_row(row["hit_id"], now))}

    def _op_approve_assignment(self, p: dict, now: float) -> dict:
        row = self._reviewable_assignment(p["AssignmentId"])
        _check_length("RequesterFeedback", p.get("RequesterFeedback"), FEEDBACK_MAX)
        status = row["status"]
        if status == "Rejected" and p.get("OverrideRejection"):
            if self._hit_row(row["hit_id"], now)["disposed"]:
                raise MTurkError("The HIT of this assignment has been deleted; its rejection is final.",
                                 E.INVALID_ASSIGNMENT_STATE)
            if now - row["rejection_time"] > OVERRIDE_REJECTION_WINDOW_S:
                raise MTurkError("A rejection can only be overridden within 30 days.", E.INVALID_ASSIGNMENT_STATE)
        elif status != "Submitted":
            allowed = "Submitted" if status == "Approved" else "Submitted (or Rejected with OverrideRejection)"
            raise MTurkError(
                f"This operation can be called with a status of: {allowed}; assignment {p['AssignmentId']} "
                f"is {status}.",
                E.INVALID_ASSIGNMENT_STATE,
            )
        self._conn.execute(
            "UPDATE assignments SET status = 'Approved', approval_time = ?, rejection_time = NULL, "
            "requester_feedback = COALESCE(?, requester_feedback) WHERE assignment_id = ?",
            (now, p.get("RequesterFeedback"), p["AssignmentId"]),
        )
        if status == "Rejected":
            self._require_funds(now, "approving a rejected assignment")
        self._emit("AssignmentApproved", now, row["hit_id"], p["AssignmentId"])
        return {}

    def _op_reject_assignment(self, p: dict, now: float) -> dict:
        row = self._reviewable_assignment(p["AssignmentId"])
        _check_length("RequesterFeedback", p["RequesterFeedback"], FEEDBACK_MAX)
        if row["status"] != "Submitted":
            raise MTurkError(
                f"This operation can be called with a status of: Submitted; assignment {p['AssignmentId']} "
                f"is {row['status']}.",
                E.INVALID_ASSIGNMENT_STATE,
            )
        self._conn.execute(
            "UPDATE assignments SET status = 'Rejected', rejection_time = ?, requester_feedback = ? "
            "WHERE assignment_id = ?",
            (now, p["RequesterFeedback"], p["AssignmentId"]),
        )
        self._emit("AssignmentRejected", now, row["hit_id"], p["AssignmentId"])
        return {}

    # ------------------------------------------------------------------ bonuses and balance

    def _op_send_bonus(self, p: dict, now: float) -> dict:
        row = self._reviewable_assignment(p["AssignmentId"])
        if row["worker_id"] != p["WorkerId"]:
            raise MTurkError(
                f"Assignment {p['AssignmentId']} was not done by worker {p['WorkerId']}.", E.INVALID_PARAMETER_VALUE
            )
        token = p.get("UniqueRequestToken")
        existing = self._token_owner("bonus", token, now)
        if existing is not None:
            raise MTurkError(
                f'A bonus with UniqueRequestToken "{token}" was already paid for assignment {existing} '
                "within the last 24 hours.",
                E.DUPLICATE_REQUEST,
            )
        amount = parse_amount(p["BonusAmount"])
        if amount < 1:
            raise MTurkError("BonusAmount must be at least 0.01.", E.PARAMETER_OUT_OF_RANGE)
        self._conn.execute(
            "INSERT INTO bonuses (worker_id, assignment_id, hit_id, amount_cents, fee_cents, reason, grant_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (p["WorkerId"], p["AssignmentId"], row["hit_id"], amount, bonus_fee_cents(amount), p["Reason"], now),
        )
        self._require_funds(now, f"a bonus of {format_amount(amount)}")
        self._remember_token("bonus", token, p["AssignmentId"], now)
        return {}

    def _op_list_bonus_payments(self, p: dict, now: float) -> dict:
        if ("HITId" in p) == ("AssignmentId" in p):
            raise MTurkError("Give exactly one of HITId or AssignmentId.", E.INVALID_PARAMETER_VALUE)
        after, limit = self._page_args(p, "ListBonusPayments")
        column, value = ("hit_id", p["HITId"]) if "HITId" in p else ("assignment_id", p["AssignmentId"])
        rows = self._q(f"SELECT * FROM bonuses WHERE {column} = ? AND seq > ? ORDER BY seq LIMIT ?",
                       (value, after, limit + 1))
        rows, token = self._page(rows, limit, "ListBonusPayments")
        items = [
            {"WorkerId": r["worker_id"], "BonusAmount": format_amount(r["amount_cents"]),
             "AssignmentId": r["assignment_id"], "Reason": r["reason"], "GrantTime": _dt(r["grant_time"])}
            for r in rows
        ]
        return self._listing("BonusPayments", items, token)

    def _op_get_account_balance(self, p: dict, now: float) -> dict:
        return {"AvailableBalance": format_amount(self._available_cents(now))}

    # ------------------------------------------------------------------ worker blocks

    def _op_create_worker_block(self, p: dict, now: float) -> dict:
        self._conn.execute(
            "INSERT INTO worker_blocks (worker_id, reason, created) VALUES (?, ?, ?) "
            "ON CONFLICT (worker_id) DO UPDATE SET reason = excluded.reason",
            (p["WorkerId"], p["Reason"], now),
        )
        return {}

    def _op_delete_worker_block(self, p: dict, now: float) -> dict:
        self._conn.execute("DELETE FROM worker_blocks WHERE worker_id = ?", (p["WorkerId"],))
        return {}

    def _op_list_worker_blocks(self, p: dict, now: float) -> dict:
        after, limit = self._page_args(p, "ListWorkerBlocks")
        rows = self._q("SELECT * FROM worker_blocks WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit + 1))
        rows, token = self._page(rows, limit, "ListWorkerBlocks")
        return self._listing("WorkerBlocks", [{"WorkerId": r["worker_id"], "Reason": r["reason"]} for r in rows],
                             token)

    # ------------------------------------------------------------------ qualifications

    def _qualification_type_row(self, qid: str) -> sqlite3.Row:
        row = self._one("SELECT * FROM qualification_types WHERE qualification_type_id = ? AND NOT deleted", (qid,))
        if row is None:
            raise MTurkError(f"QualificationType {qid} does not exist.", E.QUALIFICATION_TYPE_DOES_NOT_EXIST)
        return row

    @staticmethod
    def _qualification_type_dict(row: sqlite3.Row) -> dict:
        return _drop_none({
            "QualificationTypeId": row["qualification_type_id"],
            "CreationTime": _dt(row["created"]),
            "Name": row["name"],
            "Description": row["description"],
            "Keywords": row["keywords"],
            "QualificationTypeStatus": row["status"],
            "Test": row["test"],
            "TestDurationInSeconds": row["test_duration"],
            "AnswerKey": row["answer_key"],
            "RetryDelayInSeconds": row["retry_delay"],
            "IsRequestable": bool(row["test"] or row["auto_granted"]),
            "AutoGranted": bool(row["auto_granted"]),
            "AutoGrantedValue": row["auto_granted_value"] if row["auto_granted"] else None,
        })

    def _op_create_qualification_type(self, p: dict, now: float) -> dict:
        if self._one("SELECT 1 FROM qualification_types WHERE name = ? AND NOT deleted", (p["Name"],)):
            raise MTurkError(
                f"You have already created a QualificationType with the name {p['Name']!r}. A QualificationType's "
                "name must be unique among all of the QualificationTypes created by the same user.",
                E.QUALIFICATION_TYPE_ALREADY_EXISTS,
            )
        # A deleted type's name becomes free again; keep the old row but rename it out of the way.
        self._conn.execute("UPDATE qualification_types SET name = name || ' (deleted ' || seq || ')' "
                           "WHERE name = ? AND deleted", (p["Name"],))
        qid = _new_id()
        self._conn.execute(
            "INSERT INTO qualification_types (qualification_type_id, name, description, keywords, status, "
            "retry_delay, test, answer_key, test_duration, auto_granted, auto_granted_value, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (qid, p["Name"], p["Description"], p.get("Keywords"), p["QualificationTypeStatus"],
             p.get("RetryDelayInSeconds"), p.get("Test"), p.get("AnswerKey"), p.get("TestDurationInSeconds"),
             int(p.get("AutoGranted", False)), p.get("AutoGrantedValue", 1), now),
        )
        return {"QualificationType": self._qualification_type_dict(self._qualification_type_row(qid))}

    def _op_get_qualification_type(self, p: dict, now: float) -> dict:
        return {"QualificationType": self._qualification_type_dict(self._qualification_type_row(p["QualificationTypeId"]))}

    def _op_update_qualification_type(self, p: dict, now: float) -> dict:
        qid = p["QualificationTypeId"]
        self._qualification_type_row(qid)
        columns = {"Description": "description", "QualificationTypeStatus": "status", "Test": "test",
                   "AnswerKey": "answer_key", "TestDurationInSeconds": "test_duration",
                   "RetryDelayInSeconds": "retry_delay", "AutoGranted": "auto_granted",
                   "AutoGrantedValue": "auto_granted_value"}
        for key, column in columns.items():
            if key in p:
                value = int(p[key]) if isinstance(p[key], bool) else p[key]
                self._conn.execute(f"UPDATE qualification_types SET {column} = ? WHERE qualification_type_id = ?",
                                   (value, qid))
        return {"QualificationType": self._qualification_type_dict(self._qualification_type_row(qid))}

    def _op_delete_qualification_type(self, p: dict, now: float) -> dict:
        self._qualification_type_row(p["QualificationTypeId"])
        self._conn.execute("UPDATE qualification_types SET deleted = 1 WHERE qualification_type_id = ?",
                           (p["QualificationTypeId"],))
        return {}

    def _op_list_qualification_types(self, p: dict, now: float) -> dict:
        after, limit = self._page_args(p, "ListQualificationTypes")
        query = f"%{p.get('Query', '')}%"
        rows = self._q(
            "SELECT * FROM qualification_types WHERE NOT deleted AND seq > ? AND (name LIKE ? OR description LIKE ? "
            "OR COALESCE(keywords, '') LIKE ?) AND (NOT ? OR test IS NOT NULL OR auto_granted) ORDER BY seq LIMIT ?",
            (after, query, query, query, int(p["MustBeRequestable"]), limit + 1),
        )
        rows, token = self._page(rows, limit, "ListQualificationTypes")
        return self._listing("QualificationTypes", [self._qualification_type_dict(r) for r in rows], token)

    def _own_type_for_grants(self, qid: str) -> sqlite3.Row:
        if qid in SYSTEM_TYPES:
            raise MTurkError(f"QualificationType {qid} is a system qualification; requesters cannot grant it.",
                             E.INVALID_PARAMETER_VALUE)
        return self._qualification_type_row(qid)

    def _op_associate_qualification_with_worker(self, p: dict, now: float) -> dict:
        self._own_type_for_grants(p["QualificationTypeId"])
        self._conn.execute(
            "INSERT INTO qualifications (qualification_type_id, worker_id, integer_value, status, grant_time) "
            "VALUES (?, ?, ?, 'Granted', ?) ON CONFLICT (qualification_type_id, worker_id) DO UPDATE SET "
            "integer_value = excluded.integer_value, status = 'Granted', grant_time = excluded.grant_time",
            (p["QualificationTypeId"], p["WorkerId"], p.get("IntegerValue", 1), now),
        )
        return {}

    def _op_disassociate_qualification_from_worker(self, p: dict, now: float) -> dict:
        self._own_type_for_grants(p["QualificationTypeId"])
        changed = self._conn.execute(
            "UPDATE qualifications SET status = 'Revoked' WHERE qualification_type_id = ? AND worker_id = ? "
            "AND status = 'Granted'",
            (p["QualificationTypeId"], p["WorkerId"]),
        ).rowcount
        if not changed:
            raise MTurkError(
                f"Worker {p['WorkerId']} does not hold qualification {p['QualificationTypeId']}.",
                E.QUALIFICATION_DOES_NOT_EXIST,
            )
        return {}

    @staticmethod
    def _qualification_dict(row: sqlite3.Row) -> dict:
        return _drop_none({
            "QualificationTypeId": row["qualification_type_id"],
            "WorkerId": row["worker_id"],
            "GrantTime": _dt(row["grant_time"]),
            "IntegerValue": row["integer_value"],
            "Status": row["status"],
        })

    def _op_list_workers_with_qualification_type(self, p: dict, now: float) -> dict:
        self._qualification_type_row(p["QualificationTypeId"])
        after, limit = self._page_args(p, "ListWorkersWithQualificationType")
        rows = self._q(
            "SELECT * FROM qualifications WHERE qualification_type_id = ? AND (? IS NULL OR status = ?) AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (p["QualificationTypeId"], p.get("Status"), p.get("Status"), after, limit + 1),
        )
        rows, token = self._page(rows, limit, "ListWorkersWithQualificationType")
        return self._listing("Qualifications", [self._qualification_dict(r) for r in rows], token)

    def _op_get_qualification_score(self, p: dict, now: float) -> dict:
        self._qualification_type_row(p["QualificationTypeId"])
        row = self._one("SELECT * FROM qualifications WHERE qualification_type_id = ? AND worker_id = ?",
                        (p["QualificationTypeId"], p["WorkerId"]))
        if row is None:
            raise MTurkError(
                f"Worker {p['WorkerId']} does not hold qualification {p['QualificationTypeId']}.",
                E.QUALIFICATION_DOES_NOT_EXIST,
            )
        return {"Qualification": self._qualification_dict(row)}

    # ------------------------------------------------------------------ notifications and messages

    def _op_update_notification_settings(self, p: dict, now: float) -> dict:
        if self._one("SELECT 1 FROM hit_types WHERE hit_type_id = ?", (p["HITTypeId"],)) is None:
            raise MTurkError(f"HITType {p['HITTypeId']} does not exist.", E.HIT_TYPE_DOES_NOT_EXIST)
        current = self._one("SELECT * FROM notification_settings WHERE hit_type_id = ?", (p["HITTypeId"],))
        spec = p.get("Notification")
        if spec is not None:
            self._check_notification(spec)
        elif current is None or current["specification"] is None:
            raise MTurkError("This HIT type has no notification specification yet; send Notification.",
                             E.MISSING_PARAMETER)
        spec_json = json.dumps(spec) if spec is not None else current["specification"]
        active = p.get("Active", True if spec is not None or current is None else bool(current["active"]))
        was_active = current is not None and bool(current["active"])
        self._conn.execute("INSERT OR REPLACE INTO notification_settings VALUES (?, ?, ?)",
                           (p["HITTypeId"], spec_json, int(active)))
        if active and not was_active:
            self._mark_hit_states_announced(p["HITTypeId"], now)
        return {}

    def _op_send_test_event_notification(self, p: dict, now: float) -> dict:
        spec = p["Notification"]
        self._check_notification(spec)
        event = {"EventType": p["TestEventType"], "EventTimestamp": _dt(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "HITTypeId": "TESTHITTYPEID", "HITId": "TESTHITID", "AssignmentId": "TESTASSIGNMENTID"}
        self._queue_notification(spec, [event], now)
        return {}

    def _op_notify_workers(self, p: dict, now: float) -> dict:
        _check_length("Subject", p["Subject"], 200)
        _check_length("MessageText", p["MessageText"], 4096)
        if not 1 <= len(p["WorkerIds"]) <= 100:
            raise MTurkError("WorkerIds must list between 1 and 100 workers.", E.PARAMETER_OUT_OF_RANGE)
        failures = []
        for worker_id in p["WorkerIds"]:
            if self._one("SELECT 1 FROM assignments WHERE worker_id = ? LIMIT 1", (worker_id,)) is None:
                failures.append({
                    "NotifyWorkersFailureCode": "HardFailure",
                    "NotifyWorkersFailureMessage": f"Worker {worker_id} has never worked for you.",
                    "WorkerId": worker_id,
                })
                continue
            self._conn.execute("INSERT INTO worker_messages (worker_id, subject, message_text, sent) "
                               "VALUES (?, ?, ?, ?)", (worker_id, p["Subject"], p["MessageText"], now))
        return {"NotifyWorkersFailureStatuses": failures}

    # ================================================================== requester API (boto3 names)

    def create_hit_type(self, **params: Any) -> dict:
        return self.call("CreateHITType", params)

    def create_hit_with_hit_type(self, **params: Any) -> dict:
        return self.call("CreateHITWithHITType", params)

    def create_hit(self, **params: Any) -> dict:
        return self.call("CreateHIT", params)

    def get_hit(self, **params: Any) -> dict:
        return self.call("GetHIT", params)

    def list_hits(self, **params: Any) -> dict:
        return self.call("ListHITs", params)

    def list_reviewable_hits(self, **params: Any) -> dict:
        return self.call("ListReviewableHITs", params)

    def list_hits_for_qualification_type(self, **params: Any) -> dict:
        return self.call("ListHITsForQualificationType", params)

    def list_assignments_for_hit(self, **params: Any) -> dict:
        return self.call("ListAssignmentsForHIT", params)

    def get_assignment(self, **params: Any) -> dict:
        return self.call("GetAssignment", params)

    def approve_assignment(self, **params: Any) -> dict:
        return self.call("ApproveAssignment", params)

    def reject_assignment(self, **params: Any) -> dict:
        return self.call("RejectAssignment", params)

    def send_bonus(self, **params: Any) -> dict:
        return self.call("SendBonus", params)

    def list_bonus_payments(self, **params: Any) -> dict:
        return self.call("ListBonusPayments", params)

    def get_account_balance(self, **params: Any) -> dict:
        return self.call("GetAccountBalance", params)

    def create_worker_block(self, **params: Any) -> dict:
        return self.call("CreateWorkerBlock", params)

    def delete_worker_block(self, **params: Any) -> dict:
        return self.call("DeleteWorkerBlock", params)

    def list_worker_blocks(self, **params: Any) -> dict:
        return self.call("ListWorkerBlocks", params)

    def create_qualification_type(self, **params: Any) -> dict:
        return self.call("CreateQualificationType", params)

    def get_qualification_type(self, **params: Any) -> dict:
        return self.call("GetQualificationType", params)

    def update_qualification_type(self, **params: Any) -> dict:
        return self.call("UpdateQualificationType", params)

    def delete_qualification_type(self, **params: Any) -> dict:
        return self.call("DeleteQualificationType", params)

    def list_qualification_types(self, **params: Any) -> dict:
        return self.call("ListQualificationTypes", params)

    def associate_qualification_with_worker(self, **params: Any) -> dict:
        return self.call("AssociateQualificationWithWorker", params)

    def disassociate_qualification_from_worker(self, **params: Any) -> dict:
        return self.call("DisassociateQualificationFromWorker", params)

    def list_workers_with_qualification_type(self, **params: Any) -> dict:
        return self.call("ListWorkersWithQualificationType", params)

    def get_qualification_score(self, **params: Any) -> dict:
        return self.call("GetQualificationScore", params)

    def update_expiration_for_hit(self, **params: Any) -> dict:
        return self.call("UpdateExpirationForHIT", params)

    def create_additional_assignments_for_hit(self, **params: Any) -> dict:
        return self.call("CreateAdditionalAssignmentsForHIT", params)

    def update_hit_review_status(self, **params: Any) -> dict:
        return self.call("UpdateHITReviewStatus", params)

    def update_hit_type_of_hit(self, **params: Any) -> dict:
        return self.call("UpdateHITTypeOfHIT", params)

    def delete_hit(self, **params: Any) -> dict:
        return self.call("DeleteHIT", params)

    def update_notification_settings(self, **params: Any) -> dict:
        return self.call("UpdateNotificationSettings", params)

    def send_test_event_notification(self, **params: Any) -> dict:
        return self.call("SendTestEventNotification", params)

    def notify_workers(self, **params: Any) -> dict:
        return self.call("NotifyWorkers", params)

    # ================================================================== worker side

    def register_worker(self, worker_id: str, country: str | None = "US", subdivision: str | None = None,
                        adult: bool = True) -> None:
        """Record a worker's profile (the Locale and Adult system qualifications read it)."""
        check_worker_id(worker_id)
        with self._tx() as now:
            self._conn.execute(
                "INSERT INTO workers VALUES (?, ?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE SET "
                "country = excluded.country, subdivision = excluded.subdivision, adult = excluded.adult",
                (worker_id, country, subdivision, int(adult), now),
            )

    def _worker_value(self, worker_id: str, qid: str, now: float) -> WorkerValue:
        if qid in (PERCENT_APPROVED, NUMBER_HITS_APPROVED):
            approved, rejected = self._one(
                "SELECT COALESCE(SUM(status = 'Approved'), 0), COALESCE(SUM(status = 'Rejected'), 0) "
                "FROM assignments WHERE worker_id = ?", (worker_id,))
            if qid == NUMBER_HITS_APPROVED:
                return approved
            return 100 if approved + rejected == 0 else (100 * approved) // (approved + rejected)
        if qid in (LOCALE, ADULT):
            row = self._one("SELECT * FROM workers WHERE worker_id = ?", (worker_id,))
            if row is None:
                return None
            if qid == ADULT:
                return 1 if row["adult"] else None
            return Locale(row["country"], row["subdivision"]) if row["country"] else None
        if qid in SYSTEM_TYPES:
            return None  # Masters: only MTurk grants it
        row = self._one(
            "SELECT q.integer_value, q.status FROM qualifications q JOIN qualification_types t "
            "USING (qualification_type_id) WHERE q.qualification_type_id = ? AND q.worker_id = ? AND NOT t.deleted",
            (qid, worker_id))
        if row is not None:
            return row["integer_value"] if row["status"] == "Granted" else None
        qtype = self._one("SELECT * FROM qualification_types WHERE qualification_type_id = ? AND NOT deleted "
                          "AND auto_granted AND status = 'Active'", (qid,))
        if qtype is not None:
            # An auto-granted qualification is given to any worker who asks for it; working on the HIT asks.
            value = qtype["auto_granted_value"] if qtype["auto_granted_value"] is not None else 1
            self._conn.execute("INSERT INTO qualifications (qualification_type_id, worker_id, integer_value, status, "
                               "grant_time) VALUES (?, ?, ?, 'Granted', ?)", (qid, worker_id, value, now))
            return value
        return None

    def _unmet_requirement(self, worker_id: str, requirements: list[dict], now: float) -> dict | None:
        for req in requirements:
            if not meets(req, self._worker_value(worker_id, req["QualificationTypeId"], now)):
                return req
        return None

    def _is_blocked(self, worker_id: str) -> bool:
        return self._one("SELECT 1 FROM worker_blocks WHERE worker_id = ?", (worker_id,)) is not None

    def list_available_hits(self, worker_id: str | None = None, limit: int | None = None) -> list[dict]:
        """Assignable HITs, oldest first; for a worker, only those they may accept now.

        Each item is the HIT dict of GetHIT without Question.
        """
        with self._tx() as now:
            if worker_id is not None:
                check_worker_id(worker_id)
                if self._is_blocked(worker_id):
                    return []
            cursor = self._conn.execute(_HIT_QUERY + " WHERE hit_status = 'Assignable' ORDER BY seq", {"now": now})
            found: list[dict] = []
            for row in cursor:
                if worker_id is not None:
                    if self._one("SELECT 1 FROM assignments WHERE hit_id = ? AND worker_id = ? AND status IN "
                                 + _LIVE_SQL, (row["hit_id"], worker_id)):
                        continue
                    if self._unmet_requirement(worker_id, json.loads(row["qualification_requirements"]), now):
                        continue
                hit = self._hit_dict(row)
                del hit["Question"]
                found.append(hit)
                if limit is not None and len(found) >= limit:
                    break
            return found

    def accept_hit(self, hit_id: str, worker_id: str, at: datetime | None = None) -> str:
        """A worker accepts one assignment of a HIT; returns the new AssignmentId.

        Refused (MTurkError) for blocked or unqualified workers, a worker who already holds an
        assignment of this HIT, and HITs with no assignment left or past their expiration.
        """
        check_worker_id(worker_id)
        with self._tx() as now:
            when = _epoch(to_datetime(at, "at")) if at is not None else now
            row = self._hit_row(hit_id, now)
            if row["disposed"] or row["reviewing"]:
                raise MTurkError(f"HIT {hit_id} is no longer available.", E.NO_ASSIGNMENTS_AVAILABLE)
            if row["expiration"] <= when:
                raise MTurkError(f"HIT {hit_id} has expired.", E.NO_ASSIGNMENTS_AVAILABLE)
            if self._is_blocked(worker_id):
                raise MTurkError(f"Worker {worker_id} is blocked by this requester.", E.WORKER_BLOCKED)
            if self._one("SELECT 1 FROM assignments WHERE hit_id = ? AND worker_id = ? AND status IN " + _LIVE_SQL,
                         (hit_id, worker_id)):
                raise MTurkError(f"Worker {worker_id} already has an assignment of HIT {hit_id}.", E.ALREADY_WORKING)
            if row["taken"] >= row["max_assignments"]:
                raise MTurkError(f"HIT {hit_id} has no assignments left.", E.NO_ASSIGNMENTS_AVAILABLE)
            unmet = self._unmet_requirement(worker_id, json.loads(row["qualification_requirements"]), now)
            if unmet is not None:
                raise MTurkError(
                    f"Worker {worker_id} does not meet the qualification requirement {unmet['QualificationTypeId']} "
                    f"({unmet['Comparator']}) of HIT {hit_id}.",
                    E.WORKER_NOT_QUALIFIED,
                )
            self._conn.execute(
                "INSERT OR IGNORE INTO workers (worker_id, country, subdivision, adult, created) "
                "VALUES (?, NULL, NULL, 1, ?)", (worker_id, now))
            assignment_id = _new_id()
            self._conn.execute(
                "INSERT INTO assignments (assignment_id, hit_id, worker_id, status, accept_time, deadline) "
                "VALUES (?, ?, ?, 'Accepted', ?, ?)",
                (assignment_id, hit_id, worker_id, when, when + row["assignment_duration"]),
            )
            self._emit("AssignmentAccepted", now, hit_id, assignment_id)
            return assignment_id

    def _owned_assignment(self, assignment_id: str, worker_id: str) -> sqlite3.Row:
        row = self._assignment_row(assignment_id)
        if row["worker_id"] != worker_id:
            raise MTurkError(f"Assignment {assignment_id} does not belong to worker {worker_id}.",
                             E.NOT_YOUR_ASSIGNMENT)
        return row

    def return_assignment(self, assignment_id: str, worker_id: str, at: datetime | None = None) -> None:
        """The worker gives an accepted assignment back; its slot opens for others."""
        with self._tx() as now:
            row = self._owned_assignment(assignment_id, worker_id)
            if row["status"] != "Accepted":
                raise MTurkError(f"Assignment {assignment_id} is {row['status']}, not Accepted.",
                                 E.INVALID_ASSIGNMENT_STATE)
            self._conn.execute("UPDATE assignments SET status = 'Returned' WHERE assignment_id = ?", (assignment_id,))
            self._emit("AssignmentReturned", now, row["hit_id"], assignment_id)

    def submit_assignment(
        self,
        assignment_id: str,
        worker_id: str,
        fields: Mapping[str, str] | list[tuple[str, str]],
        at: datetime | None = None,
    ) -> dict:
        """Submit a worker's form: fields become the assignment's QuestionFormAnswers, stored verbatim.

        Refused if the assignment is not this worker's, was already submitted, or its deadline
        passed. Returns the assignment dict (status Submitted).
        """
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        for name, value in pairs:
            if not isinstance(name, str) or not isinstance(value, str):
                raise MTurkError(f"Form field {name!r} must map a string to a string.", E.INVALID_PARAMETER_VALUE)
        with self._tx() as now:
            row = self._owned_assignment(assignment_id, worker_id)
            if row["status"] != "Accepted":
                state = "was already submitted" if row["status"] in REVIEWABLE_ASSIGNMENT_STATUSES else (
                    f"is {row['status']}")
                raise MTurkError(f"Assignment {assignment_id} {state}; it cannot be submitted.",
                                 E.INVALID_ASSIGNMENT_STATE)
            when = max(_epoch(to_datetime(at, "at")) if at is not None else now, row["accept_time"])
            if when > row["deadline"]:
                raise MTurkError(f"Assignment {assignment_id} passed its deadline; it cannot be submitted.",
                                 E.INVALID_ASSIGNMENT_STATE)
            delay = self._one("SELECT t.auto_approval_delay FROM hits h JOIN hit_types t USING (hit_type_id) "
                              "WHERE h.hit_id = ?", (row["hit_id"],))[0]
            self._conn.execute(
                "UPDATE assignments SET status = 'Submitted', submit_time = ?, auto_approval_time = ?, answer = ? "
                "WHERE assignment_id = ?",
                (when, when + delay, build_answer_xml(pairs), assignment_id),
            )
            self._emit("AssignmentSubmitted", now, row["hit_id"], assignment_id)
            return self._assignment_dict(self._assignment_row(assignment_id))

    def get_question(self, hit_id: str) -> ParsedQuestion:
        """The HIT's Question, parsed: what a worker's browser shows."""
        with self._tx() as now:
            return parse_question(self._hit_row(hit_id, now)["question"])

    def get_question_html(self, hit_id: str) -> str:
        """The HTMLContent of an HTMLQuestion HIT (the page a worker fills in)."""
        question = self.get_question(hit_id)
        if question.html is None:
            raise MTurkError(f"HIT {hit_id} has a {question.kind}, not an HTMLQuestion.", E.UNSUPPORTED)
        return question.html

    def get_worker_assignment(self, assignment_id: str, worker_id: str) -> dict:
        """One of a worker's own assignments, whatever its status (AssignmentStatus may be Accepted,
        Returned or Abandoned here, which the requester API never shows)."""
        with self._tx():
            return self._assignment_dict(self._owned_assignment(assignment_id, worker_id))

    def list_worker_assignments(self, worker_id: str) -> list[dict]:
        """A worker's assignments, newest first (for the worker's own pages)."""
        with self._tx():
            rows = self._q("SELECT * FROM assignments WHERE worker_id = ? ORDER BY seq DESC", (worker_id,))
            return [self._assignment_dict(r) for r in rows]

    # ================================================================== accounts (for the HTTP server)

    def server_secret(self) -> bytes:
        """A random key, made once per database, that signs worker cookies and submit links."""
        with self._tx():
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('server_secret', ?)", (secrets.token_hex(32),))
            return bytes.fromhex(self._one("SELECT value FROM meta WHERE key = 'server_secret'")[0])

    def add_requester_key(self, access_key: str | None = None, secret_key: str | None = None) -> tuple[str, str]:
        """Store (or make) a requester API key pair the HTTP server accepts; returns it."""
        access_key = access_key or "AKMT" + _new_id(16)
        secret_key = secret_key or secrets.token_urlsafe(30)
        with self._tx() as now:
            self._conn.execute("INSERT OR REPLACE INTO requester_keys VALUES (?, ?, ?)", (access_key, secret_key, now))
        return access_key, secret_key

    def get_setting(self, key: str) -> str | None:
        """A value the server keeps across restarts (e.g. the URL it was last served at)."""
        with self._tx():
            return self._meta("setting:" + key)

    def set_setting(self, key: str, value: str) -> None:
        with self._tx():
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("setting:" + key, value))

    def requester_keys(self) -> dict[str, str]:
        with self._tx():
            return {r[0]: r[1] for r in self._q("SELECT access_key, secret_key FROM requester_keys")}

    def add_invite(self, worker_id: str, token: str) -> None:
        check_worker_id(worker_id)
        with self._tx() as now:
            self._conn.execute("INSERT INTO invites VALUES (?, ?, ?, NULL)",
                               (hashlib.sha256(token.encode()).hexdigest(), worker_id, now))

    def redeem_invite(self, token: str) -> str | None:
        """The worker an invite token stands for (None if unknown); invites stay valid for reuse."""
        with self._tx() as now:
            digest = hashlib.sha256(token.encode()).hexdigest()
            row = self._one("SELECT worker_id FROM invites WHERE token_sha256 = ?", (digest,))
            if row is None:
                return None
            self._conn.execute("UPDATE invites SET last_used = ? WHERE token_sha256 = ?", (now, digest))
            return row[0]


def _snake(operation: str) -> str:
    """MTurk operation name -> method suffix, as botocore names client methods (ListHITs -> list_hits)."""
    from botocore import xform_name

    return xform_name(operation)
