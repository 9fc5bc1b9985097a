"""Event notifications: the marketplace sends MTurk's messages to SQS; collect_from_queue keeps each answer once.

Everything runs under moto's mock_aws: MTurk is the embedded marketplace registered as moto's
``mturk`` backend, and the queue is moto's own SQS, reached with plain boto3 clients.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from mturk_tune.collecting import collect
from mturk_tune.config import replace
from mturk_tune.marketplace import local_client, open_marketplace
from mturk_tune.marketplace.delivery import NotificationDelivery, sqs_client_for
from mturk_tune.marketplace.moto_backend import backend_marketplace
from mturk_tune.notifications import (
    QueueCollectResult,
    collect_from_queue,
    parse_event_document,
    send_test_event,
    subscribe,
)
from mturk_tune.publishing import hit_type_params, plan_publish, publish
from mturk_tune.requester import SANDBOX_URL, Endpoint
from mturk_tune.store import Store
from mturk_tune.workspace import init_workspace

SANDBOX = Endpoint("sandbox", SANDBOX_URL)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Clock:
    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def aws(mock_mturk):
    """(mturk client, sqs client, queue url, the marketplace behind the mock)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="mturk-events")["QueueUrl"]
    mturk = boto3.client("mturk", region_name="us-east-1", endpoint_url=SANDBOX_URL)
    return mturk, sqs, queue_url, backend_marketplace()


def published_workspace(tmp_path, mturk, queue_url=None, events=("AssignmentSubmitted",), n_items=6, name="ws"):
    """A workspace whose items are written straight into the store (no model), published in HITs of 2 items
    to 2 workers; subscribed to ``events`` on ``queue_url`` before any HIT exists."""
    ws = init_workspace(tmp_path / name, model="builtin:tiny")
    items = [{"id": f"{name}-i{k}", "prompt_id": f"p{k}", "prompt": "Say something.", "text": f"text number {k}",
              "model": "builtin:tiny"} for k in range(n_items)]
    ws.store.add_batch(f"{name}-b1", 0, "builtin:tiny", {}, items)
    settings = replace(ws.config, "publish", items_per_hit=2, assignments=2, concurrency=1).publish
    if queue_url:
        hit_type_id = mturk.create_hit_type(**hit_type_params(settings))["HITTypeId"]  # the id publish will get
        subscribe(mturk, hit_type_id, queue_url, events)
    publish(ws.store, mturk, SANDBOX, settings, plan_publish(ws.store, SANDBOX, settings))
    return ws


def work_every_hit(market, workers=("AWORKERONE", "AWORKERTWO"), seed=0) -> dict[str, dict[str, str]]:
    """Each worker rates every item of every HIT; returns {assignment id: answers}."""
    rng = random.Random(seed)
    answers = {}
    for hit in market.list_hits(MaxResults=100)["HITs"]:
        item_ids = re.findall(r'name="rating__([^"]+)" value="1"', hit["Question"])
        for worker in workers:
            fields = {f"rating__{i}": str(rng.randint(1, 5)) for i in item_ids}
            assignment_id = market.accept_hit(hit["HITId"], worker)
            market.submit_assignment(assignment_id, worker, fields)
            answers[assignment_id] = fields
    return answers


def drain(sqs, queue_url) -> list[dict]:
    """Every message body in the queue (deleting them)."""
    bodies = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def ratings(store: Store) -> list[tuple]:
    frame = store.ratings_frame()
    return sorted(zip(frame["assignment_id"], frame["task"], frame["worker"], frame["label"]))


# ------------------------------------------------------------------ what arrives in the queue


