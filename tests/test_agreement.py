"""Agreement metrics: Krippendorff's alpha against the krippendorff package, Fleiss' kappa against a
textbook example, leave-one-out worker agreement."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest

from data_aggregation import (
    FLEISS_TEXTBOOK_COUNTS,
    FLEISS_TEXTBOOK_KAPPA,
    categorical_crowd,
    counts_to_answers,
    likert_crowd,
)
from mturk_tune.agreement import fleiss_kappa, krippendorff_alpha, worker_agreement
from mturk_tune.errors import ConfigError, InputFileError


def sparse_ratings(seed: int, values, missing: float = 0.35, n_tasks: int = 40, n_workers: int = 7) -> pd.DataFrame:
    """Ratings where each (task, worker) is missing with probability ``missing``; some tasks keep a
    single rating (not pairable), as real crowd data does."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(values, size=n_tasks)
    rows = []
    for task in range(n_tasks):
        for worker in range(n_workers):
            if rng.random() < missing:
                continue
            value = truth[task] if rng.random() < 0.6 else rng.choice(values)
            rows.append((f"t{task}", f"w{worker}", value))
    rows += [("lonely0", "w0", values[0]), ("lonely1", "w3", values[-1])]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def reference_alpha(answers: pd.DataFrame, level: str) -> float:
    matrix = answers.pivot(index="worker", columns="task", values="label").to_numpy(dtype=float)
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed, values", [
    (0, [1, 2, 3, 4, 5]),
    (1, [1, 2, 3, 4, 5]),
    (2, [0.0, 0.5, 2.0, 7.5]),  # unevenly spaced: ordinal and interval differ
    (3, [-3, 10, 11, 40, 41, 42]),
])
def test_alpha_matches_the_krippendorff_package_with_missing_ratings(level, seed, values):
    answers = sparse_ratings(seed, values)
    assert answers.groupby("task").size().min() == 1  # unpairable tasks and missing ratings included
    assert krippendorff_alpha(answers, level) == pytest.approx(reference_alpha(answers, level), abs=1e-9)


def test_nominal_alpha_accepts_text_labels_and_equals_coded_labels():
    answers = sparse_ratings(4, [1, 2, 3])
    as_text = answers.assign(label=answers["label"].map({1: "low", 2: "mid", 3: "high"}))
    assert krippendorff_alpha(as_text) == pytest.approx(krippendorff_alpha(answers))


def test_alpha_is_one_for_perfect_agreement_and_nan_without_variation():
    perfect = pd.DataFrame({"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": [1, 1, 3, 3]})
    assert krippendorff_alpha(perfect, "interval") == pytest.approx(1.0)
    constant = perfect.assign(label=2)
    assert np.isnan(krippendorff_alpha(constant))


def test_alpha_drops_when_spammers_join():
    crowd = likert_crowd()
    careful = crowd.answers[~crowd.answers["worker"].isin(crowd.spammers)]
    assert krippendorff_alpha(crowd.answers, "ordinal") < krippendorff_alpha(careful, "ordinal") - 0.1


def test_fleiss_kappa_reproduces_the_textbook_example():
    answers = counts_to_answers(FLEISS_TEXTBOOK_COUNTS)
    assert fleiss_kappa(answers) == pytest.approx(FLEISS_TEXTBOOK_KAPPA, abs=5e-4)


def test_fleiss_kappa_with_unequal_raters_uses_each_tasks_own_count():
    # Task 1: x, x, y (P = 2/6); task 2: y, y (P = 1); task 3: a single answer, skipped.
    answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 3], "worker": ["a", "b", "c", "a", "b", "a"],
                            "label": ["x", "x", "y", "y", "y", "x"]})
    p_bar = (2 / 6 + 1.0) / 2
    shares = np.array([2, 3]) / 5
    chance = float((shares ** 2).sum())
    assert fleiss_kappa(answers) == pytest.approx((p_bar - chance) / (1 - chance))


def test_worker_agreement_compares_each_answer_with_the_other_workers_only():
    answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 3], "worker": ["a", "b", "c", "a", "b", "c"],
                            "label": ["x", "x", "y", "y", "y", "z"]})
    table = worker_agreement(answers).set_index("worker")
    # a: task 1 one of two others agrees, task 2 the other agrees -> (1/2 + 1) / 2.
    assert table.loc["a", "agreement"] == pytest.approx(0.75)
    assert table.loc["c", "agreement"] == pytest.approx(0.0)
    # c's answer on task 3 has nobody to compare with and is not counted.
    assert table["n"].to_dict() == {"a": 2, "b": 2, "c": 1}


def test_worker_agreement_ranks_spammers_last():
    crowd = categorical_crowd()
    nominal = worker_agreement(crowd.answers).set_index("worker")["agreement"]
    assert nominal[crowd.spammers].max() < nominal[crowd.good].min()
    likert = likert_crowd()
    interval = worker_agreement(likert.answers, "interval").set_index("worker")["agreement"]
    assert interval[likert.spammers].max() < interval[likert.good].min()
    # A worker who always answers 5 shows no correlation at all.
    assert interval["always5_0"] == 0.0


def test_interval_agreement_ignores_a_constant_bias():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 30)
    rows = [(t, w, truth[t] + (2 if w == "lenient" else 0)) for t in range(30) for w in ["a", "b", "lenient"]]
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    assert worker_agreement(answers, "interval").set_index("worker")["agreement"]["lenient"] == pytest.approx(1.0)


@pytest.mark.parametrize("function", [krippendorff_alpha, fleiss_kappa, worker_agreement])
def test_bad_input_is_an_input_error(function):
    with pytest.raises(InputFileError, match="lacks column"):
        function(pd.DataFrame({"task": [1], "label": [1]}))
    with pytest.raises(InputFileError, match="is empty"):
        function(pd.DataFrame({"task": [], "worker": [], "label": []}))


def test_no_overlap_and_unknown_level_are_explained():
    single = pd.DataFrame({"task": [1, 2], "worker": ["a", "b"], "label": [1, 2]})
    with pytest.raises(InputFileError, match="two or more workers"):
        krippendorff_alpha(single)
    with pytest.raises(InputFileError, match="two or more workers"):
        fleiss_kappa(single)
    with pytest.raises(ConfigError, match="unknown agreement level 'ratio'"):
        krippendorff_alpha(single, "ratio")
    with pytest.raises(InputFileError, match="needs numeric labels"):
        krippendorff_alpha(pd.DataFrame({"task": [1, 1], "worker": ["a", "b"], "label": ["x", "y"]}), "interval")
