"""Quality signals and the policy that turns them into approve / reject / bonus / block decisions."""

from __future__ import annotations

import pandas as pd
import pytest

from data_aggregation import likert_crowd, review_batch
from mturk_tune.aggregation import aggregate
from mturk_tune.errors import ConfigError, InputFileError
from mturk_tune.quality import (
    DECISION_COLUMNS,
    QualityPolicy,
    assignment_signals,
    decide,
    extension_candidates,
    filter_answers,
    worker_signals,
)


@pytest.fixture
def batch() -> dict[str, pd.DataFrame]:
    return review_batch()


def decisions_by_worker(decisions: pd.DataFrame) -> dict[str, set[str]]:
    return decisions.groupby("worker")["action"].agg(set).to_dict()


# --- signals -----------------------------------------------------------------------------------------


def test_worker_signals_expose_each_planted_problem(batch):
    signals = worker_signals(batch["ratings"], batch["assignments"], batch["gold"]).set_index("worker")
    assert signals.loc["careful", "gold_accuracy"] == 1.0
    assert signals.loc["sloppy_gold", "gold_accuracy"] == 0.0
    assert signals.loc["sloppy_gold", "gold_n"] == 6
    assert signals.loc["speeder", "median_seconds_per_item"] == pytest.approx(1.0)
    assert signals.loc["careful", "median_seconds_per_item"] == pytest.approx(20.0)
    assert signals.loc["liner", "straightline_share"] == 1.0
    assert signals.loc["careful", "straightline_share"] == 0.0
    assert signals.loc["twice", "duplicate_submissions"] == 1
    assert signals.loc["twice", "n_assignments"] == 7
    assert signals.loc["liner", "agreement"] < signals.loc["careful", "agreement"]
    assert signals["n_ratings"].sum() == len(batch["ratings"])


def test_gold_tolerance_accepts_near_answers_on_numeric_gold(batch):
    ratings = batch["ratings"]
    # sloppy_gold answers 1 on gold items whose true label is 4: wrong at tolerance 2, right at 3.
    strict = worker_signals(ratings, batch["assignments"], batch["gold"], gold_tolerance=2).set_index("worker")
    lenient = worker_signals(ratings, batch["assignments"], batch["gold"], gold_tolerance=3).set_index("worker")
    assert strict.loc["sloppy_gold", "gold_accuracy"] == 0.0
    assert lenient.loc["sloppy_gold", "gold_accuracy"] == 1.0
    # liner answers 3: within tolerance 1 of 4.
    assert worker_signals(ratings, batch["assignments"], batch["gold"],
                          gold_tolerance=1).set_index("worker").loc["liner", "gold_accuracy"] == 1.0


def test_text_gold_must_match_exactly():
    start = pd.Timestamp("2026-01-01")
    assignments = pd.DataFrame({"assignment_id": ["A1"], "hit_id": ["H1"], "worker": ["W1"],
                                "accept_time": [start], "submit_time": [start + pd.Timedelta(minutes=1)]})
    ratings = pd.DataFrame({"assignment_id": ["A1"] * 3, "hit_id": ["H1"] * 3, "task": ["g1", "g2", "x"],
                            "worker": ["W1"] * 3, "label": ["cat", "Dog", "cat"]})
    gold = pd.DataFrame({"task": ["g1", "g2"], "true_label": ["cat", "dog"]})
    row = worker_signals(ratings, assignments, gold, gold_tolerance=5).iloc[0]
    assert (row["gold_n"], row["gold_correct"]) == (2, 1)


def test_duplicate_is_the_later_submission(batch):
    signals = assignment_signals(batch["ratings"], batch["assignments"]).set_index("assignment_id")
    assert signals.loc["A0_twice_again", "duplicate_of"] == "A0_twice"
    assert signals.loc["A0_twice", "duplicate_of"] == ""


# --- decisions ---------------------------------------------------------------------------------------


def test_decide_rejects_each_bad_worker_for_the_right_reason(batch):
    decisions = decide(batch["ratings"], batch["assignments"], batch["gold"], QualityPolicy())
    assert list(decisions.columns) == DECISION_COLUMNS
    assert len(decisions) == len(batch["assignments"])
    by_id = decisions.set_index("assignment_id")
    assert by_id.loc["A0_careful", "action"] == "approve"
    assert by_id.loc["A0_careful", "reason"].startswith("passed all checks")
    assert by_id.loc["A0_sloppy", "reason"] == "gold accuracy 0.00 < 0.60 on 6 gold items"
    assert by_id.loc["A0_speeder", "reason"] == "1.0 s per item < 2.0 s minimum"
    assert "same answer on all 4 items (straight-lined 6 of 6 assignments)" in by_id.loc["A0_liner", "reason"]
    assert by_id.loc["A0_twice_again", "reason"] == "duplicate submission for HIT H0 (already submitted as A0_twice)"
    assert by_id.loc["A0_twice", "action"] == "approve"
    assert decisions_by_worker(decisions) == {
        "careful": {"approve"}, "twice": {"approve", "reject"}, "sloppy_gold": {"reject"},
        "speeder": {"reject"}, "liner": {"reject"}}
    # Feedback carries the reason; approvals carry none by default.
    assert "gold accuracy 0.00 < 0.60" in by_id.loc["A0_sloppy", "feedback"]
    assert by_id.loc["A0_careful", "feedback"] == ""