def test_events_arrive_in_the_queue_in_mturk_format(tmp_path, aws):
    mturk, sqs, queue_url, market = aws
    clock = Clock()
    market.clock = clock
    ws = published_workspace(tmp_path, mturk, queue_url, events=["AssignmentSubmitted", "HITReviewable", "HITExpired"])
    hits = [h["HITId"] for h in mturk.list_hits()["HITs"]]
    first, second = hits[0], hits[1]
    a1 = market.accept_hit(first, "AWORKERONE")
    market.submit_assignment(a1, "AWORKERONE", {"rating__x": "3"})
    a2 = market.accept_hit(first, "AWORKERTWO")
    market.submit_assignment(a2, "AWORKERTWO", {"rating__x": "4"})
    a3 = market.accept_hit(second, "AWORKERONE")
    market.submit_assignment(a3, "AWORKERONE", {"rating__x": "5"})

    docs = drain(sqs, queue_url)
    for doc in docs:
        assert set(doc) == {"EventDocId", "EventDocVersion", "SourceAccount", "CustomerId", "Events"}
        assert doc["EventDocVersion"] == "2014-08-15" and doc["SourceAccount"] == "123456789012"
        [event] = doc["Events"]
        assert TIMESTAMP.match(event["EventTimestamp"]) and event["HITTypeId"] == ws.store.hits()[0]["hit_type_id"]
    assert len({d["EventDocId"] for d in docs}) == len(docs) == 4
    assert len({d["CustomerId"] for d in docs}) == 1
    events = [(d["Events"][0]["EventType"], d["Events"][0]["HITId"], d["Events"][0].get("AssignmentId")) for d in docs]
    # The first HIT had 2 assignments: both submitted makes it reviewable, once.
    assert events == [("AssignmentSubmitted", first, a1), ("AssignmentSubmitted", first, a2),
                      ("HITReviewable", first, None), ("AssignmentSubmitted", second, a3)]

    clock.now += timedelta(days=2)  # past every HIT's lifetime: each expires once; the second is now reviewable
    mturk.get_account_balance()  # any call lets the marketplace see the time
    late = [(d["Events"][0]["EventType"], d["Events"][0]["HITId"]) for d in drain(sqs, queue_url)]
    assert sorted(late) == sorted([("HITExpired", h) for h in hits] + [("HITReviewable", h) for h in hits[1:]])
    mturk.get_account_balance()
    assert drain(sqs, queue_url) == []


def test_a_test_event_is_sent_at_once_and_handled_by_collect(tmp_path, aws):
    mturk, sqs, queue_url, _ = aws
    ws = published_workspace(tmp_path, mturk)  # not subscribed: only the test event arrives
    send_test_event(mturk, queue_url, "Ping")
    [message] = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)["Messages"]
    [event] = json.loads(message["Body"])["Events"]
    assert (event["EventType"], event["HITId"]) == ("Ping", "TESTHITID")

    result = collect_from_queue(ws.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0)
    assert (result.messages, result.new_assignments, result.ignored) == (1, 0, 0)
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages") is None


# ------------------------------------------------------------------ collecting from the queue


def copy_store(store: Store, path) -> Store:
    with sqlite3.connect(path) as target:
        store.conn.backup(target)
    return Store.open(path)


def test_collect_from_queue_stores_what_a_polling_collect_stores(tmp_path, aws):
    mturk, sqs, queue_url, market = aws
    ws = published_workspace(tmp_path, mturk, queue_url)
    answers = work_every_hit(market)
    polled = copy_store(ws.store, tmp_path / "polled.db")

    progress: list[int] = []
    result = collect_from_queue(ws.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0, progress=progress.append)
    assert isinstance(result, QueueCollectResult)
    assert (result.hits, result.new_assignments, result.messages, result.duplicates) == (3, 6, 6, 0)
    assert result.new_ratings == 12 and result.parse_errors == 0 and sum(progress) == 6

    by_polling = collect(polled, mturk, SANDBOX, concurrency=1)
    assert (by_polling.new_assignments, by_polling.new_ratings) == (6, 12)
    assert ratings(ws.store) == ratings(polled)
    stored = {(a, f"rating__{item}"): value for a, item, _, value in ratings(ws.store)}
    assert stored == {(a, name): float(v) for a, fields in answers.items() for name, v in fields.items()}

    again = collect_from_queue(ws.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0)
    assert (again.messages, again.new_assignments, again.new_ratings) == (0, 0, 0)
    assert collect(ws.store, mturk, SANDBOX).new_assignments == 0  # polling after the queue finds nothing new


def test_duplicated_and_out_of_order_messages_store_each_assignment_once(tmp_path, aws):
    mturk, sqs, queue_url, market = aws
    ws = published_workspace(tmp_path, mturk, queue_url, events=["AssignmentSubmitted", "AssignmentApproved"])
    answers = work_every_hit(market)
    for assignment_id in list(answers)[:3]:
        mturk.approve_assignment(AssignmentId=assignment_id)
    bodies = [json.dumps(doc) for doc in drain(sqs, queue_url)]
    assert len(bodies) == 9  # 6 submitted + 3 approved
    # At least once, in any order: every message twice, shuffled, so approvals often come first.
    replayed = bodies * 2
    random.Random(7).shuffle(replayed)
    for body in replayed:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    result = collect_from_queue(ws.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0)
    assert (result.messages, result.duplicates, result.new_assignments, result.new_ratings) == (18, 9, 6, 12)
    assert len(ratings(ws.store)) == 12
    statuses = ws.store.assignments_frame().set_index("assignment_id")["status"]
    # An approval read before its submission fetches the assignment as it is now.
    assert (statuses == "Approved").sum() >= 1 and set(statuses) <= {"Submitted", "Approved"}


