"""From aggregated scores to training weights: each scheme, confidence scaling and bad tables."""

import math
import types

import numpy as np
import pandas as pd
import pytest

from mturk_tune.errors import ConfigError, InputFileError
from mturk_tune.weighting import SCHEMES, compute_weights, describe_scheme, summarize_weights


def params(**overrides):
    values = dict(scheme="normalized", temperature=1.0, top_fraction=0.5, confidence_scaling=False, score_range=None)
    values.update(overrides)
    return types.SimpleNamespace(**values)


def scores(labels, confidence=None, tasks=None):
    tasks = tasks or [f"item-{i}" for i in range(len(labels))]
    confidence = confidence if confidence is not None else [1.0] * len(labels)
    return pd.DataFrame({"task": tasks, "label": labels, "confidence": confidence, "n": 3})


def test_normalized_maps_observed_worst_to_zero_and_best_to_one():
    weights = compute_weights(scores([2.0, 4.5, 3.0, 5.0]), params())
    assert weights.index.tolist() == ["item-0", "item-1", "item-2", "item-3"]
    assert weights.tolist() == pytest.approx([0.0, 2.5 / 3, 1 / 3, 1.0])


def test_normalized_with_a_fixed_likert_range():
    weights = compute_weights(scores([2.0, 4.0, 3.0]), params(score_range=(1, 5)))
    assert weights.tolist() == pytest.approx([0.25, 0.75, 0.5])


def test_normalized_gives_equal_weights_when_every_item_scored_the_same():
    assert compute_weights(scores([3.0, 3.0, 3.0]), params()).tolist() == [1.0, 1.0, 1.0]


def test_exponential_divides_by_e_per_temperature_below_the_best():
    labels = [5.0, 4.0, 3.0, 1.0]
    weights = compute_weights(scores(labels), params(scheme="exponential", temperature=2.0))
    assert weights.max() == 1.0
    assert weights.tolist() == pytest.approx([math.exp((s - 5.0) / 2.0) for s in labels])
    hot = compute_weights(scores(labels), params(scheme="exponential", temperature=100.0))
    cold = compute_weights(scores(labels), params(scheme="exponential", temperature=0.1))
    assert hot.min() > 0.95  # high temperature: nearly equal weights
    assert cold.iloc[1:].max() < 1e-4  # low temperature: nearly only the best item


def test_top_fraction_keeps_the_best_items_and_breaks_ties_by_task_id():
    table = scores([3.0, 5.0, 3.0, 1.0, 3.0], tasks=["c", "a", "b", "d", "e"])
    weights = compute_weights(table, params(scheme="top_fraction", top_fraction=0.4))
    # ceil(0.4 * 5) = 2 kept: the 5.0, then of the three 3.0s the smallest task id "b".
    assert weights.to_dict() == {"c": 0.0, "a": 1.0, "b": 1.0, "d": 0.0, "e": 0.0}


def test_confidence_scaling_composes_with_any_scheme():
    table = scores([1.0, 3.0, 5.0], confidence=[0.9, 0.5, 0.2])
    for scheme in SCHEMES:
        plain = compute_weights(table, params(scheme=scheme))
        scaled = compute_weights(table, params(scheme=scheme, confidence_scaling=True))
        assert scaled.tolist() == pytest.approx((plain * np.array([0.9, 0.5, 0.2])).tolist())


@pytest.mark.parametrize(
    "table, config, error, fragment",
    [
        (scores([]), params(), InputFileError, "empty"),
        (pd.DataFrame({"task": ["a"], "score": [1.0]}), params(), InputFileError, "label"),
        (scores([2.0, 4.0], tasks=["a", "a"]), params(), InputFileError, "more than once"),
        (scores([2.0, float("nan")]), params(), InputFileError, "no numeric score"),
        (scores([1.0, 1.0], confidence=[0.5, 0.5]), params(score_range=(1, 5)), InputFileError, "every training weight is zero"),
        (scores([1.0, 4.0], confidence=[0.0, 0.0]), params(confidence_scaling=True), InputFileError, "zero"),
        (scores([1.0, 4.0], confidence=[0.5, 1.5]), params(confidence_scaling=True), InputFileError, "confidence outside"),
        (scores([1.0, 7.0]), params(score_range=(1, 5)), InputFileError, "outside tune.score_range"),
        (scores([1.0, 4.0]), params(scheme="exponential", temperature=0.0), ConfigError, "temperature"),
        (scores([1.0, 4.0]), params(scheme="top_fraction", top_fraction=0.0), ConfigError, "top_fraction"),
        (scores([1.0, 4.0]), params(scheme="softmax"), ConfigError, "scheme"),
    ],
)
def test_bad_tables_and_parameters_raise_one_line_errors(table, config, error, fragment):
    with pytest.raises(error, match=fragment) as raised:
        compute_weights(table, config)
    assert "\n" not in str(raised.value)


def test_scheme_description_and_summary_for_the_run_record():
    config = params(scheme="top_fraction", top_fraction=0.25, confidence_scaling=True)
    assert describe_scheme(config) == {"scheme": "top_fraction", "confidence_scaling": True, "top_fraction": 0.25}
    summary = summarize_weights(pd.Series([1.0, 1.0, 0.0, 0.0]))
    assert summary["trained_items"] == 2 and summary["zero_weight_items"] == 2
    assert summary["effective_items"] == 2.0
    assert summarize_weights(pd.Series([1.0, 0.1]))["effective_items"] < 2
