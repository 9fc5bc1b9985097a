"""Inter-rater agreement over the long ``task, worker, label`` table.

* :func:`krippendorff_alpha`: nominal, ordinal or interval distance; any number of raters per task,
  missing ratings allowed (tasks with fewer than two answers are not pairable and are skipped).
* :func:`fleiss_kappa`: categorical agreement beyond chance.
* :func:`worker_agreement`: each worker against the leave-one-out consensus of the *other* workers.

All three run in O(answers): alpha never builds a values x values coincidence matrix, because every
distance used here reduces to squared differences of (possibly rank-transformed) values.
"""

from __future__ import annotations

import math

from typing import Literal

import numpy as np
import pandas as pd

from mturk_tune.aggregation import _factorize, _numeric_labels, validate_answers
from mturk_tune.errors import ConfigError, InputFileError

Level = Literal["nominal", "ordinal", "interval"]
LEVELS = ("nominal", "ordinal", "interval")


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ConfigError(f"unknown agreement level {level!r}; choose one of: {', '.join(LEVELS)}")


def _pairable(answers: pd.DataFrame, what: str) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """Task codes, labels and per-task answer counts of the answers on tasks with two or more answers."""
    answers = validate_answers(answers)
    task, _ = _factorize(answers["task"])
    per_task = np.bincount(task)
    keep = per_task[task] >= 2
    if not keep.any():
        raise InputFileError(f"{what} needs tasks rated by two or more workers; every task has a single answer")
    _, task = np.unique(task[keep], return_inverse=True)
    return task, answers["label"][keep], np.bincount(task)