def test_messages_about_other_workspaces_hits_stay_in_the_queue(tmp_path, aws):
    mturk, sqs, queue_url, market = aws
    mine = published_workspace(tmp_path, mturk, queue_url, n_items=2, name="mine")
    theirs = published_workspace(tmp_path, mturk, n_items=2, name="theirs")  # same HIT type: also subscribed
    work_every_hit(market)
    sqs.send_message(QueueUrl=queue_url, MessageBody="not an MTurk event")

    result = collect_from_queue(mine.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0, visibility_timeout=0)
    assert (result.new_assignments, result.messages, result.ignored) == (2, 2, 3)
    assert theirs.store.known_assignment_ids() == set()
    left = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "3"
    assert collect_from_queue(theirs.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0).new_assignments == 2


class Killed(BaseException):
    """The process dies here (a BaseException, like the KeyboardInterrupt or SystemExit of a real stop)."""


class CrashingSqs:
    """An SQS client whose process "dies" (raises) at one chosen call, once."""

    def __init__(self, sqs, crash_at: str):
        self.sqs, self.crash_at, self.receipts = sqs, crash_at, []

    def receive_message(self, **kwargs):
        response = self.sqs.receive_message(**kwargs)
        self.receipts += [m["ReceiptHandle"] for m in response.get("Messages", [])]
        return response

    def delete_message(self, **kwargs):
        if self.crash_at == "delete":
            self.crash_at = None
            raise Killed("before deleting the message")
        return self.sqs.delete_message(**kwargs)


@pytest.mark.parametrize("crash_at", ["delete", "mark_seen"])
def test_a_crash_between_storing_and_deleting_loses_nothing_and_stores_nothing_twice(tmp_path, aws, crash_at,
                                                                                      monkeypatch):
    mturk, sqs, queue_url, market = aws
    ws = published_workspace(tmp_path, mturk, queue_url, n_items=2)
    work_every_hit(market)
    crashing = CrashingSqs(sqs, crash_at)
    if crash_at == "mark_seen":
        real_mark = ws.store.mark_event_seen

        def mark_then_die(doc_id):
            monkeypatch.setattr(ws.store, "mark_event_seen", real_mark)
            raise Killed("before recording the EventDocId")

        monkeypatch.setattr(ws.store, "mark_event_seen", mark_then_die)

    with pytest.raises(Killed):
        collect_from_queue(ws.store, mturk, crashing, queue_url, SANDBOX, wait_seconds=0)
    assert len(ws.store.known_assignment_ids()) == 1  # the first answer was stored before the crash
    for receipt in crashing.receipts:  # the visibility timeout passes: the undeleted messages come back
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)

    result = collect_from_queue(ws.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0)
    assert (result.messages, result.new_assignments) == (2, 1)
    assert result.duplicates == (1 if crash_at == "delete" else 0)
    assert len(ws.store.known_assignment_ids()) == 2 and len(ratings(ws.store)) == 4


def test_an_sns_topic_feeding_the_queue_works_too(tmp_path, aws):
    mturk, sqs, queue_url, market = aws
    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="mturk-events")["TopicArn"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)  # SNS wraps each message in its envelope
    ws = init_workspace(tmp_path / "ws", model="builtin:tiny")
    ws.store.add_batch("b1", 0, "builtin:tiny", {}, [{"id": "i0", "prompt_id": "p", "prompt": "x", "text": "t",
                                                      "model": "m"}])
    settings = replace(ws.config, "publish", items_per_hit=1, assignments=1).publish
    subscribe(mturk, mturk.create_hit_type(**hit_type_params(settings))["HITTypeId"], topic, transport="SNS")
    publish(ws.store, mturk, SANDBOX, settings, plan_publish(ws.store, SANDBOX, settings))
    work_every_hit(market, workers=["ASNSWORKER"])

    result = collect_from_queue(ws.store, mturk, sqs, queue_url, SANDBOX, wait_seconds=0)
    assert (result.messages, result.new_assignments, result.new_ratings) == (1, 1, 1)


# ------------------------------------------------------------------ delivery: at least once


