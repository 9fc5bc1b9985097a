"""Aggregators: hand-checked small cases, planted spammers, robustness, bad input, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_aggregation import categorical_crowd, likert_crowd, pairwise_crowd
from mturk_tune.aggregation import (
    ITEM_COLUMNS,
    METHODS,
    AggregationResult,
    BradleyTerry,
    DawidSkene,
    MajorityVote,
    OrdinalDawidSkene,
    aggregate,
)
from mturk_tune.errors import ConfigError, InputFileError

CATEGORICAL = ["majority_vote", "wawa", "dawid_skene", "mace", "glad"]
NUMERIC = ["mean", "median", "weighted_mean", "ordinal_ds"]


def frame(tasks, workers, labels) -> pd.DataFrame:
    return pd.DataFrame({"task": tasks, "worker": workers, "label": labels})


def answers_for(method: str) -> pd.DataFrame:
    """Small valid input of the right shape for any method."""
    if method == "bradley_terry":
        return pairwise_crowd(n_judgments=60)[0]
    return likert_crowd(n_tasks=30).answers


# --- hand-checked examples -------------------------------------------------------------------


def test_majority_vote_counts_votes_and_breaks_ties_by_sorted_label():
    answers = frame(["a", "a", "a", "b", "b"], ["w1", "w2", "w3", "w1", "w2"], ["no", "yes", "yes", "yes", "no"])
    result = aggregate(answers, "majority_vote")
    items = result.items.set_index("task")
    assert items.loc["a", "label"] == "yes"
    assert items.loc["b", "label"] == "no"  # 1-1 tie: first label in sorted order
    # Laplace-smoothed share of the winner: (2 + 1) / (3 + 2).
    assert items.loc["a", "confidence"] == pytest.approx(0.6)
    assert items.loc["a", "spread"] == pytest.approx(1 / 3)
    assert items["n"].tolist() == [3, 2]
    workers = result.workers.set_index("worker")
    assert workers.loc["w1", "skill"] == pytest.approx(0.0)  # "no" on a, "yes" on b: both lost
    assert workers.loc["w2", "skill"] == pytest.approx(1.0)


def test_mean_and_median_by_hand():
    answers = frame(["a", "a", "a", "a", "b"], ["w1", "w2", "w3", "w4", "w1"], [1, 2, 4, 9, 3])
    mean = aggregate(answers, "mean").items.set_index("task")
    median = aggregate(answers, "median").items.set_index("task")
    assert mean.loc["a", "label"] == pytest.approx(4.0)
    assert median.loc["a", "label"] == pytest.approx(3.0)  # mean of the middle pair 2 and 4
    assert median.loc["b", "label"] == pytest.approx(3.0)
    assert mean.loc["a", "spread"] == pytest.approx(np.std([1, 2, 4, 9]))
    assert mean.loc["b", "spread"] == 0.0


def test_one_answer_is_never_certain():
    answers = frame(["a", "a", "a", "b"], ["w1", "w2", "w3", "w1"], [3, 3, 4, 5])
    for method in ["majority_vote", "mean", "median", "weighted_mean"]:
        items = aggregate(answers, method).items.set_index("task")
        assert items.loc["b", "confidence"] < 0.9, method
    # Even when no answer disagrees anywhere, a lone numeric answer is not certain.
    for method in ["mean", "median", "weighted_mean"]:
        assert aggregate(frame(["a"], ["w1"], [4]), method).items["confidence"].iloc[0] < 0.9, method


def test_confidence_grows_with_agreeing_answers():
    few = frame(["a"] * 2 + ["b", "b"], ["w1", "w2", "w1", "w2"], [4, 4, 1, 5])
    many = frame(["a"] * 6 + ["b", "b"], [f"w{i}" for i in range(6)] + ["w1", "w2"], [4] * 6 + [1, 5])
    for method in ["majority_vote", "mean", "median", "weighted_mean"]:
        low = aggregate(few, method).items.set_index("task").loc["a", "confidence"]
        high = aggregate(many, method).items.set_index("task").loc["a", "confidence"]
        assert high > low, method


def test_dawid_skene_learns_a_worker_who_always_swaps_labels():
    # w3 always says the opposite of w1 and w2: the confusion matrix can use that as information.
    tasks = [f"t{i}" for i in range(6)]
    truth = ["x", "y", "x", "y", "x", "y"]
    swap = {"x": "y", "y": "x"}
    answers = pd.concat([
        frame(tasks, ["w1"] * 6, truth),
        frame(tasks, ["w2"] * 6, truth),
        frame(tasks, ["w3"] * 6, [swap[t] for t in truth]),
    ])
    model = DawidSkene().fit(answers)
    assert model.labels_.tolist() == truth
    errors = model.errors_[model.skills_.index.get_loc("w3")]  # (given, true)
    assert errors[1, 0] > 0.9 and errors[0, 1] > 0.9
    assert model.skills_["w3"] < 0.1 < 0.9 < model.skills_["w1"]


def test_bradley_terry_by_hand_and_both_input_shapes():
    # a beats b twice, b beats c twice, a beats c once: strengths a > b > c.
    long = frame(["a|b", "a|b", "b|c", "c|b", "a|c"], ["w1", "w2", "w1", "w2", "w1"], ["a", "a", "b", "b", "a"])
    wide = pd.DataFrame({"left": ["a", "a", "b", "c", "a"], "right": ["b", "b", "c", "b", "c"],
                         "worker": ["w1", "w2", "w1", "w2", "w1"], "label": ["a", "a", "b", "b", "a"]})
    first = aggregate(long, "bradley_terry").items.set_index("task")
    second = aggregate(wide, "bradley_terry").items.set_index("task")
    pd.testing.assert_frame_equal(first, second)
    assert first.loc["a", "label"] > first.loc["b", "label"] > first.loc["c", "label"]
    assert first.loc["b", "n"] == 4  # comparisons involving b
    model = BradleyTerry().fit(long)
    # The fitted strengths satisfy the MM fixed point: expected wins equal observed wins (+ prior half-game).
    p = model.strengths_
    expected_a = 2 * p["a"] / (p["a"] + p["b"]) + p["a"] / (p["a"] + p["c"]) + p["a"] / (p["a"] + 1)
    assert expected_a == pytest.approx(3 + 0.5, rel=1e-5)


def test_bradley_terry_recovers_the_order_of_simulated_strengths():
    answers, strength = pairwise_crowd()
    scores = BradleyTerry().fit_predict(answers)
    assert list(scores.sort_values().index) == list(strength.sort_values().index)
    assert np.corrcoef(scores[strength.index], strength)[0, 1] > 0.98


# --- planted spammers ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dawid_skene", "mace", "glad", "wawa"])
def test_spammers_get_the_lowest_skills(method):
    crowd = categorical_crowd()
    skills = aggregate(crowd.answers, method).workers.set_index("worker")["skill"]
    assert skills[crowd.spammers].max() < skills[crowd.good].min()


@pytest.mark.parametrize("method", ["dawid_skene", "mace", "glad"])
def test_skill_models_beat_majority_vote_when_half_the_crowd_spams(method):
    crowd = categorical_crowd()
    def accuracy(m: str) -> float:
        labels = aggregate(crowd.answers, m).items.set_index("task")["label"]
        return float((labels == crowd.truth[labels.index]).mean())
    assert accuracy(method) >= accuracy("majority_vote") + 0.05


def test_likert_models_find_spammers_and_straight_liners():
    crowd = likert_crowd()
    workers = aggregate(crowd.answers, "ordinal_ds").workers.set_index("worker")
    assert workers.loc[crowd.spammers, "skill"].max() < workers.loc[crowd.good, "skill"].min()
    assert (workers.loc[crowd.spammers, "spam"] > 0.5).all()
    # Systematic leniency and harshness are estimated with the right sign.
    assert (workers.loc[["lenient0", "lenient1"], "bias"] > 0.3).all()
    assert (workers.loc[["harsh0", "harsh1"], "bias"] < -0.3).all()


@pytest.mark.parametrize("method", ["ordinal_ds", "weighted_mean", "median"])
def test_robust_aggregation_recovers_truth_where_the_mean_does_not(method):
    crowd = likert_crowd()

    def error(m: str) -> float:
        scores = aggregate(crowd.answers, m).items.set_index("task")["label"]
        return float((scores - crowd.truth[scores.index]).abs().mean())

    assert error(method) < 0.85 * error("mean")


def test_ordinal_model_is_much_closer_than_the_mean():
    crowd = likert_crowd(seed=3)
    model = OrdinalDawidSkene().fit(crowd.answers)
    mean = crowd.answers.groupby("task")["label"].mean()
    assert (model.labels_ - crowd.truth).abs().mean() < 0.6 * (mean - crowd.truth).abs().mean()
    assert model.probas_.shape == (len(crowd.truth), 5)
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0)


# --- contract --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_returns_the_result_contract(method):
    answers = answers_for(method)
    result = aggregate(answers, method)
    assert isinstance(result, AggregationResult)
    assert list(result.items.columns) == ITEM_COLUMNS
    assert list(result.workers.columns[:3]) == ["worker", "skill", "n"]
    assert result.method == method
    assert result.params == METHODS[method]().params()
    assert result.items["confidence"].between(0, 1).all()
    assert result.workers["skill"].between(0, 1).all()
    assert result.workers["n"].sum() == len(answers)
    if method != "bradley_terry":
        assert result.items["n"].sum() == len(answers)
        assert set(result.items["task"]) == set(answers["task"])


@pytest.mark.parametrize("method", CATEGORICAL)
@pytest.mark.parametrize("labels", [["x", "y"], [0, 1], [1.5, 2.5], [True, False]])
def test_categorical_methods_keep_the_label_values_and_type(method, labels):
    crowd = categorical_crowd(n_tasks=40, n_classes=2)
    mapping = {"class0": labels[0], "class1": labels[1]}
    answers = crowd.answers.assign(label=crowd.answers["label"].map(mapping))
    out = aggregate(answers, method).items["label"]
    assert set(out) <= set(labels)
    assert type(out.iloc[0]) is type(answers["label"].iloc[0])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_results_do_not_depend_on_row_order(method):
    answers = answers_for(method)
    shuffled = answers.sample(frac=1.0, random_state=1).reset_index(drop=True)
    first = aggregate(answers, method)
    second = aggregate(shuffled, method)
    pd.testing.assert_frame_equal(first.items, second.items, check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(first.workers, second.workers, check_exact=False, rtol=1e-6)


def test_fit_predict_matches_result_and_fitted_attributes_end_in_underscore():
    crowd = categorical_crowd(n_tasks=50)
    model = DawidSkene()
    labels = model.fit_predict(crowd.answers)
    assert labels.equals(model.result().items.set_index("task")["label"].rename("label"))
    assert model.probas_.shape == (50, 3)
    assert model.n_iter_ >= 1
    assert not hasattr(DawidSkene(), "labels_")
    with pytest.raises(RuntimeError, match="not fitted"):
        MajorityVote().result()


@pytest.mark.filterwarnings("ignore")
def test_dawid_skene_matches_crowd_kit_step_for_step():
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    crowd = categorical_crowd(n_tasks=200, seed=5)
    theirs = crowdkit.DawidSkene(n_iter=7, tol=-np.inf).fit(crowd.answers)
    ours = DawidSkene(n_iter=7, tol=0, smoothing=0).fit(crowd.answers)
    assert (theirs.labels_.sort_index() == ours.labels_.sort_index()).all()
    np.testing.assert_allclose(theirs.probas_.sort_index().sort_index(axis=1).to_numpy(), ours.probas_.to_numpy(),
                               atol=1e-6)


# --- bad input ---------------------------------------------------------------------------------------

GOOD = frame(["a", "a", "b"], ["w1", "w2", "w1"], [1, 2, 3])
BAD_INPUTS = {
    "not a table": ([("a", "w1", 1)], "must be a pandas DataFrame"),
    "missing label column": (GOOD.drop(columns="label"), "lacks column"),
    "missing worker column": (GOOD.drop(columns="worker"), "lacks column"),
    "empty table": (GOOD.iloc[:0], "is empty"),
    "missing label": (GOOD.assign(label=[1, None, 3]), "missing value"),
    "missing task": (GOOD.assign(task=["a", None, "b"]), "missing value"),
}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_a_clear_input_error(method, case):
    answers, message = BAD_INPUTS[case]
    with pytest.raises(InputFileError, match=message):
        aggregate(answers, method)


@pytest.mark.parametrize("method", NUMERIC)
def test_numeric_methods_reject_text_labels_and_say_which_method_needs_numbers(method):
    answers = frame(["a", "a"], ["w1", "w2"], ["good", "bad"])
    with pytest.raises(InputFileError, match=f"method '{method}' needs numeric labels.*'good'"):
        aggregate(answers, method)


def test_numeric_methods_accept_numbers_written_as_text():
    answers = frame(["a", "a"], ["w1", "w2"], ["2", "4"])
    assert aggregate(answers, "mean").items["label"].iloc[0] == pytest.approx(3.0)


@pytest.mark.parametrize("answers, message", [
    (frame(["a-b"], ["w1"], ["a"]), "not written 'a|b'"),
    (frame(["a|b"], ["w1"], ["c"]), "neither of the compared items"),
    (frame(["a|a"], ["w1"], ["a"]), "with itself"),
])
def test_bradley_terry_rejects_malformed_pairs(answers, message):
    with pytest.raises(InputFileError, match=message):
        aggregate(answers, "bradley_terry")


def test_unknown_method_or_parameter_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="unknown aggregation method 'vote'.*majority_vote"):
        aggregate(GOOD, "vote")
    with pytest.raises(ConfigError, match="no parameter 'n_iters'.*n_iter"):
        aggregate(GOOD, "dawid_skene", n_iters=3)
    with pytest.raises(ConfigError, match="'n_iter'"):
        aggregate(GOOD, "dawid_skene", n_iter=0)
    with pytest.raises(ConfigError, match="'smoothing'"):
        aggregate(GOOD, "dawid_skene", smoothing=-1)
