"""Collect answers from MTurk's event notifications in an SQS queue instead of polling every HIT.

A marketplace subscribed with ``subscribe`` sends a message to the queue when a worker submits
an assignment: ``{"EventDocId", "EventDocVersion", "SourceAccount", "CustomerId", "Events": [
{"EventType", "EventTimestamp", "HITTypeId", "HITId", "AssignmentId"}]}``. Delivery is at least
once and in no particular order, so ``collect_from_queue`` must keep each answer exactly once
whatever arrives twice or late. The order of its steps is what makes that hold:

1. an assignment named by an event is stored raw (``save_raw_assignment``, a no-op if it is
   already stored) and parsed, the same two steps as a polling ``collect``;
2. only then is the message's EventDocId recorded as seen;
3. only then is the message deleted from the queue.

A crash after 1 leaves the message in the queue: it is received again, finds the assignment
stored, stores nothing new. Recording the EventDocId first would be wrong: a crash between
recording it and storing the answer would make the redelivered message look handled, and the
answer would be lost. So the EventDocId only counts repeats; the store's primary key on the
assignment id is what keeps each answer once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from botocore.exceptions import ClientError

from .collecting import CollectResult, _parse_and_store, _parse_unparsed
from .marketplace.delivery import sqs_client_for
from .requester import Endpoint
from .store import Store

__all__ = ["QueueCollectResult", "collect_from_queue", "parse_event_document", "send_test_event", "sqs_client_for",
           "subscribe"]

NOTIFICATION_VERSION = "2014-08-15"
DEFAULT_EVENT_TYPES = ("AssignmentSubmitted",)
# Events that mean an assignment has an answer to fetch: a submitted assignment may already be
# approved or rejected when its (late) event is read.
ANSWER_EVENTS = frozenset({"AssignmentSubmitted", "AssignmentApproved", "AssignmentRejected"})
MISSING_ASSIGNMENT = "AWS.MechanicalTurk.AssignmentDoesNotExist"


@dataclass(frozen=True)
class QueueCollectResult(CollectResult):
    """A CollectResult (``hits``: distinct HITs named by events) plus what the queue held."""

    messages: int = 0  # messages handled and deleted
    duplicates: int = 0  # of those, repeats of an EventDocId already handled
    ignored: int = 0  # messages left in the queue: not notifications, or about HITs this workspace did not publish


def subscribe(
    client,
    hit_type_id: str,
    queue_url: str,
    event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
    transport: str = "SQS",
    active: bool = True,
) -> None:
    """Ask the marketplace to send ``event_types`` of every HIT of ``hit_type_id`` to ``queue_url``.

    Notifications belong to a HIT type; HITs created with that type later are covered too. On
    real SQS the queue's policy must let ``mturk-requester.amazonaws.com`` call SendMessage.
    """
    client.update_notification_settings(
        HITTypeId=hit_type_id,
        Notification={"Destination": queue_url, "Transport": transport, "Version": NOTIFICATION_VERSION,
                      "EventTypes": list(event_types)},
        Active=active,
    )


def send_test_event(client, queue_url: str, event_type: str = "AssignmentSubmitted", transport: str = "SQS") -> None:
    """Ask the marketplace to send one test message (HITId TESTHITID) to ``queue_url`` now."""
    client.send_test_event_notification(
        Notification={"Destination": queue_url, "Transport": transport, "Version": NOTIFICATION_VERSION,
                      "EventTypes": [event_type]},
        TestEventType=event_type,
    )


def parse_event_document(body: str) -> dict | None:
    """The event document of a queue message, or None if the message is not one.

    Accepts MTurk's own SQS format and the same document wrapped by SNS (an SNS topic
    subscribed to the queue without raw delivery).
    """
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        return parse_event_document(doc["Message"])
    if not (isinstance(doc, dict) and isinstance(doc.get("EventDocId"), str) and isinstance(doc.get("Events"), list)):
        return None
    if not all(isinstance(e, dict) and isinstance(e.get("EventType"), str) for e in doc["Events"]):
        return None
    return doc


def collect_from_queue(
    store: Store,
    client,
    sqs_client,
    queue_url: str,
    endpoint: Endpoint,
    wait_seconds: int = 2,
    max_messages: int = 10,
    progress: Callable[[int], None] | None = None,
    visibility_timeout: int | None = None,
) -> QueueCollectResult:
    """Read the queue until it is empty; store every submitted assignment it names, once.

    ``client`` is the requester's mturk client (GetAssignment fetches each answer), ``sqs_client``
    a boto3 SQS client for ``queue_url``. Messages about HITs this workspace did not publish on
    ``endpoint`` are left in the queue for whoever owns them. Safe to re-run, and safe alongside
    a polling ``collect``.
    """
    if not 1 <= max_messages <= 10:
        raise ValueError("max_messages must be between 1 and 10 (SQS's limit)")
    if not 0 <= wait_seconds <= 20:
        raise ValueError("wait_seconds must be between 0 and 20 (SQS's limit)")
    ours = {row["hit_id"] for row in store.hits(endpoint=endpoint.label)}
    known = store.known_assignment_ids()
    ratings, errors = _parse_unparsed(store)
    counts = {"assignments": 0, "ratings": ratings, "errors": errors, "messages": 0, "duplicates": 0, "ignored": 0}
    hits_seen: set[str] = set()
    skipped: set[str] = set()  # MessageIds left in the queue during this run

    receive: dict[str, Any] = {"QueueUrl": queue_url, "MaxNumberOfMessages": max_messages,
                               "WaitTimeSeconds": wait_seconds}
    if visibility_timeout is not None:
        receive["VisibilityTimeout"] = visibility_timeout
    while True:
        messages = sqs_client.receive_message(**receive).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in skipped]
        if not fresh:
            break  # empty, or only messages this run already chose to leave there
        for message in fresh:
            doc = parse_event_document(message.get("Body", ""))
            events = doc["Events"] if doc else []
            if doc is None or any(_is_foreign(e, ours) for e in events):
                skipped.add(message["MessageId"])
                counts["ignored"] += 1
                continue
            for event in events:
                if event["EventType"] in ANSWER_EVENTS and event.get("AssignmentId"):
                    hits_seen.add(event["HITId"])
                    new, stored, failed = _store_assignment(store, client, event["AssignmentId"], known)
                    counts["assignments"] += new
                    counts["ratings"] += stored
                    counts["errors"] += failed
            # Only now, with every answer of the message safely stored (see the module docstring).
            if not store.mark_event_seen(doc["EventDocId"]):
                counts["duplicates"] += 1
            sqs_client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            counts["messages"] += 1
            if progress:
                progress(1)
    return QueueCollectResult(
        hits=len(hits_seen),
        new_assignments=counts["assignments"],
        new_ratings=counts["ratings"],
        parse_errors=counts["errors"],
        messages=counts["messages"],
        duplicates=counts["duplicates"],
        ignored=counts["ignored"],
    )


def _is_foreign(event: dict, ours: set[str]) -> bool:
    """An event about a HIT of another workspace or endpoint (a test Ping is nobody's and handled)."""
    if event.get("EventType") == "Ping" or event.get("HITId") == "TESTHITID":
        return False
    return event.get("HITId") not in ours


def _store_assignment(store: Store, client, assignment_id: str, known: set[str]) -> tuple[int, int, int]:
    """(new assignments, ratings, parse errors) after fetching one assignment if it is not stored yet."""
    if assignment_id in known:
        return 0, 0, 0
    try:
        assignment = client.get_assignment(AssignmentId=assignment_id)["Assignment"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("TurkErrorCode") == MISSING_ASSIGNMENT or (
                MISSING_ASSIGNMENT in str(exc.response.get("Error", {}).get("Message", ""))):
            return 0, 0, 0  # gone (its HIT was deleted, say): nothing to keep, and retrying cannot help
        raise  # transient: the message stays in the queue and comes back
    known.add(assignment_id)
    if not store.save_raw_assignment(assignment):
        return 0, 0, 0
    stored, failed = _parse_and_store(store, assignment, store.items_of_hit(assignment["HITId"]))
    return 1, stored, failed
