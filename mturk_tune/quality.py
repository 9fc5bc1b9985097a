"""Quality control: signals per assignment and per worker, and a policy that turns them into decisions.

Everything here is a pure function of DataFrames (no MTurk calls, no clock, no randomness), so the
``review`` command can show a plan before it approves, rejects, pays or blocks anything.

Input tables:

* ``ratings``: ``assignment_id, hit_id, task, worker, label``: one row per rated item (``task`` is the
  item id);
* ``assignments``: ``assignment_id, hit_id, worker, accept_time, submit_time`` (pandas timestamps);
* ``gold``: ``task, true_label``: control items with known answers (optional).

Typical flow::

    decisions = decide(ratings, assignments, gold, QualityPolicy.from_dict(config["quality"]))
    clean = filter_answers(ratings, decisions)          # only approved assignments
    result = aggregate(clean, "ordinal_ds")
    extra = extension_candidates(result.items, threshold=0.6, max_extra_assignments=50)
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from mturk_tune.agreement import worker_agreement
from mturk_tune.aggregation import validate_answers
from mturk_tune.errors import ConfigError, InputFileError

RATING_COLUMNS = ("assignment_id", "hit_id", "task", "worker", "label")
ASSIGNMENT_COLUMNS = ("assignment_id", "hit_id", "worker", "accept_time", "submit_time")
GOLD_COLUMNS = ("task", "true_label")
DECISION_COLUMNS = ["assignment_id", "hit_id", "worker", "action", "reason", "feedback", "bonus", "block"]

_DOLLARS = re.compile(r"^[0-9]+(\.)?[0-9]{0,2}$")  # MTurk's BonusAmount pattern
_FEEDBACK_LIMIT = 1024  # MTurk's RequesterFeedback maximum length


@dataclass(frozen=True)
class QualityPolicy:
    """Thresholds that turn quality signals into approve / reject / bonus / block decisions.

    Any check can be switched off by setting its threshold to None. Build from a config table with
    :meth:`from_dict`, which names the offending key on error.
    """

    min_gold_answers: int = 3
    """Gold items a worker must have answered before gold accuracy is used to judge them."""
    min_gold_accuracy: float | None = 0.6
    """Reject every assignment of a worker whose gold accuracy is below this."""
    gold_tolerance: float = 0.0
    """A numeric answer counts as correct on a gold item when within this distance of the true label
    (e.g. 1 to accept a 4 for a gold 5 on a Likert scale). Non-numeric labels must match exactly."""
    hard_block_below_gold_accuracy: float | None = 0.3
    """Hard-block (MTurk CreateWorkerBlock) workers whose gold accuracy is below this: near or below
    chance, i.e. spam or adversarial."""
    min_seconds_per_item: float | None = 2.0
    """Reject assignments completed faster than this many seconds per rated item."""
    max_straightline_share: float | None = 0.8
    """Reject the straight-lined assignments (the same answer on every item) of workers who straight-line
    more than this share of their assignments. A single all-same assignment can be honest."""
    min_straightline_items: int = 3
    """Assignments with fewer items than this never count as straight-lined."""
    min_agreement: float | None = None
    """Reject every assignment of a worker whose leave-one-out agreement is below this (share of matching
    answers for categorical labels, correlation for numeric ones). Off by default: agreement is noisy."""
    min_agreement_answers: int = 10
    """Answers on shared tasks a worker needs before ``min_agreement`` applies."""
    reject_duplicates: bool = True
    """Reject a worker's second and later submissions for the same HIT."""
    soft_block_on_reject: bool = True
    """Give workers with an assignment rejected for its quality (not merely as a duplicate) the soft-block
    qualification."""
    soft_block_qualification_name: str = "mturk-tune-soft-block"
    """Name of the qualification used as a soft block (HITs then require it to be absent)."""
    bonus_min_gold_accuracy: float | None = 0.95
    """Approved assignments of workers at or above this gold accuracy earn ``bonus_amount``."""
    bonus_amount: str = "0.00"
    """Bonus per qualifying assignment in dollars, e.g. "0.05"; "0.00" pays none (the default, so that no
    money moves unless asked)."""
    reject_feedback: str = (
        "Sorry, this submission did not pass our quality checks: {reason}. "
        "Please read the instructions carefully and take your time on each item."
    )
    """Message sent to the worker with a rejection; ``{reason}`` is replaced by the reasons found."""
    approve_feedback: str = ""
    """Optional message sent with an approval."""

    def __post_init__(self) -> None:
        for name in ("min_gold_accuracy", "hard_block_below_gold_accuracy", "max_straightline_share",
                     "bonus_min_gold_accuracy"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ConfigError(
                    f"quality policy key {name!r} must be a number between 0 and 1 or unset, got {value!r}")
        for name in ("gold_tolerance", "min_seconds_per_item"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value >= 0):
                raise ConfigError(f"quality policy key {name!r} must be a number >= 0, got {value!r}")
        if self.gold_tolerance is None:
            raise ConfigError("quality policy key 'gold_tolerance' must be a number >= 0, got None")
        agreement = self.min_agreement
        if agreement is not None and not (_is_number(agreement) and -1.0 <= agreement <= 1.0):
            raise ConfigError(
                f"quality policy key 'min_agreement' must be between -1 and 1 or unset, got {agreement!r}")
        for name in ("min_gold_answers", "min_straightline_items", "min_agreement_answers"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"quality policy key {name!r} must be a whole number >= 1, got {value!r}")
        for name in ("reject_duplicates", "soft_block_on_reject"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"quality policy key {name!r} must be true or false, got {getattr(self, name)!r}")
        if not (isinstance(self.bonus_amount, str) and _DOLLARS.match(self.bonus_amount)):
            raise ConfigError(
                f"quality policy key 'bonus_amount' must be a dollar string like \"0.05\", got {self.bonus_amount!r}"
            )
        if not (isinstance(self.soft_block_qualification_name, str) and self.soft_block_qualification_name.strip()):
            raise ConfigError("quality policy key 'soft_block_qualification_name' must be a non-empty string")
        for name in ("reject_feedback", "approve_feedback"):
            template = getattr(self, name)
            if not isinstance(template, str):
                raise ConfigError(f"quality policy key {name!r} must be a string, got {template!r}")
            try:
                template.format(reason="x")
            except (KeyError, IndexError, ValueError) as error:
                raise ConfigError(
                    f"quality policy key {name!r} may only use the placeholder {{reason}} (problem: {error}); "
                    "write literal braces as {{ and }}"
                ) from None

    @property
    def pays_bonus(self) -> bool:
        return self.bonus_min_gold_accuracy is not None and float(self.bonus_amount) > 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "QualityPolicy":
        """Build from a mapping (e.g. a ``[quality]`` TOML table); unknown keys raise ConfigError.

        TOML has no null, so a check that can be switched off also accepts ``false`` or ``"off"``.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"quality policy must be a table of keys, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown quality policy key {key!r}; known keys: {', '.join(known)}")
        switchable = {f.name for f in dataclasses.fields(cls) if f.default is None or "None" in str(f.type)}
        cleaned = {key: None if key in switchable and (value is False or value == "off") else value
                   for key, value in values.items()}
        return cls(**cleaned)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


# --------------------------------------------------------------------------------------------------
# Signals


def _require(table: Any, columns: Iterable[str], what: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise InputFileError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputFileError(f"{what} table lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return table


def _gold_correct(labels: pd.Series, truth: pd.Series, tolerance: float) -> np.ndarray:
    """Per rating: does the label match the gold answer (numerically within tolerance when both are numbers)?"""
    label_numbers = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
    truth_numbers = pd.to_numeric(truth, errors="coerce").to_numpy(dtype=float)
    numeric = ~np.isnan(label_numbers) & ~np.isnan(truth_numbers)
    close = np.abs(label_numbers - truth_numbers) <= tolerance + 1e-9
    same_text = labels.astype(str).to_numpy() == truth.astype(str).to_numpy()
    return np.where(numeric, close, same_text)


def assignment_signals(ratings: pd.DataFrame, assignments: pd.DataFrame, gold: pd.DataFrame | None = None,
                       *, gold_tolerance: float = 0.0, min_straightline_items: int = 3) -> pd.DataFrame:
    """One row per assignment, sorted by assignment_id.

    Columns: ``assignment_id, hit_id, worker, n_items, seconds, seconds_per_item, straightlined,
    gold_n, gold_correct, duplicate_of`` (the assignment_id of the same worker's first submission for
    the same HIT, or "" for a first submission).
    """
    _require(ratings, RATING_COLUMNS, "ratings")
    _require(assignments, ASSIGNMENT_COLUMNS, "assignments")
    if len(ratings):
        validate_answers(ratings, columns=RATING_COLUMNS, what="ratings")
    if assignments["assignment_id"].duplicated().any():
        duplicate = assignments["assignment_id"][assignments["assignment_id"].duplicated()].iloc[0]
        raise InputFileError(f"assignments table lists assignment_id {duplicate!r} more than once")
    unknown = ~ratings["assignment_id"].isin(assignments["assignment_id"])
    if unknown.any():
        raise InputFileError(
            f"ratings refer to assignment_id {ratings['assignment_id'][unknown].iloc[0]!r}, which is not in the "
            "assignments table; pass the assignments the ratings came from"
        )
    table = assignments[list(ASSIGNMENT_COLUMNS)].copy()
    by_assignment = ratings.groupby("assignment_id", sort=False)["label"]
    n_items = by_assignment.size()
    distinct = by_assignment.nunique()
    table["n_items"] = table["assignment_id"].map(n_items).fillna(0).astype(np.int64)
    seconds = (pd.to_datetime(table["submit_time"]) - pd.to_datetime(table["accept_time"])).dt.total_seconds()
    table["seconds"] = seconds
    table["seconds_per_item"] = seconds / table["n_items"].where(table["n_items"] > 0)
    table["straightlined"] = (table["n_items"] >= min_straightline_items) & (
        table["assignment_id"].map(distinct).fillna(0) == 1)

    table["gold_n"] = 0
    table["gold_correct"] = 0
    if gold is not None and len(gold):
        _require(gold, GOLD_COLUMNS, "gold")
        truth = gold.drop_duplicates("task", keep="last").set_index("task")["true_label"]
        on_gold = ratings[ratings["task"].isin(truth.index)]
        correct = _gold_correct(on_gold["label"], on_gold["task"].map(truth), gold_tolerance)
        per_assignment = pd.DataFrame({"assignment_id": on_gold["assignment_id"].to_numpy(), "correct": correct})
        grouped = per_assignment.groupby("assignment_id")["correct"]
        table["gold_n"] = table["assignment_id"].map(grouped.size()).fillna(0).astype(np.int64)
        table["gold_correct"] = table["assignment_id"].map(grouped.sum()).fillna(0).astype(np.int64)

    # The first submission (by submit time, then id) of a worker for a HIT is the original.
    ordered = table.sort_values(["submit_time", "assignment_id"], kind="stable")
    first = ordered.groupby(["worker", "hit_id"], sort=False)["assignment_id"].transform("first")
    table["duplicate_of"] = np.where(first.reindex(table.index) != table["assignment_id"],
                                     first.reindex(table.index), "")
    return table.drop(columns=["accept_time", "submit_time"]).sort_values("assignment_id").reset_index(drop=True)


def _agreement_level(labels: pd.Series) -> str:
    numeric = pd.to_numeric(labels, errors="coerce")
    return "interval" if len(labels) and numeric.notna().all() and not pd.api.types.is_bool_dtype(labels) else "nominal"


def worker_signals(ratings: pd.DataFrame, assignments: pd.DataFrame, gold: pd.DataFrame | None = None,
                   *, gold_tolerance: float = 0.0, min_straightline_items: int = 3,
                   agreement_level: str | None = None) -> pd.DataFrame:
    """One row per worker (sorted by worker) with the signals a policy judges.

    Columns: ``worker, n_assignments, n_ratings, gold_n, gold_correct, gold_accuracy`` (NaN without
    gold answers), ``median_seconds_per_item``, ``straightline_n`` (assignments long enough to judge),
    ``straightline_share`` (share of those with the same answer on every item), ``agreement`` and
    ``agreement_n`` (leave-one-out, see :func:`mturk_tune.agreement.worker_agreement`; the level is
    interval for numeric labels, nominal otherwise, unless ``agreement_level`` says), and
    ``duplicate_submissions`` (extra submissions for a HIT the worker had already submitted).

    Example:
        >>> t = pd.Timestamp("2026-01-01")
        >>> assignments = pd.DataFrame({"assignment_id": ["A1"], "hit_id": ["H1"], "worker": ["W1"],
        ...                             "accept_time": [t], "submit_time": [t + pd.Timedelta(seconds=30)]})
        >>> ratings = pd.DataFrame({"assignment_id": ["A1"] * 3, "hit_id": ["H1"] * 3,
        ...                         "task": ["i1", "i2", "i3"], "worker": ["W1"] * 3, "label": [4, 4, 4]})
        >>> row = worker_signals(ratings, assignments).iloc[0]
        >>> float(row.median_seconds_per_item), float(row.straightline_share)
        (10.0, 1.0)
    """
    per_assignment = assignment_signals(ratings, assignments, gold, gold_tolerance=gold_tolerance,
                                        min_straightline_items=min_straightline_items)
    judged = per_assignment["n_items"] >= min_straightline_items
    per_assignment = per_assignment.assign(
        judged=judged, straight=per_assignment["straightlined"] & judged,
        duplicate=per_assignment["duplicate_of"] != "")
    grouped = per_assignment.groupby("worker", sort=True)
    signals = pd.DataFrame({
        "n_assignments": grouped.size(),
        "n_ratings": grouped["n_items"].sum(),
        "gold_n": grouped["gold_n"].sum(),
        "gold_correct": grouped["gold_correct"].sum(),
        "median_seconds_per_item": grouped["seconds_per_item"].median(),
        "straightline_n": grouped["judged"].sum(),
        "straightline_count": grouped["straight"].sum(),
        "duplicate_submissions": grouped["duplicate"].sum(),
    })
    signals["gold_accuracy"] = signals["gold_correct"] / signals["gold_n"].where(signals["gold_n"] > 0)
    signals["straightline_share"] = signals["straightline_count"] / signals["straightline_n"].where(
        signals["straightline_n"] > 0)
    signals = signals.drop(columns="straightline_count")
    signals.index.name = "worker"
    signals = signals.reset_index()
    signals["agreement"] = np.nan
    signals["agreement_n"] = 0
    if len(ratings) and ratings["task"].duplicated().any():
        level = agreement_level or _agreement_level(ratings["label"])
        agreement = worker_agreement(ratings[["task", "worker", "label"]], level=level).set_index("worker")
        signals["agreement"] = signals["worker"].map(agreement["agreement"])
        signals["agreement_n"] = signals["worker"].map(agreement["n"]).fillna(0).astype(np.int64)
    columns = ["worker", "n_assignments", "n_ratings", "gold_n", "gold_correct", "gold_accuracy",
               "median_seconds_per_item", "straightline_n", "straightline_share", "agreement", "agreement_n",
               "duplicate_submissions"]
    for column in ("n_assignments", "n_ratings", "gold_n", "gold_correct", "straightline_n", "duplicate_submissions"):
        signals[column] = signals[column].astype(np.int64)
    return signals[columns]


# --------------------------------------------------------------------------------------------------
# Decisions


def decide(ratings: pd.DataFrame, assignments: pd.DataFrame, gold: pd.DataFrame | None,
           policy: QualityPolicy | None = None) -> pd.DataFrame:
    """Decide each assignment: one row per assignment, sorted by assignment_id.

    Columns: ``assignment_id, hit_id, worker, action`` ("approve" or "reject"), ``reason`` (readable,
    e.g. "gold accuracy 0.20 < 0.60 on 5 gold items"), ``feedback`` (text for the worker), ``bonus``
    (dollar string or ""), ``block`` ("", "soft" or "hard"; the same on every row of a worker, so apply
    it once per worker). Pure: the same tables and policy always give the same decisions.
    """
    policy = policy or QualityPolicy()
    per_assignment = assignment_signals(ratings, assignments, gold, gold_tolerance=policy.gold_tolerance,
                                        min_straightline_items=policy.min_straightline_items)
    workers = worker_signals(ratings, assignments, gold, gold_tolerance=policy.gold_tolerance,
                             min_straightline_items=policy.min_straightline_items).set_index("worker")
    rows = per_assignment.merge(workers, left_on="worker", right_index=True, how="left",
                                suffixes=("", "_worker")).reset_index(drop=True)

    reasons: list[list[str]] = [[] for _ in range(len(rows))]

    def flag(mask: np.ndarray, messages: Iterable[str]) -> None:
        for position, message in zip(np.flatnonzero(mask), messages):
            reasons[position].append(message)

    duplicate = (rows["duplicate_of"] != "").to_numpy() & policy.reject_duplicates
    if duplicate.any():
        flag(duplicate, (f"duplicate submission for HIT {hit} (already submitted as {first})"
                         for hit, first in zip(rows["hit_id"][duplicate], rows["duplicate_of"][duplicate])))
    empty = (rows["n_items"] == 0).to_numpy()
    flag(empty, ("no ratings could be read from this submission" for _ in range(int(empty.sum()))))

    judged_gold = (rows["gold_n_worker"] >= policy.min_gold_answers).to_numpy()
    gold_accuracy = rows["gold_accuracy"].to_numpy(dtype=float)
    if policy.min_gold_accuracy is not None:
        low = judged_gold & (gold_accuracy < policy.min_gold_accuracy)
        flag(low, (f"gold accuracy {a:.2f} < {policy.min_gold_accuracy:.2f} on {int(n)} gold items"
                   for a, n in zip(gold_accuracy[low], rows["gold_n_worker"][low])))
    if policy.min_seconds_per_item is not None:
        speed = rows["seconds_per_item"].to_numpy(dtype=float)
        fast = ~np.isnan(speed) & (speed < policy.min_seconds_per_item)
        flag(fast, (f"{s:.1f} s per item < {policy.min_seconds_per_item:.1f} s minimum" for s in speed[fast]))
    if policy.max_straightline_share is not None:
        share = rows["straightline_share"].to_numpy(dtype=float)
        habitual = ~np.isnan(share) & (share > policy.max_straightline_share)
        straight = habitual & rows["straightlined"].to_numpy(dtype=bool)
        flag(straight, (
            f"same answer on all {int(n)} items (straight-lined {int(round(s * k))} of {int(k)} assignments)"
            for n, s, k in zip(rows["n_items"][straight], share[straight], rows["straightline_n"][straight])))
    if policy.min_agreement is not None:
        agreement = rows["agreement"].to_numpy(dtype=float)
        enough = (rows["agreement_n"] >= policy.min_agreement_answers).to_numpy()
        disagree = enough & ~np.isnan(agreement) & (agreement < policy.min_agreement)
        flag(disagree, (f"agreement {a:.2f} < {policy.min_agreement:.2f} with other workers over {int(n)} answers"
                        for a, n in zip(agreement[disagree], rows["agreement_n"][disagree])))

    rejected = np.array([bool(r) for r in reasons], dtype=bool)
    # A duplicate alone says nothing about the work's quality (it can be a marketplace glitch): no block.
    for_quality = np.array([len(r) > int(d) for r, d in zip(reasons, duplicate)], dtype=bool)
    worker_rejected = pd.Series(for_quality).groupby(rows["worker"].to_numpy()).transform("any").to_numpy()
    block = np.where(policy.soft_block_on_reject & worker_rejected, "soft", "")
    if policy.hard_block_below_gold_accuracy is not None:
        block = np.where(judged_gold & (gold_accuracy < policy.hard_block_below_gold_accuracy), "hard", block)

    bonus = np.full(len(rows), "", dtype=object)
    if policy.pays_bonus:
        earns = ~rejected & judged_gold & (gold_accuracy >= policy.bonus_min_gold_accuracy)
        bonus[earns] = policy.bonus_amount

    reason_text, feedback = [], []
    for position, found in enumerate(reasons):
        if found:
            text = "; ".join(found)
            reason_text.append(text)
            feedback.append(policy.reject_feedback.format(reason=text)[:_FEEDBACK_LIMIT])
        else:
            reason_text.append(_approval_note(rows.iloc[position], policy))
            feedback.append(policy.approve_feedback.format(reason="passed all checks")[:_FEEDBACK_LIMIT])
    return pd.DataFrame({
        "assignment_id": rows["assignment_id"].to_numpy(),
        "hit_id": rows["hit_id"].to_numpy(),
        "worker": rows["worker"].to_numpy(),
        "action": np.where(rejected, "reject", "approve"),
        "reason": reason_text,
        "feedback": feedback,
        "bonus": bonus,
        "block": block,
    })[DECISION_COLUMNS]


def _approval_note(row: pd.Series, policy: QualityPolicy) -> str:
    parts = ["passed all checks"]
    if row["gold_n_worker"] > 0:
        parts.append(f"gold accuracy {row['gold_accuracy']:.2f} on {int(row['gold_n_worker'])} gold items")
    if not math.isnan(row["seconds_per_item"]):
        parts.append(f"{row['seconds_per_item']:.1f} s per item")
    return "; ".join(parts)


def filter_answers(ratings: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """Keep only the ratings of approved assignments (compose before any aggregator)."""
    _require(ratings, ("assignment_id",), "ratings")
    _require(decisions, ("assignment_id", "action"), "decisions")
    approved = decisions.loc[decisions["action"] == "approve", "assignment_id"]
    return ratings[ratings["assignment_id"].isin(approved)].reset_index(drop=True)


def extension_candidates(items: pd.DataFrame, threshold: float, max_extra_assignments: int,
                         per_item: int = 1, max_answers: int | None = None) -> list[Any]:
    """Tasks worth more answers: confidence below ``threshold``, least confident first (then fewest
    answers, then task order), as many as ``max_extra_assignments // per_item`` allows.

    ``max_answers`` skips tasks that would end up with more answers than that. Mind MTurk's rule when
    mapping tasks to HITs: a HIT created with fewer than 10 assignments cannot be extended to 10 or more.

    Example:
        >>> items = pd.DataFrame({"task": ["a", "b", "c"], "confidence": [0.9, 0.4, 0.55], "n": [3, 3, 3]})
        >>> extension_candidates(items, threshold=0.6, max_extra_assignments=4, per_item=2)
        ['b', 'c']
    """
    _require(items, ("task", "confidence", "n"), "items")
    if not (_is_number(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold!r}")
    if not (isinstance(per_item, (int, np.integer)) and per_item >= 1):
        raise ConfigError(f"per_item must be a whole number >= 1, got {per_item!r}")
    if not (isinstance(max_extra_assignments, (int, np.integer)) and max_extra_assignments >= 0):
        raise ConfigError(f"max_extra_assignments must be a whole number >= 0, got {max_extra_assignments!r}")
    candidates = items[items["confidence"].to_numpy(dtype=float) < threshold]
    if max_answers is not None:
        candidates = candidates[candidates["n"].to_numpy() + per_item <= max_answers]
    candidates = candidates.assign(_order=np.arange(len(candidates))).sort_values(
        ["confidence", "n", "_order"], kind="stable")
    budget = int(max_extra_assignments) // int(per_item)
    return candidates["task"].iloc[:budget].tolist()
