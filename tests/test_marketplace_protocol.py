"""The wire protocol, answer documents, question checks and fee arithmetic of the marketplace."""

from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mturk_tune.marketplace import Marketplace, MTurkError, local_client
from mturk_tune.marketplace import protocol
from mturk_tune.marketplace.documents import build_answer_xml, parse_answer_xml, parse_question
from mturk_tune.marketplace.money import assignment_fee_cents, bonus_fee_cents, format_amount, parse_amount

TARGET = "MTurkRequesterServiceV20170117."


def call(market: Marketplace, operation: str, params: dict | bytes) -> tuple[int, dict]:
    body = params if isinstance(params, bytes) else json.dumps(params).encode()
    status, headers, payload = protocol.handle(market, TARGET + operation, body)
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    return status, json.loads(payload)


def test_errors_have_mturk_shape_and_status():
    market = Marketplace()
    status, body = call(market, "GetHIT", {"HITId": "NOSUCHHIT"})
    assert status == 400
    assert body["__type"] == "RequestError" and body["TurkErrorCode"] == "AWS.MechanicalTurk.HITDoesNotExist"
    assert "NOSUCHHIT" in body["Message"]
    assert call(market, "NoSuchOperation", {})[0] == 400
    assert call(market, "GetHIT", b"{not json")[0] == 400
    status, body = call(market, "CreateHIT", {"Title": "no reward"})  # other clients skip botocore's checks
    assert status == 400 and "must not be null" in body["Message"]
    status, _, _ = protocol.handle(market, "SomeOtherService.GetHIT", b"{}")
    assert status == 400


def test_timestamps_travel_as_epoch_seconds():
    market = Marketplace()
    status, body = call(market, "CreateHITType", {"Title": "T", "Description": "D", "Reward": "0.01",
                                                  "AssignmentDurationInSeconds": 60})
    assert status == 200
    status, body = call(market, "CreateHITWithHITType", {
        "HITTypeId": body["HITTypeId"], "LifetimeInSeconds": 60,
        "Question": '<QuestionForm xmlns="x"><Question/></QuestionForm>'})
    assert status == 200 and isinstance(body["HIT"]["CreationTime"], float)
    assert body["HIT"]["Expiration"] - body["HIT"]["CreationTime"] == pytest.approx(60)


def test_a_bug_answers_as_service_fault_which_botocore_raises(tmp_path, monkeypatch):
    # botocore retries HTTP 500 answers (standard mode: twice); one attempt keeps the test fast.
    client = local_client(tmp_path / "m.db", config=Config(retries={"mode": "standard", "max_attempts": 1}))

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Marketplace, "_op_get_account_balance", broken)
    with pytest.raises(ClientError) as excinfo:
        client.get_account_balance()
    assert excinfo.value.response["Error"]["Code"] == "ServiceFault"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_answer_document_escapes_markup_and_non_ascii_and_round_trips():
    fields = [("assignmentId", "X"), ("rating__a", "4"), ("comment", "Ça <marche> & \"ok\" ☺")]
    xml = build_answer_xml(fields)
    assert xml.startswith('<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns="http://mechanical')
    assert xml.isascii() and "assignmentId" not in xml
    assert "<Answer><QuestionIdentifier>rating__a</QuestionIdentifier><FreeText>4</FreeText></Answer>" in xml
    assert parse_answer_xml(xml) == fields[1:]


@pytest.mark.parametrize("question, message", [
    ("<HTMLQuestion><HTMLContent>unclosed", "parsing"),
    ('<HTMLQuestion xmlns="x"><HTMLContent>  </HTMLContent></HTMLQuestion>', "HTMLContent"),
    ('<ExternalQuestion xmlns="x"><ExternalURL>http://plain.example</ExternalURL></ExternalQuestion>', "https"),
    ("<Survey/>", "root element"),
    ("<HTMLQuestion><HTMLContent>" + "x" * 70000 + "</HTMLContent></HTMLQuestion>", "at most"),
    ('<!DOCTYPE d [<!ENTITY a "aaaa">]><HTMLQuestion><HTMLContent>&a;</HTMLContent></HTMLQuestion>', "parsing"),
])
def test_bad_questions_are_refused_like_mturk(question, message):
    with pytest.raises(MTurkError, match=message) as excinfo:
        parse_question(question)
    assert excinfo.value.turk_error_code == "AWS.MechanicalTurk.XMLParseError"


def test_fee_arithmetic_in_cents():
    assert (parse_amount("0.5"), parse_amount("12"), parse_amount("0.07")) == (50, 1200, 7)
    assert (format_amount(5), format_amount(120000), format_amount(-3)) == ("0.05", "1200.00", "-0.03")
    assert assignment_fee_cents(100, 9) == 20 and assignment_fee_cents(100, 10) == 40
    assert assignment_fee_cents(1, 1) == 1 and assignment_fee_cents(0, 1) == 1  # the $0.01 minimum
    assert assignment_fee_cents(7, 1) == 1 and assignment_fee_cents(13, 1) == 3  # 1.4 -> 1, 2.6 -> 3
    assert bonus_fee_cents(250) == 50 and bonus_fee_cents(2) == 1


def test_notifications_are_queued_for_delivery():
    market = Marketplace()
    spec = {"Destination": "https://sqs.us-east-1.amazonaws.com/123456789012/mturk", "Transport": "SQS",
            "Version": "2006-05-05", "EventTypes": ["AssignmentSubmitted"]}
    type_id = market.create_hit_type(Title="T", Description="D", Reward="0.01",
                                     AssignmentDurationInSeconds=60)["HITTypeId"]
    market.update_notification_settings(HITTypeId=type_id, Notification=spec, Active=True)
    market.send_test_event_notification(Notification=spec, TestEventType="Ping")
    hit = market.create_hit_with_hit_type(HITTypeId=type_id, LifetimeInSeconds=60,
                                          Question='<QuestionForm xmlns="x"/>')["HIT"]
    assignment_id = market.accept_hit(hit["HITId"], "AWORKER")
    market.submit_assignment(assignment_id, "AWORKER", {"a": "1"})
    messages = market.take_notifications()
    events = [json.loads(m["Message"])["Events"][0] for m in messages]
    assert [e["EventType"] for e in events] == ["Ping", "AssignmentSubmitted"]
    assert events[1]["AssignmentId"] == assignment_id and messages[1]["Destination"] == spec["Destination"]
    assert len({json.loads(m["Message"])["EventDocId"] for m in messages}) == 2
    assert market.take_notifications() == []
    with pytest.raises(MTurkError):
        market.update_notification_settings(HITTypeId=type_id, Notification={**spec, "Version": "2010-01-01"})


def test_notify_workers_reports_strangers():
    market = Marketplace()
    result = market.notify_workers(Subject="Thanks", MessageText="More HITs tomorrow", WorkerIds=["ANEVERSEEN"])
    assert [f["WorkerId"] for f in result["NotifyWorkersFailureStatuses"]] == ["ANEVERSEEN"]