def _class_counts(task: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse per-(task, class) counts: (task of each cell, class of each cell, count)."""
    n_classes = int(classes.max()) + 1
    cells, counts = np.unique(task * n_classes + classes, return_counts=True)
    return cells // n_classes, cells % n_classes, counts


def krippendorff_alpha(answers: pd.DataFrame, level: Level = "nominal") -> float:
    """Krippendorff's alpha, ``1 - observed disagreement / expected disagreement``.

    ``level`` picks the distance between two labels: ``nominal`` (0 if equal, else 1; labels can be any
    values), ``ordinal`` (squared distance between mid-ranks of the pairable value frequencies, as in
    Krippendorff 2011), ``interval`` (squared difference). Ordinal and interval need numeric labels.
    Returns NaN when every pairable label is the same (agreement is then undefined).

    Example:
        >>> answers = pd.DataFrame({"task": [1, 1, 2, 2, 3, 3], "worker": ["a", "b"] * 3,
        ...                         "label": [1, 1, 2, 2, 3, 2]})
        >>> round(krippendorff_alpha(answers, "interval"), 3)
        0.706
    """
    _check_level(level)
    task, labels, per_task = _pairable(answers, "Krippendorff's alpha")
    n = float(len(task))
    if level == "nominal":
        codes, _ = _factorize(labels)
        cell_task, cell_class, counts = _class_counts(task, codes)
        # Matching ordered pairs within each task, each task weighted by 1 / (m_u - 1).
        observed_match = float((counts * (counts - 1) / (per_task[cell_task] - 1)).sum())
        totals = np.bincount(codes).astype(float)
        expected_match = float((totals * (totals - 1)).sum())
        observed = 1.0 - observed_match / n
        expected = 1.0 - expected_match / (n * (n - 1))
    else:
        values = _numeric_labels(labels, f"krippendorff_alpha(level={level!r})")
        if level == "ordinal":
            # delta(c, k) = (sum of frequencies from c to k - (n_c + n_k) / 2)^2 equals the squared difference
            # of mid-ranks r_c = (frequencies below c) + n_c / 2, so ordinal alpha is interval alpha on r.
            distinct, codes = np.unique(values, return_inverse=True)
            frequency = np.bincount(codes).astype(float)
            mid_rank = np.cumsum(frequency) - frequency / 2.0
            values = mid_rank[codes]
        values = values - values.mean()  # shift for numerical stability of the sums of squares
        sums = np.bincount(task, weights=values)
        squares = np.bincount(task, weights=values ** 2)
        # Sum over ordered pairs i != j within a task of (v_i - v_j)^2 = 2 m sum(v^2) - 2 (sum v)^2.
        within = 2.0 * per_task * squares - 2.0 * sums ** 2
        observed = float((within / (per_task - 1)).sum()) / n
        expected = (2.0 * n * float((values ** 2).sum()) - 2.0 * float(values.sum()) ** 2) / (n * (n - 1))
    if expected <= 0:
        return float("nan")
    return 1.0 - observed / expected


def alpha_or_none(answers: pd.DataFrame, level: Level = "ordinal") -> float | None:
    """Krippendorff's alpha for reports and records: None where the table cannot give a number
    (fewer than two workers, no pairable ratings), so a degenerate round never stops the work."""
    if answers.empty or answers["worker"].nunique() < 2:
        return None
    try:
        value = float(krippendorff_alpha(answers[["task", "worker", "label"]], level=level))
    except Exception:  # informative only: any failure gives no number rather than no report
        return None
    return None if math.isnan(value) else value


def fleiss_kappa(answers: pd.DataFrame) -> float:
    """Fleiss' kappa for categorical labels: ``(P_bar - P_e) / (1 - P_e)``.

    Tasks may have different numbers of raters: each task's agreement ``P_i`` uses its own count
    ``n_i`` (``(sum_j n_ij^2 - n_i) / (n_i (n_i - 1))``) and the class shares pool all answers, which
    reduces to Fleiss (1971) when every task has the same count. Tasks with one answer are skipped.
    Returns NaN when every answer is the same class (chance agreement is then 1).

    Example:
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c"] * 2,
        ...                         "label": ["x", "x", "x", "y", "y", "x"]})
        >>> round(fleiss_kappa(answers), 3)
        0.25
    """
    task, labels, per_task = _pairable(answers, "Fleiss' kappa")
    codes, _ = _factorize(labels)
    cell_task, _, counts = _class_counts(task, codes)
    squares = np.bincount(cell_task, weights=counts.astype(float) ** 2, minlength=len(per_task))
    per_task_agreement = (squares - per_task) / (per_task * (per_task - 1.0))
    shares = np.bincount(codes) / float(len(codes))
    chance = float((shares ** 2).sum())
    if chance >= 1.0:
        return float("nan")
    return (float(per_task_agreement.mean()) - chance) / (1.0 - chance)


def worker_agreement(answers: pd.DataFrame, level: Level = "nominal") -> pd.DataFrame:
    """Each worker's agreement with the consensus of the *other* workers on the same tasks.

    ``nominal``: the mean, over the worker's answers, of the share of other workers' answers on that task
    that equal it (1 = always agrees, chance level = the label distribution's concentration).
    ``ordinal`` / ``interval``: the Pearson correlation between the worker's answers and the mean of the
    other workers' answers on the same tasks (robust to a worker's constant leniency; 0 for a worker who
    gives the same answer everywhere; NaN with fewer than two comparable answers).

    Returns one row per worker, sorted by worker: ``worker, agreement, n`` where ``n`` counts the answers
    on tasks that another worker also answered.

    Example:
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c"] * 2,
        ...                         "label": ["x", "x", "y", "y", "y", "x"]})
        >>> worker_agreement(answers).round(2).to_dict("list")
        {'worker': ['a', 'b', 'c'], 'agreement': [0.5, 0.5, 0.0], 'n': [2, 2, 2]}
    """
    _check_level(level)
    answers = validate_answers(answers)
    task, _ = _factorize(answers["task"])
    worker, workers = _factorize(answers["worker"])
    n_workers = len(workers)
    per_task = np.bincount(task)[task]
    compared = per_task >= 2
    count = np.bincount(worker, weights=compared, minlength=n_workers)
    others = np.where(compared, per_task - 1, 1)
    if level == "nominal":
        codes, classes = _factorize(answers["label"])
        k = len(classes)
        same = np.bincount(task * k + codes)[task * k + codes] - 1  # other answers equal to this one
        share = np.where(compared, same / others, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            agreement = np.bincount(worker, weights=share, minlength=n_workers) / count
    else:
        values = _numeric_labels(answers["label"], f"worker_agreement(level={level!r})")
        if level == "ordinal":
            _, ranks = np.unique(values, return_inverse=True)
            values = ranks.astype(float)
        totals = np.bincount(task, weights=values)[task]
        consensus = np.where(compared, (totals - values) / others, 0.0)
        agreement = _correlation_by_group(worker, values, consensus, compared, n_workers)
    return pd.DataFrame({"worker": workers, "agreement": agreement, "n": count.astype(np.int64)})


def _correlation_by_group(group: np.ndarray, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                          n_groups: int) -> np.ndarray:
    """Pearson correlation of x and y within each group over masked rows (0 when x is constant)."""
    weight = mask.astype(float)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values * weight, minlength=n_groups)

    n = total(np.ones_like(x))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x, mean_y = total(x) / n, total(y) / n
        dx, dy = x - mean_x[group], y - mean_y[group]
        var_x, var_y, cov = total(dx * dx), total(dy * dy), total(dx * dy)
        correlation = cov / np.sqrt(var_x * var_y)
    scale = np.maximum(np.abs(mean_x), 1.0)
    constant_x = var_x <= 1e-12 * scale ** 2 * np.maximum(n, 1)
    correlation = np.where(constant_x & (n >= 2), 0.0, correlation)
    return np.where(n >= 2, correlation, np.nan)
