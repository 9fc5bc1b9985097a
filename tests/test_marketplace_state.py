"""Marketplace state-machine details that need no transport: concurrency, system qualifications, review states."""

from __future__ import annotations

import threading

import pytest

from mturk_tune.marketplace import Marketplace, MTurkError

QUESTION = '<QuestionForm xmlns="http://example.invalid/q"><Question/></QuestionForm>'


def new_hit(market: Marketplace, **overrides) -> str:
    params = dict(Title="T", Description="D", Reward="0.10", AssignmentDurationInSeconds=600,
                  LifetimeInSeconds=3600, MaxAssignments=3, Question=QUESTION)
    params.update(overrides)
    return market.create_hit(**params)["HIT"]["HITId"]


def test_concurrent_workers_in_two_processes_never_overfill_a_hit(tmp_path):
    db = tmp_path / "m.db"
    first, second = Marketplace(db), Marketplace(db)  # two connections, as two processes would have
    hit_id = new_hit(first, MaxAssignments=3)
    accepted, refused = [], []

    def worker(market: Marketplace, index: int) -> None:
        try:
            accepted.append(market.accept_hit(hit_id, f"ATHREAD{index}"))
        except MTurkError:
            refused.append(index)

    threads = [threading.Thread(target=worker, args=(first if i % 2 else second, i)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(accepted), len(refused)) == (3, 9)
    assert first.get_hit(HITId=hit_id)["HIT"]["NumberOfAssignmentsPending"] == 3


def test_approval_rate_and_count_are_system_qualifications():
    market = Marketplace()
    for worker, verdicts in {"AGOOD": ["ok", "ok"], "AMIXED": ["ok", "bad"]}.items():
        for verdict in verdicts:
            hit_id = new_hit(market, MaxAssignments=1)
            assignment_id = market.accept_hit(hit_id, worker)
            market.submit_assignment(assignment_id, worker, {"a": "1"})
            if verdict == "ok":
                market.approve_assignment(AssignmentId=assignment_id)
            else:
                market.reject_assignment(AssignmentId=assignment_id, RequesterFeedback="no")
    demanding = new_hit(market, QualificationRequirements=[
        {"QualificationTypeId": "000000000000000000L0", "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [95]},
        {"QualificationTypeId": "00000000000000000040", "Comparator": "GreaterThan", "IntegerValues": [0]}])
    assert market.accept_hit(demanding, "AGOOD")
    with pytest.raises(MTurkError, match="000000000000000000L0"):
        market.accept_hit(demanding, "AMIXED")  # 50% approved
    with pytest.raises(MTurkError, match="00000000000000000040"):
        market.accept_hit(demanding, "ANEWCOMER")  # 100% of nothing, but no approved HIT yet


def test_auto_granted_qualifications_are_granted_on_first_accept():
    market = Marketplace()
    qual = market.create_qualification_type(Name="Welcome", Description="Everyone", QualificationTypeStatus="Active",
                                            AutoGranted=True, AutoGrantedValue=7)["QualificationType"]
    assert qual["IsRequestable"] and qual["AutoGrantedValue"] == 7
    hit_id = new_hit(market, QualificationRequirements=[
        {"QualificationTypeId": qual["QualificationTypeId"], "Comparator": "EqualTo", "IntegerValues": [7]}])
    market.accept_hit(hit_id, "AFRESH")
    score = market.get_qualification_score(QualificationTypeId=qual["QualificationTypeId"], WorkerId="AFRESH")
    assert score["Qualification"]["IntegerValue"] == 7
    listed = market.list_hits_for_qualification_type(QualificationTypeId=qual["QualificationTypeId"])
    assert [h["HITId"] for h in listed["HITs"]] == [hit_id]


def test_review_status_moves_between_reviewable_and_reviewing():
    market = Marketplace()
    hit_id = new_hit(market, MaxAssignments=1)
    with pytest.raises(MTurkError):
        market.update_hit_review_status(HITId=hit_id)  # still assignable
    assignment_id = market.accept_hit(hit_id, "AREVIEW")
    market.submit_assignment(assignment_id, "AREVIEW", {"a": "1"})
    market.update_hit_review_status(HITId=hit_id)
    assert [h["HITId"] for h in market.list_reviewable_hits(Status="Reviewing")["HITs"]] == [hit_id]
    assert market.list_reviewable_hits()["HITs"] == []
    market.update_hit_review_status(HITId=hit_id, Revert=True)
    assert market.get_hit(HITId=hit_id)["HIT"]["HITStatus"] == "Reviewable"


def test_unknown_parameters_and_bad_worker_ids_are_refused():
    market = Marketplace()
    with pytest.raises(MTurkError, match="Unknown parameter 'Titel'"):
        market.create_hit_type(Titel="typo", Title="T", Description="D", Reward="1", AssignmentDurationInSeconds=60)
    with pytest.raises(MTurkError, match="Worker id"):
        market.accept_hit(new_hit(market), "worker-1")
    with pytest.raises(MTurkError, match="HITLayoutId"):
        market.create_hit(Title="T", Description="D", Reward="0.10", AssignmentDurationInSeconds=600,
                          LifetimeInSeconds=3600, HITLayoutId="ABC")
