"""The embedded marketplace behaves like MTurk, through a plain boto3 client, on every transport.

Each case runs against (a) moto's mock with the marketplace registered as its ``mturk``
backend, (b) the in-process ``local`` transport and (c) the HTTP server (SigV4-signed requests
over a real socket). Workers act through the Marketplace's worker side; an injected clock
jumps past expirations and auto-approval delays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mturk_tune.marketplace import Marketplace, MTurkError, local_client
from mturk_tune.marketplace.documents import parse_answer_xml

SANDBOX = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
QUESTION = (
    '<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/'
    'HTMLQuestion.xsd"><HTMLContent><![CDATA[<!DOCTYPE html><form>'
    '<input type="hidden" name="assignmentId"><div data-item-id="i1"><p class="item-text">A text</p>'
    '<input type="radio" name="rating__i1" value="1"><input type="radio" name="rating__i1" value="5"></div>'
    "</form>]]></HTMLContent><FrameHeight>0</FrameHeight></HTMLQuestion>"
)


class FakeClock:
    def __init__(self, start: datetime = START):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Env:
    client: Any  # a boto3 mturk client
    market: Marketplace  # the same marketplace, for acting as workers
    clock: FakeClock


@pytest.fixture(params=["moto", "local", "http"])
def env(request, tmp_path: Path):
    clock = FakeClock()
    if request.param == "moto":
        moto = pytest.importorskip("moto")
        from mturk_tune.marketplace.moto_backend import backend_marketplace, register

        register()
        with moto.mock_aws():
            market = backend_marketplace()
            market.clock = clock
            yield Env(boto3.client("mturk", region_name="us-east-1", endpoint_url=SANDBOX), market, clock)
    elif request.param == "local":
        market = Marketplace(tmp_path / "market.db", clock=clock)
        yield Env(local_client(tmp_path / "market.db", marketplace=market), market, clock)
        market.close()
    else:
        from mturk_tune.marketplace.server import run_in_thread

        url, stop = run_in_thread(tmp_path / "market.db", credentials={"AKIDBEHAVIOUR": "behaviour-secret"},
                                  clock=clock)
        market = Marketplace(tmp_path / "market.db", clock=clock)  # the workers' side shares the file
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                              aws_access_key_id="AKIDBEHAVIOUR", aws_secret_access_key="behaviour-secret")
        yield Env(client, market, clock)
        stop()
        market.close()


def hit_params(**overrides: Any) -> dict:
    params = dict(
        Title="Rate a text",
        Description="Read one text and rate it from 1 to 5.",
        Reward="0.10",
        AssignmentDurationInSeconds=600,
        LifetimeInSeconds=3600,
        MaxAssignments=3,
        Question=QUESTION,
    )
    params.update(overrides)
    return params


def make_hit(env: Env, **overrides: Any) -> dict:
    return env.client.create_hit(**hit_params(**overrides))["HIT"]


def submit(env: Env, hit_id: str, worker: str, rating: str = "5") -> str:
    assignment_id = env.market.accept_hit(hit_id, worker)
    env.market.submit_assignment(assignment_id, worker, {"assignmentId": assignment_id, "rating__i1": rating})
    return assignment_id


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[str, str]:
    response = excinfo.value.response
    return response["Error"]["Code"], response.get("TurkErrorCode", "")


def balance(env: Env) -> str:
    return env.client.get_account_balance()["AvailableBalance"]


# ------------------------------------------------------------------ HIT types, tokens, validation


def test_identical_hit_type_parameters_give_the_same_id(env):
    params = dict(Title="T", Description="D", Reward="0.05", AssignmentDurationInSeconds=300)
    first = env.client.create_hit_type(**params)["HITTypeId"]
    assert env.client.create_hit_type(**params)["HITTypeId"] == first
    assert env.client.create_hit_type(**{**params, "Reward": "0.06"})["HITTypeId"] != first
    hit = env.client.create_hit_with_hit_type(HITTypeId=first, LifetimeInSeconds=600, Question=QUESTION)["HIT"]
    assert hit["HITTypeId"] == first and hit["Reward"] == "0.05" and hit["MaxAssignments"] == 1


def test_repeated_unique_request_token_names_the_existing_hit_until_it_expires(env):
    first = make_hit(env, UniqueRequestToken="batch-7-item-3")
    with pytest.raises(ClientError) as excinfo:
        make_hit(env, UniqueRequestToken="batch-7-item-3")
    assert error_of(excinfo) == ("RequestError", "AWS.MechanicalTurk.HitAlreadyExists")
    assert first["HITId"] in excinfo.value.response["Error"]["Message"]
    assert len(env.client.list_hits()["HITs"]) == 1
    env.clock.advance(24 * 3600 + 1)  # tokens expire after 24 hours; then duplicates are possible
    assert make_hit(env, UniqueRequestToken="batch-7-item-3")["HITId"] != first["HITId"]


@pytest.mark.parametrize("reward", ["0.051", "-1", "1,00", "$0.10", "ten", ".5"])
def test_malformed_rewards_are_refused(env, reward):
    with pytest.raises(ClientError) as excinfo:
        make_hit(env, Reward=reward)
    assert error_of(excinfo)[0] == "RequestError"
    assert "Reward" in excinfo.value.response["Error"]["Message"] or "reward" in excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize("reward", ["1", "0.5", "0.05", "12.34"])
def test_well_formed_rewards_are_accepted(env, reward):
    assert make_hit(env, Reward=reward)["Reward"] == f"{float(reward):.2f}"


def test_max_results_must_be_between_1_and_100(env):
    with pytest.raises(ClientError) as excinfo:
        env.client.list_hits(MaxResults=101)
    assert error_of(excinfo) == ("RequestError", "AWS.ParameterOutOfRange")
    with pytest.raises(MTurkError):  # botocore refuses 0 before sending; the service refuses it too
        env.market.list_hits(MaxResults=0)
    assert env.client.list_hits(MaxResults=100)["NumResults"] == 0


def test_pagination_walks_more_than_100_hits(env):
    type_id = env.client.create_hit_type(Title="T", Description="D", Reward="0.01",
                                         AssignmentDurationInSeconds=60)["HITTypeId"]
    created = {env.client.create_hit_with_hit_type(HITTypeId=type_id, LifetimeInSeconds=600,
                                                   Question=QUESTION)["HIT"]["HITId"] for _ in range(105)}
    first_page = env.client.list_hits()
    assert first_page["NumResults"] == 10 and "NextToken" in first_page  # MTurk's default page is 10
    pages = list(env.client.get_paginator("list_hits").paginate(PaginationConfig={"PageSize": 100}))
    assert [p["NumResults"] for p in pages] == [100, 5]
    assert {h["HITId"] for p in pages for h in p["HITs"]} == created


# ------------------------------------------------------------------ assignments


def test_assignment_lifecycle_accept_return_submit(env):
    hit = make_hit(env, MaxAssignments=2)
    first = env.market.accept_hit(hit["HITId"], "AWORKERA")
    got = env.client.get_hit(HITId=hit["HITId"])["HIT"]
    assert (got["NumberOfAssignmentsPending"], got["NumberOfAssignmentsAvailable"]) == (1, 1)
    assert env.client.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"] == []  # in progress: invisible
    with pytest.raises(MTurkError, match="already has an assignment"):
        env.market.accept_hit(hit["HITId"], "AWORKERA")

    env.market.return_assignment(first, "AWORKERA")
    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["NumberOfAssignmentsAvailable"] == 2

    a = submit(env, hit["HITId"], "AWORKERA", rating="1")
    b = env.market.accept_hit(hit["HITId"], "AWORKERB")
    with pytest.raises(MTurkError, match="no assignments left"):
        env.market.accept_hit(hit["HITId"], "AWORKERC")
    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Unassignable"
    env.clock.advance(30)
    env.market.submit_assignment(b, "AWORKERB", {"rating__i1": "5", "note": "tom & jerry <3"})
    with pytest.raises(MTurkError, match="already submitted"):
        env.market.submit_assignment(b, "AWORKERB", {"rating__i1": "1"})

    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Reviewable"
    listed = env.client.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]
    assert [x["AssignmentId"] for x in listed] == [a, b]
    assert {x["AssignmentStatus"] for x in listed} == {"Submitted"}
    assert parse_answer_xml(listed[1]["Answer"]) == [("rating__i1", "5"), ("note", "tom & jerry <3")]
    assert (listed[1]["SubmitTime"] - listed[1]["AcceptTime"]).total_seconds() == pytest.approx(30)
    reviewable = env.client.list_reviewable_hits()["HITs"]
    assert [h["HITId"] for h in reviewable] == [hit["HITId"]]


def test_worker_cannot_submit_someone_elses_assignment(env):
    hit = make_hit(env)
    assignment_id = env.market.accept_hit(hit["HITId"], "AWORKERA")
    with pytest.raises(MTurkError, match="does not belong"):
        env.market.submit_assignment(assignment_id, "AWORKERB", {"rating__i1": "5"})


def test_approve_reject_and_override_rejection(env):
    hit = make_hit(env)
    good, bad = submit(env, hit["HITId"], "AWORKERA"), submit(env, hit["HITId"], "AWORKERB")
    env.client.approve_assignment(AssignmentId=good, RequesterFeedback="thanks")
    with pytest.raises(ClientError) as excinfo:
        env.client.approve_assignment(AssignmentId=good)
    assert error_of(excinfo) == ("RequestError", "AWS.MechanicalTurk.InvalidAssignmentState")

    env.client.reject_assignment(AssignmentId=bad, RequesterFeedback="answers do not match the texts")
    with pytest.raises(ClientError):
        env.client.reject_assignment(AssignmentId=bad, RequesterFeedback="again")
    with pytest.raises(ClientError):
        env.client.approve_assignment(AssignmentId=bad)  # needs OverrideRejection
    rejected = env.client.get_assignment(AssignmentId=bad)["Assignment"]
    assert rejected["AssignmentStatus"] == "Rejected" and "RejectionTime" in rejected

    env.client.approve_assignment(AssignmentId=bad, OverrideRejection=True)
    statuses = {a["AssignmentId"]: a["AssignmentStatus"]
                for a in env.client.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]}
    assert statuses == {good: "Approved", bad: "Approved"}
    only_approved = env.client.list_assignments_for_hit(HITId=hit["HITId"], AssignmentStatuses=["Rejected"])
    assert only_approved["Assignments"] == []


# ------------------------------------------------------------------ money


def test_fees_bonuses_and_balance(env):
    assert balance(env) == "10000.00"
    small = make_hit(env, Reward="0.10", MaxAssignments=3)  # 3 x (0.10 + 20%)
    assert balance(env) == "9999.64"
    make_hit(env, Reward="0.10", MaxAssignments=10)  # 10 x (0.10 + 40%): the >= 10 assignments surcharge
    assert balance(env) == "9998.24"
    make_hit(env, Reward="0.01", MaxAssignments=1)  # 20% of a cent rounds to 0: the minimum fee of 0.01 applies
    assert balance(env) == "9998.22"

    assignment_id = submit(env, small["HITId"], "AWORKERA")
    env.client.approve_assignment(AssignmentId=assignment_id)
    assert balance(env) == "9998.22"  # the reward was reserved when the HIT was created
    env.client.send_bonus(WorkerId="AWORKERA", AssignmentId=assignment_id, BonusAmount="1.00",
                          Reason="careful work", UniqueRequestToken="bonus-1")
    assert balance(env) == "9997.02"  # 1.00 + 20%
    with pytest.raises(ClientError) as excinfo:  # the same token again: not paid twice
        env.client.send_bonus(WorkerId="AWORKERA", AssignmentId=assignment_id, BonusAmount="1.00",
                              Reason="careful work", UniqueRequestToken="bonus-1")
    assert error_of(excinfo)[0] == "RequestError"
    with pytest.raises(ClientError):
        env.client.send_bonus(WorkerId="AWORKERB", AssignmentId=assignment_id, BonusAmount="1.00", Reason="x")
    with pytest.raises(ClientError):
        env.client.send_bonus(WorkerId="AWORKERA", AssignmentId=assignment_id, BonusAmount="0.001", Reason="x")
    payments = env.client.list_bonus_payments(HITId=small["HITId"])["BonusPayments"]
    assert [(p["WorkerId"], p["BonusAmount"], p["Reason"]) for p in payments] == [("AWORKERA", "1.00", "careful work")]
    assert balance(env) == "9997.02"

    # Expiring the HIT refunds its two untaken assignments; rejecting refunds that one too.
    env.client.update_expiration_for_hit(HITId=small["HITId"], ExpireAt=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert balance(env) == "9997.26"


def test_insufficient_funds_refuses_the_hit(env):
    with pytest.raises(ClientError) as excinfo:
        make_hit(env, Reward="5000.00", MaxAssignments=2)
    assert error_of(excinfo) == ("RequestError", "AWS.MechanicalTurk.InsufficientFunds")
    assert env.client.list_hits()["HITs"] == [] and balance(env) == "10000.00"


# ------------------------------------------------------------------ blocks and qualifications


def test_blocked_worker_is_refused_at_accept(env):
    hit = make_hit(env)
    env.client.create_worker_block(WorkerId="AWORKERBAD", Reason="random answers")
    assert env.client.list_worker_blocks()["WorkerBlocks"] == [{"WorkerId": "AWORKERBAD", "Reason": "random answers"}]
    with pytest.raises(MTurkError) as excinfo:
        env.market.accept_hit(hit["HITId"], "AWORKERBAD")
    assert excinfo.value.turk_error_code == "AWS.MechanicalTurk.WorkerBlocked"
    assert env.market.list_available_hits("AWORKERBAD") == []
    env.client.delete_worker_block(WorkerId="AWORKERBAD", Reason="appeal accepted")
    assert env.market.accept_hit(hit["HITId"], "AWORKERBAD")


def test_qualification_requirements_are_enforced_when_accepting(env):
    qual = env.client.create_qualification_type(
        Name="Rater skill", Description="Score on our rating test", QualificationTypeStatus="Active"
    )["QualificationType"]["QualificationTypeId"]
    env.client.associate_qualification_with_worker(QualificationTypeId=qual, WorkerId="AEXPERT", IntegerValue=90)
    env.client.associate_qualification_with_worker(QualificationTypeId=qual, WorkerId="ANOVICE", IntegerValue=50)
    env.market.register_worker("AEXPERT", country="US")
    env.market.register_worker("ANOVICE", country="US")
    env.market.register_worker("AABROAD", country="DE")
    skilled = make_hit(env, QualificationRequirements=[
        {"QualificationTypeId": qual, "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [80]}])
    us_only = make_hit(env, QualificationRequirements=[
        {"QualificationTypeId": "00000000000000000071", "Comparator": "In",
         "LocaleValues": [{"Country": "US"}, {"Country": "CA"}]}])
    untested = make_hit(env, QualificationRequirements=[{"QualificationTypeId": qual, "Comparator": "DoesNotExist"}])

    def can_accept(hit: dict, worker: str) -> bool:
        try:
            env.market.accept_hit(hit["HITId"], worker)
            return True
        except MTurkError as err:
            assert err.turk_error_code == "AWS.MechanicalTurk.QualificationRequirementNotMet"
            return False

    assert [can_accept(skilled, w) for w in ("AEXPERT", "ANOVICE", "AABROAD")] == [True, False, False]
    assert [can_accept(us_only, w) for w in ("AEXPERT", "AABROAD")] == [True, False]
    assert [can_accept(untested, w) for w in ("ANOVICE", "AABROAD")] == [False, True]

    env.client.disassociate_qualification_from_worker(QualificationTypeId=qual, WorkerId="AEXPERT", Reason="x")
    holders = env.client.list_workers_with_qualification_type(QualificationTypeId=qual, Status="Granted")
    assert [q["WorkerId"] for q in holders["Qualifications"]] == ["ANOVICE"]
    with pytest.raises(ClientError) as excinfo:
        make_hit(env, QualificationRequirements=[
            {"QualificationTypeId": "3NOSUCHTYPE", "Comparator": "Exists"}])
    assert error_of(excinfo)[1] == "AWS.MechanicalTurk.QualificationTypeDoesNotExist"


# ------------------------------------------------------------------ extending, expiring, deleting


def test_additional_assignments_may_not_cross_ten(env):
    small, large = make_hit(env, MaxAssignments=5), make_hit(env, MaxAssignments=10)
    env.client.create_additional_assignments_for_hit(HITId=small["HITId"], NumberOfAdditionalAssignments=4,
                                                     UniqueRequestToken="extend-1")
    with pytest.raises(ClientError) as excinfo:
        env.client.create_additional_assignments_for_hit(HITId=small["HITId"], NumberOfAdditionalAssignments=4,
                                                         UniqueRequestToken="extend-1")
    assert error_of(excinfo)[0] == "RequestError"  # same token: not added twice
    with pytest.raises(ClientError) as excinfo:
        env.client.create_additional_assignments_for_hit(HITId=small["HITId"], NumberOfAdditionalAssignments=1)
    assert error_of(excinfo) == ("RequestError", "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease")
    env.client.create_additional_assignments_for_hit(HITId=large["HITId"], NumberOfAdditionalAssignments=5)
    assert env.client.get_hit(HITId=small["HITId"])["HIT"]["MaxAssignments"] == 9
    assert env.client.get_hit(HITId=large["HITId"])["HIT"]["MaxAssignments"] == 15


def test_delete_hit_only_when_reviewable_and_settled(env):
    hit = make_hit(env)
    with pytest.raises(ClientError) as excinfo:
        env.client.delete_hit(HITId=hit["HITId"])  # still assignable
    assert error_of(excinfo) == ("RequestError", "AWS.MechanicalTurk.InvalidHITState")
    assignment_id = submit(env, hit["HITId"], "AWORKERA")
    env.client.update_expiration_for_hit(HITId=hit["HITId"], ExpireAt=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Reviewable"
    with pytest.raises(ClientError):
        env.client.delete_hit(HITId=hit["HITId"])  # a submitted assignment is not yet approved or rejected
    env.client.approve_assignment(AssignmentId=assignment_id)
    env.client.delete_hit(HITId=hit["HITId"])
    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Disposed"
    assert env.client.list_hits()["HITs"] == []
    with pytest.raises(ClientError) as excinfo:
        env.client.get_hit(HITId="NOSUCHHIT")
    assert error_of(excinfo) == ("RequestError", "AWS.MechanicalTurk.HITDoesNotExist")


def test_expiry_abandonment_and_auto_approval_follow_the_clock(env):
    hit = make_hit(env, LifetimeInSeconds=3600, AssignmentDurationInSeconds=300, AutoApprovalDelayInSeconds=7200,
                   MaxAssignments=2)
    slow = env.market.accept_hit(hit["HITId"], "AWORKERSLOW")
    done = submit(env, hit["HITId"], "AWORKERA")
    env.clock.advance(301)  # past the assignment duration: the slow worker's assignment is abandoned
    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["NumberOfAssignmentsAvailable"] == 1
    with pytest.raises(MTurkError):
        env.market.submit_assignment(slow, "AWORKERSLOW", {"rating__i1": "3"})
    env.clock.advance(3600)  # past the HIT's lifetime
    got = env.client.get_hit(HITId=hit["HITId"])["HIT"]
    assert got["HITStatus"] == "Reviewable"
    with pytest.raises(MTurkError, match="expired"):
        env.market.accept_hit(hit["HITId"], "AWORKERLATE")
    env.clock.advance(7200)  # past the auto-approval delay
    assignment = env.client.get_assignment(AssignmentId=done)["Assignment"]
    assert assignment["AssignmentStatus"] == "Approved"
    assert assignment["ApprovalTime"] == assignment["AutoApprovalTime"]
    # Extending an expired HIT re-opens it.
    env.client.update_expiration_for_hit(HITId=hit["HITId"], ExpireAt=env.clock.now + timedelta(hours=1))
    assert env.client.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Assignable"


# ------------------------------------------------------------------ persistence


def test_a_restarted_marketplace_on_the_same_file_loses_nothing(tmp_path):
    db = tmp_path / "market.db"
    first = local_client(db)
    hit = first.create_hit(**hit_params(UniqueRequestToken="tok-1"))["HIT"]
    worker_side = Marketplace(db)  # another process would open it the same way
    assignment_id = worker_side.accept_hit(hit["HITId"], "AWORKERA")
    first.meta.local_marketplace.close()
    worker_side.close()

    reopened = Marketplace(db)
    reopened.submit_assignment(assignment_id, "AWORKERA", {"rating__i1": "4"})
    second = local_client(db, marketplace=reopened)
    listed = second.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]
    assert [(a["WorkerId"], parse_answer_xml(a["Answer"])) for a in listed] == [("AWORKERA", [("rating__i1", "4")])]
    with pytest.raises(ClientError):
        second.create_hit(**hit_params(UniqueRequestToken="tok-1"))  # the token survived too
    assert second.get_account_balance()["AvailableBalance"] == "9999.64"
    reopened.close()