def test_an_unreachable_queue_delays_events_without_losing_them_even_across_a_restart(tmp_path, aws):
    from mturk_tune.marketplace.server import run_in_thread

    _, sqs, _, _ = aws
    db = tmp_path / "market.db"
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/created-later"
    client = local_client(db)  # the `local` endpoint: delivery runs right after each change
    client.meta.local_marketplace.delivery.retry_after_s = 0  # (5 s by default) so the restart retries at once
    hit_type_id = client.create_hit_type(Title="T", Description="D", Reward="0.10",
                                         AssignmentDurationInSeconds=60)["HITTypeId"]
    subscribe(client, hit_type_id, queue_url, ["HITCreated"])
    created = [client.create_hit_with_hit_type(HITTypeId=hit_type_id, LifetimeInSeconds=600,
                                               Question='<QuestionForm xmlns="x"/>')["HIT"]["HITId"] for _ in range(2)]
    outbox = client.meta.local_marketplace.notification_outbox()
    assert [m["Delivered"] for m in outbox] == [0, 0]
    assert all("does not exist" in m["LastError"].lower() for m in outbox), outbox[0]["LastError"]
    client.meta.local_marketplace.close()  # the process ends with both events undelivered

    sqs.create_queue(QueueName="created-later")
    url, stop = run_in_thread(db, credentials={})  # a server on the same file: its deliverer starts at once
    try:
        bodies = []
        while len(bodies) < 2 and (got := sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=10,
                                                              MaxNumberOfMessages=10).get("Messages")):
            bodies += [json.loads(m["Body"]) for m in got]
    finally:
        stop()
    assert [d["Events"][0]["HITId"] for d in bodies] == created


def test_the_http_server_delivers_from_a_background_thread(tmp_path, aws):
    from mturk_tune.marketplace.server import run_in_thread

    _, sqs, queue_url, _ = aws
    url, stop = run_in_thread(tmp_path / "market.db", credentials={"AKIDNOTIFY": "notify-secret"})
    try:
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                              aws_access_key_id="AKIDNOTIFY", aws_secret_access_key="notify-secret")
        hit_type_id = client.create_hit_type(Title="T", Description="D", Reward="0.10",
                                             AssignmentDurationInSeconds=60)["HITTypeId"]
        subscribe(client, hit_type_id, queue_url, ["HITCreated"])
        hit_id = client.create_hit_with_hit_type(HITTypeId=hit_type_id, LifetimeInSeconds=600,
                                                 Question='<QuestionForm xmlns="x"/>')["HIT"]["HITId"]
        [message] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
        assert json.loads(message["Body"])["Events"][0]["HITId"] == hit_id
    finally:
        stop()


def test_email_notifications_are_given_up_not_retried_forever(tmp_path):
    sent = []
    market = open_marketplace(tmp_path / "m.db", deliver_notifications=False)
    delivery = NotificationDelivery(market, send=lambda *args: sent.append(args)).attach()
    spec = {"Destination": "requester@example.com", "Transport": "Email", "Version": "2014-08-15",
            "EventTypes": ["Ping"]}
    market.send_test_event_notification(Notification=spec, TestEventType="Ping")
    assert len(sent) == 1  # a custom sender gets every transport
    delivery.send = NotificationDelivery(market).send  # the boto3 sender knows SQS and SNS only
    market.send_test_event_notification(Notification=spec, TestEventType="Ping")
    assert [m["Delivered"] for m in market.notification_outbox()] == [1, 2]
    market.close()


# ------------------------------------------------------------------ small parts


def test_queue_urls_map_to_the_right_sqs_client():
    regional = sqs_client_for("https://sqs.eu-west-1.amazonaws.com/123456789012/q")
    assert regional.meta.region_name == "eu-west-1"
    assert regional.meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    local = sqs_client_for("http://localhost:9324/000000000000/q")
    assert local.meta.endpoint_url == "http://localhost:9324"
    with pytest.raises(ValueError):
        sqs_client_for("arn:aws:sqs:us-east-1:123456789012:q")


def test_event_documents_are_recognised_plain_or_wrapped_by_sns():
    doc = {"EventDocId": "d1", "EventDocVersion": "2014-08-15", "Events": [{"EventType": "Ping"}]}
    assert parse_event_document(json.dumps(doc)) == doc
    assert parse_event_document(json.dumps({"Type": "Notification", "Message": json.dumps(doc)})) == doc
    for body in ["", "[]", "{}", '{"EventDocId": "x", "Events": [1]}', "<xml/>"]:
        assert parse_event_document(body) is None