def test_blocks_soft_for_rejected_work_hard_for_gold_near_zero(batch):
    decisions = decide(batch["ratings"], batch["assignments"], batch["gold"], QualityPolicy())
    blocks = decisions.groupby("worker")["block"].agg(set).to_dict()
    assert blocks == {"careful": {""}, "twice": {""}, "speeder": {"soft"}, "sloppy_gold": {"hard"},
                      "liner": {"hard"}}
    lenient = decide(batch["ratings"], batch["assignments"], batch["gold"],
                     QualityPolicy(hard_block_below_gold_accuracy=None, soft_block_on_reject=False))
    assert set(lenient["block"]) == {""}


def test_bonus_only_when_configured_and_only_for_approved_work(batch):
    default = decide(batch["ratings"], batch["assignments"], batch["gold"], QualityPolicy())
    assert set(default["bonus"]) == {""}  # no money moves unless asked
    paying = decide(batch["ratings"], batch["assignments"], batch["gold"],
                    QualityPolicy(bonus_amount="0.05", bonus_min_gold_accuracy=0.9))
    paid = paying[paying["bonus"] != ""]
    assert set(paid["bonus"]) == {"0.05"}
    assert set(paid["action"]) == {"approve"}
    assert set(paid["worker"]) == {"careful", "twice"}  # speeder has perfect gold but was rejected


def test_too_little_gold_is_not_judged(batch):
    policy = QualityPolicy(min_gold_answers=10)
    decisions = decide(batch["ratings"], batch["assignments"], batch["gold"], policy)
    assert (decisions.loc[decisions["worker"] == "sloppy_gold", "action"] == "approve").all()


def test_agreement_check_when_enabled(batch):
    policy = QualityPolicy(min_agreement=0.5, min_agreement_answers=5, min_gold_accuracy=None,
                           max_straightline_share=None)
    decisions = decide(batch["ratings"], batch["assignments"], batch["gold"], policy)
    liner = decisions[decisions["worker"] == "liner"]
    assert (liner["action"] == "reject").all()
    assert liner["reason"].str.startswith("agreement 0.00 < 0.50 with other workers over 24 answers").all()


def test_every_check_can_be_switched_off(batch):
    policy = QualityPolicy(min_gold_accuracy=None, min_seconds_per_item=None, max_straightline_share=None,
                           reject_duplicates=False, hard_block_below_gold_accuracy=None)
    decisions = decide(batch["ratings"], batch["assignments"], batch["gold"], policy)
    assert set(decisions["action"]) == {"approve"}


def test_decide_is_pure_and_independent_of_row_order(batch):
    first = decide(batch["ratings"], batch["assignments"], batch["gold"], QualityPolicy())
    shuffled = decide(batch["ratings"].sample(frac=1, random_state=3),
                      batch["assignments"].sample(frac=1, random_state=4),
                      batch["gold"].sample(frac=1, random_state=5), QualityPolicy())
    pd.testing.assert_frame_equal(first, shuffled)
    assert len(batch["ratings"]) == 124  # inputs untouched


def test_submission_without_ratings_is_rejected(batch):
    start = pd.Timestamp("2026-03-02")
    assignments = pd.concat([batch["assignments"], pd.DataFrame(
        {"assignment_id": ["A_empty"], "hit_id": ["H9"], "worker": ["careful"], "accept_time": [start],
         "submit_time": [start + pd.Timedelta(minutes=2)]})], ignore_index=True)
    decisions = decide(batch["ratings"], assignments, batch["gold"]).set_index("assignment_id")
    assert decisions.loc["A_empty", "reason"] == "no ratings could be read from this submission"


# --- filter and compose ----------------------------------------------------------------------------


def test_filter_answers_keeps_approved_work_and_composes_with_aggregation(batch):
    decisions = decide(batch["ratings"], batch["assignments"], batch["gold"], QualityPolicy())
    clean = filter_answers(batch["ratings"], decisions)
    approved = set(decisions.loc[decisions["action"] == "approve", "assignment_id"])
    assert set(clean["assignment_id"]) == approved
    assert set(clean["worker"]) == {"careful", "twice"}
    scores = aggregate(clean, "mean").items
    assert len(scores) == 24  # 18 items + 6 gold


