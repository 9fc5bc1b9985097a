"""Collecting answers: each stored exactly once, raw first, hostile documents kept with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from mturk_tune.collecting import collect
from mturk_tune.config import PublishSection
from mturk_tune.hits import build_answer_xml
from mturk_tune.marketplace import Marketplace, local_client
from mturk_tune.marketplace.crowd import SimulatedCrowd, make_crowd
from mturk_tune.publishing import plan_publish, publish
from mturk_tune.requester import resolve_endpoint
from mturk_tune.store import Store

LOCAL = resolve_endpoint("local")
SETTINGS = PublishSection(endpoint="local", items_per_hit=2, assignments=3, concurrency=4)


def published(tmp_path: Path, n_items: int) -> tuple[Store, Marketplace, object]:
    store = Store.create(tmp_path / "state.db", model="m")
    store.add_batch("b1", 0, "m", {}, [{"id": f"i{n}", "prompt_id": "p", "prompt": "Say something.",
                                        "text": f"a good kind text number {n}", "model": "m"} for n in range(n_items)])
    market = Marketplace(tmp_path / "market.db")
    client = local_client(market.db_path, marketplace=market)
    publish(store, client, LOCAL, SETTINGS, plan_publish(store, LOCAL, SETTINGS, "b1"))
    return store, market, client


def test_every_assignment_is_stored_once_across_runs(tmp_path):
    store, market, client = published(tmp_path, 6)
    crowd = SimulatedCrowd(market, make_crowd(4, {"careful": 1.0}, seed=2), seed=2)
    assert crowd.work(max_assignments=4) == 4
    first = collect(store, client, LOCAL)
    assert (first.new_assignments, first.new_ratings, first.parse_errors) == (4, 8, 0)
    crowd.work()
    second = collect(store, client, LOCAL)
    assert second.new_assignments == 9 - 4
    assert collect(store, client, LOCAL).new_assignments == 0
    stored = store.assignments_frame()
    assert len(stored) == stored["assignment_id"].nunique() == 9
    assert len(store.ratings_frame()) == 9 * 2


class Crash(BaseException):
    pass


def test_an_answer_stored_before_a_crash_is_parsed_by_the_next_run(tmp_path, monkeypatch):
    import mturk_tune.collecting as collecting

    store, market, client = published(tmp_path, 4)
    SimulatedCrowd(market, make_crowd(3, {"careful": 1.0}, seed=1), seed=1).work()

    def dies_after_saving(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(collecting, "_parse_and_store", dies_after_saving)
    with pytest.raises(Crash):
        collect(store, client, LOCAL, concurrency=1)
    assert len(store.assignments_frame()) == 1 and store.ratings_frame().empty  # kept raw, not parsed
    monkeypatch.undo()
    result = collect(store, client, LOCAL)
    assert result.new_assignments == 5 and result.new_ratings == 6 * 2 and result.parse_errors == 0
    assert len(store.ratings_frame()) == 12


def test_hits_of_a_crashed_publish_are_collected(tmp_path, monkeypatch):
    import mturk_tune.publishing as publishing

    store = Store.create(tmp_path / "state.db", model="m")
    store.add_batch("b1", 0, "m", {}, [{"id": f"i{n}", "prompt_id": "p", "prompt": "", "text": f"t{n}", "model": "m"}
                                       for n in range(4)])
    market = Marketplace(tmp_path / "market.db")
    client = local_client(market.db_path, marketplace=market)

    def dies(*args):
        raise Crash()

    monkeypatch.setattr(publishing, "_mark_created", dies)
    with pytest.raises(Crash):
        publish(store, client, LOCAL, SETTINGS, plan_publish(store, LOCAL, SETTINGS, "b1"))
    assert store.hits() == []
    SimulatedCrowd(market, make_crowd(3, {"careful": 1.0}, seed=1), seed=1).work()
    monkeypatch.undo()
    result = collect(store, client, LOCAL)  # finds the two HITs by their annotation
    assert result.hits == 2 and result.new_assignments == 6


# ------------------------------------------------------------------------------ hostile answers

BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><QuestionFormAnswers><Answer><QuestionIdentifier>'
        'rating__i0</QuestionIdentifier><FreeText>&lol3;</FreeText></Answer></QuestionFormAnswers>')
EXTERNAL = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><QuestionFormAnswers>'
            '<Answer><QuestionIdentifier>rating__i0</QuestionIdentifier><FreeText>&e;</FreeText></Answer>'
            '</QuestionFormAnswers>')
HOSTILE = {
    "bomb": (BOMB, "defusedxml"),
    "external entity": (EXTERNAL, "defusedxml"),
    "huge": (build_answer_xml({"rating__i0": "3", "rating__i1": "4", "comment": "x" * 400_000}), "larger than"),
    "not xml": ("rating__i0=5", "not well-formed"),
    "empty": ("", "empty answer"),
    "wrong root": ("<html><body>5</body></html>", "expected <QuestionFormAnswers>"),
    "duplicated field": (build_answer_xml({"rating__i0": "3", "rating__i1": "4"}).replace(
        "</QuestionFormAnswers>", "<Answer><QuestionIdentifier>rating__i0</QuestionIdentifier><FreeText>5"
        "</FreeText></Answer></QuestionFormAnswers>"), "appears twice"),
    "out of range": (build_answer_xml({"rating__i0": "7", "rating__i1": "4"}), "outside the scale"),
    "not a number": (build_answer_xml({"rating__i0": "five", "rating__i1": "4"}), "not a number"),
    "half a point": (build_answer_xml({"rating__i0": "3.5", "rating__i1": "4"}), "outside the scale"),
    "missing rating": (build_answer_xml({"rating__i0": "3"}), "no rating for 1 of 2 items"),
    "unknown item": (build_answer_xml({"rating__i0": "3", "rating__i1": "4", "rating__zzz": "2"}), "unknown item"),
    "control characters": ("<QuestionFormAnswers>\x00\x01</QuestionFormAnswers>", "not well-formed"),
}


class FakeClient:
    """Answers ListAssignmentsForHIT with the given documents (what a broken or hostile worker sends)."""

    def __init__(self, hit_id: str, answers: dict[str, str]):
        self.pages = [{"Assignments": [
            {"AssignmentId": f"A{n:03d}", "HITId": hit_id, "WorkerId": f"W{n}", "AssignmentStatus": "Submitted",
             "Answer": answer} for n, answer in enumerate(answers.values())]}]

    def get_paginator(self, name: str):
        assert name == "list_assignments_for_hit"
        return self

    def paginate(self, **kwargs):
        return iter(self.pages)


def test_hostile_answers_are_kept_raw_with_a_one_line_reason(tmp_path):
    store = Store.create(tmp_path / "state.db", model="m")
    store.add_batch("b1", 0, "m", {}, [{"id": i, "prompt_id": "p", "prompt": "", "text": i, "model": "m"}
                                       for i in ("i0", "i1")])
    store.record_hit_intent("tok", "b1", 0, "local", "type", 30, "0.05", ["i0", "i1"])
    store.mark_hit_created("tok", "HIT1")
    answers = {name: doc for name, (doc, _) in HOSTILE.items()}
    answers["good"] = build_answer_xml({"rating__i0": "2", "rating__i1": "5", "comment": "<b>fine</b>"})
    result = collect(store, FakeClient("HIT1", answers), LOCAL)
    assert result.new_assignments == len(answers) and result.parse_errors == len(HOSTILE)
    stored = store.assignments_frame().set_index("assignment_id")
    raw = dict(store.conn.execute("SELECT assignment_id, answer_xml FROM assignments").fetchall())
    for n, (name, (doc, reason)) in enumerate(HOSTILE.items()):
        error = stored.loc[f"A{n:03d}", "parse_error"]
        assert reason in error and "\n" not in error, name
        assert raw[f"A{n:03d}"] == doc, f"{name}: the raw answer must be kept verbatim"
    ratings = store.ratings_frame()
    assert ratings[["task", "label"]].values.tolist() == [["i0", 2.0], ["i1", 5.0]]
    assert collect(store, FakeClient("HIT1", answers), LOCAL).new_assignments == 0
