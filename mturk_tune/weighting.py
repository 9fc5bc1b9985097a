"""Per-item training weights from aggregated crowd scores.

Every scheme maps an item's aggregated score to a weight in [0, 1] where the best item weighs 1, so that
`beta` alone sets the strength of the feedback term:

- ``normalized``: ``(score - low) / (high - low)``, a straight line from the worst to the best score. The
  bounds are `score_range` when given (e.g. ``(1, 5)`` for a Likert scale), else the lowest and highest
  observed scores; an item at the bottom weighs 0 and is not trained on.
- ``exponential``: ``exp((score - best) / temperature)``, reward-weighted regression (Peters & Schaal 2007).
  The temperature is in score units: at 1.0 on a 1-5 scale, each point below the best item divides the
  weight by e. Low temperatures approach keeping only the best item; high ones approach equal weights.
- ``top_fraction``: weight 1 for the best ``ceil(top_fraction * n)`` items and 0 for the rest, the filter of
  reward-ranked fine-tuning (RAFT) and filtered behaviour cloning. Ties at the cut are broken by task id so
  that the same table always keeps the same items.

``confidence_scaling`` multiplies any scheme's weight by the item's aggregation confidence (0..1), so that
items the crowd disagreed on count less. It is a flag rather than a fourth scheme so it composes with all three.

Note on optimizers: under SGD, doubling every weight doubles the update; under Adam(W) a uniform scale of all
weights is almost a no-op (Adam normalizes the gradient's scale), so only the *relative* weights, and their
size next to `alpha`, matter.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import pandas as pd

from mturk_tune.errors import ConfigError, InputFileError

SCHEMES = ("normalized", "exponential", "top_fraction")
SCORE_COLUMNS = ("task", "label", "confidence", "n")


class WeightingParams(Protocol):
    """The fields of TuneConfig that weighting reads (any object with these attributes will do)."""

    scheme: str
    temperature: float
    top_fraction: float
    confidence_scaling: bool
    score_range: tuple[float, float] | None


def compute_weights(scores: pd.DataFrame, config: WeightingParams) -> pd.Series:
    """Turn an aggregated score table into one training weight per task.

    `scores` has columns ``task, label, confidence, n`` (``label`` is the aggregated score, e.g. a Likert mean).
    Returns a float Series named ``weight`` indexed by task, in the table's order.

    >>> import types
    >>> table = pd.DataFrame({"task": ["a", "b", "c"], "label": [1.0, 3.0, 5.0],
    ...                       "confidence": [1.0, 1.0, 0.5], "n": [3, 3, 3]})
    >>> cfg = types.SimpleNamespace(scheme="normalized", temperature=1.0, top_fraction=0.5,
    ...                             confidence_scaling=False, score_range=None)
    >>> compute_weights(table, cfg).tolist()
    [0.0, 0.5, 1.0]
    """
    table = _checked_table(scores, needs_confidence=config.confidence_scaling)
    label = table["label"].to_numpy(dtype=float)
    if config.scheme == "normalized":
        weight = _normalized(label, config.score_range)
    elif config.scheme == "exponential":
        if not config.temperature > 0:
            raise ConfigError(f"tune.temperature must be > 0 for the exponential scheme, got {config.temperature}")
        weight = np.exp((label - label.max()) / config.temperature)
    elif config.scheme == "top_fraction":
        weight = _top_fraction(label, table["task"].astype(str).to_numpy(), config.top_fraction)
    else:
        raise ConfigError(f"tune.scheme must be one of {', '.join(SCHEMES)}, got {config.scheme!r}")
    if config.confidence_scaling:
        weight = weight * table["confidence"].to_numpy(dtype=float)
    if not np.any(weight > 0):
        raise InputFileError(
            f"every training weight is zero under scheme {config.scheme!r}"
            f"{' with confidence scaling' if config.confidence_scaling else ''}: "
            "all items share the lowest score or have zero confidence; collect more varied ratings or change the scheme"
        )
    return pd.Series(weight, index=pd.Index(table["task"], name="task"), name="weight")


def describe_scheme(config: WeightingParams) -> dict:
    """The scheme and the parameters it used, as recorded in the run record and the model card."""
    params: dict = {"scheme": config.scheme, "confidence_scaling": bool(config.confidence_scaling)}
    if config.scheme == "exponential":
        params["temperature"] = config.temperature
    if config.scheme == "top_fraction":
        params["top_fraction"] = config.top_fraction
    if config.scheme == "normalized":
        params["score_range"] = list(config.score_range) if config.score_range else "observed"
    return params


def summarize_weights(weights: pd.Series) -> dict:
    """Numbers that tell at a glance how much of the data a run really learns from."""
    values = weights.to_numpy(dtype=float)
    positive = values[values > 0]
    # Kish's effective sample size: how many equally weighted items the weighted set is worth.
    effective = float(positive.sum() ** 2 / (positive**2).sum()) if positive.size else 0.0
    return {
        "items": int(values.size),
        "trained_items": int(positive.size),
        "zero_weight_items": int(values.size - positive.size),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "effective_items": round(effective, 2),
    }


def _checked_table(scores: pd.DataFrame, needs_confidence: bool) -> pd.DataFrame:
    missing = [c for c in ("task", "label") if c not in scores.columns]
    if missing:
        raise InputFileError(f"score table lacks column(s) {', '.join(missing)}; expected columns {', '.join(SCORE_COLUMNS)}")
    if scores.empty:
        raise InputFileError("score table is empty: aggregate some ratings before tuning (no items to weight)")
    if scores["task"].duplicated().any():
        task = scores.loc[scores["task"].duplicated(), "task"].iloc[0]
        raise InputFileError(f"score table has task {task!r} more than once; aggregate to one row per task")
    label = pd.to_numeric(scores["label"], errors="coerce")
    if label.isna().any():
        task = scores.loc[label.isna(), "task"].iloc[0]
        raise InputFileError(f"score table: task {task!r} has no numeric score (label); drop it or re-aggregate")
    table = scores.assign(label=label.astype(float))
    if needs_confidence:
        if "confidence" not in scores.columns:
            raise InputFileError("confidence scaling needs a 'confidence' column in the score table")
        confidence = pd.to_numeric(scores["confidence"], errors="coerce")
        bad = confidence.isna() | (confidence < 0) | (confidence > 1)
        if bad.any():
            task = scores.loc[bad, "task"].iloc[0]
            raise InputFileError(f"score table: task {task!r} has confidence outside 0..1; re-aggregate or turn confidence scaling off")
        table = table.assign(confidence=confidence.astype(float))
    return table.reset_index(drop=True)


def _normalized(label: np.ndarray, score_range: tuple[float, float] | None) -> np.ndarray:
    if score_range is not None:
        low, high = (float(v) for v in score_range)
        if not high > low:
            raise ConfigError(f"tune.score_range must be [low, high] with low < high, got {list(score_range)}")
        if label.min() < low or label.max() > high:
            raise InputFileError(
                f"scores run from {label.min():g} to {label.max():g}, outside tune.score_range [{low:g}, {high:g}]; fix the range"
            )
    else:
        low, high = float(label.min()), float(label.max())
        if high == low:
            # Every item scored the same: nothing ranks one above another, so all count fully.
            return np.ones_like(label)
    return (label - low) / (high - low)


def _top_fraction(label: np.ndarray, task: np.ndarray, fraction: float) -> np.ndarray:
    if not 0 < fraction <= 1:
        raise ConfigError(f"tune.top_fraction must be in (0, 1], got {fraction}")
    keep = math.ceil(fraction * label.size)
    # Best score first; equal scores ordered by task id for a reproducible cut.
    order = np.lexsort((task, -label))
    weight = np.zeros_like(label)
    weight[order[:keep]] = 1.0
    return weight