def test_filtering_spammers_out_brings_the_mean_closer_to_the_truth():
    crowd = likert_crowd()
    answers = crowd.answers.assign(assignment_id=crowd.answers["worker"])
    decisions = pd.DataFrame({"assignment_id": answers["worker"].unique()})
    decisions["action"] = decisions["assignment_id"].map(lambda w: "reject" if w in crowd.spammers else "approve")
    clean = filter_answers(answers, decisions)
    error = lambda a: (a.groupby("task")["label"].mean() - crowd.truth).abs().mean()  # noqa: E731
    assert error(clean) < 0.8 * error(answers)


# --- extension candidates ------------------------------------------------------------------------


def test_extension_candidates_pick_the_least_confident_within_budget():
    items = pd.DataFrame({"task": ["a", "b", "c", "d", "e"], "confidence": [0.9, 0.3, 0.5, 0.3, 0.2],
                          "n": [3, 5, 3, 3, 9]})
    assert extension_candidates(items, threshold=0.6, max_extra_assignments=10) == ["e", "d", "b", "c"]
    assert extension_candidates(items, threshold=0.6, max_extra_assignments=3) == ["e", "d", "b"]
    assert extension_candidates(items, threshold=0.6, max_extra_assignments=5, per_item=2) == ["e", "d"]
    assert extension_candidates(items, threshold=0.6, max_extra_assignments=10, max_answers=9) == ["d", "b", "c"]
    assert extension_candidates(items, threshold=0.1, max_extra_assignments=10) == []
    assert extension_candidates(items, threshold=0.6, max_extra_assignments=0) == []


def test_extension_candidates_validate_arguments():
    items = pd.DataFrame({"task": ["a"], "confidence": [0.1], "n": [1]})
    with pytest.raises(ConfigError, match="threshold"):
        extension_candidates(items, threshold=1.5, max_extra_assignments=1)
    with pytest.raises(ConfigError, match="per_item"):
        extension_candidates(items, threshold=0.5, max_extra_assignments=1, per_item=0)
    with pytest.raises(InputFileError, match="lacks column"):
        extension_candidates(items.drop(columns="n"), threshold=0.5, max_extra_assignments=1)


# --- policy -----------------------------------------------------------------------------------------


def test_policy_from_dict_reads_known_keys():
    policy = QualityPolicy.from_dict({"min_gold_accuracy": 0.7, "bonus_amount": "0.10", "gold_tolerance": 1})
    assert policy.min_gold_accuracy == 0.7
    assert policy.pays_bonus


def test_policy_from_toml_switches_checks_off_with_false_or_off():
    # TOML has no null: false or "off" stand for "no such check".
    policy = QualityPolicy.from_dict({"min_seconds_per_item": False, "hard_block_below_gold_accuracy": "off"})
    assert policy.min_seconds_per_item is None and policy.hard_block_below_gold_accuracy is None
    with pytest.raises(ConfigError, match="'reject_duplicates'"):
        QualityPolicy.from_dict({"reject_duplicates": "off"})  # not a threshold: must be true or false


def test_without_gold_the_other_checks_still_decide(batch):
    signals = worker_signals(batch["ratings"], batch["assignments"]).set_index("worker")
    assert signals["gold_accuracy"].isna().all() and (signals["gold_n"] == 0).all()
    decisions = decide(batch["ratings"], batch["assignments"], None)
    assert decisions_by_worker(decisions)["speeder"] == {"reject"}
    assert decisions_by_worker(decisions)["sloppy_gold"] == {"approve"}  # only gold could catch it
    assert set(decisions["block"]) <= {"", "soft"}


@pytest.mark.parametrize("values, message", [
    ({"min_gold_acuracy": 0.7}, "unknown quality policy key 'min_gold_acuracy'"),
    ({"min_gold_accuracy": 1.5}, "'min_gold_accuracy' must be a number between 0 and 1"),
    ({"min_gold_accuracy": "high"}, "'min_gold_accuracy'"),
    ({"bonus_amount": 0.05}, "'bonus_amount' must be a dollar string"),
    ({"bonus_amount": "0.055"}, "'bonus_amount'"),
    ({"min_gold_answers": 0}, "'min_gold_answers' must be a whole number"),
    ({"min_seconds_per_item": -1}, "'min_seconds_per_item'"),
    ({"reject_duplicates": "yes"}, "'reject_duplicates' must be true or false"),
    ({"reject_feedback": "bad {score}"}, "'reject_feedback' may only use the placeholder"),
    ({"soft_block_qualification_name": " "}, "'soft_block_qualification_name'"),
])
def test_policy_from_dict_names_the_bad_key(values, message):
    with pytest.raises(ConfigError, match=message):
        QualityPolicy.from_dict(values)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b["ratings"].drop(columns="assignment_id"), "ratings table lacks column"),
    (lambda b: b["ratings"].assign(label=None), "missing value"),
    (lambda b: pd.concat([b["ratings"], b["ratings"].iloc[:1].assign(assignment_id="ghost")]), "'ghost'"),
])
def test_bad_ratings_are_input_errors(batch, mutate, message):
    with pytest.raises(InputFileError, match=message):
        decide(mutate(batch), batch["assignments"], batch["gold"])
