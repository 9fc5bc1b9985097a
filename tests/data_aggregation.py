"""Synthetic crowds with known truth and planted bad workers, shared by the aggregation, agreement and
quality tests. Every generator is seeded, so a test that uses one always sees the same data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Crowd:
    answers: pd.DataFrame  # task, worker, label
    truth: pd.Series  # indexed by task
    spammers: list[str]
    good: list[str]


def categorical_crowd(seed: int = 0, n_tasks: int = 300, n_good: int = 6, n_spammers: int = 6,
                      n_classes: int = 3, per_task: int = 7, good_accuracy: float = 0.8) -> Crowd:
    """Good workers answer right with ``good_accuracy`` (else a random wrong class); spammers answer
    uniformly at random. With as many spammers as good workers, a plain majority vote is often wrong."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_tasks)
    workers = [f"good{i}" for i in range(n_good)] + [f"spam{i}" for i in range(n_spammers)]
    rows = []
    for task in range(n_tasks):
        for w in rng.choice(len(workers), size=per_task, replace=False):
            if w < n_good:
                if rng.random() < good_accuracy:
                    label = truth[task]
                else:
                    label = (truth[task] + rng.integers(1, n_classes)) % n_classes
            else:
                label = rng.integers(0, n_classes)
            rows.append((f"t{task:04d}", workers[w], f"class{label}"))
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    truth_series = pd.Series([f"class{c}" for c in truth], index=[f"t{t:04d}" for t in range(n_tasks)])
    return Crowd(answers, truth_series, workers[n_good:], workers[:n_good])


def likert_crowd(seed: int = 0, n_tasks: int = 200, per_task: int = 6) -> Crowd:
    """1-5 ratings of items whose true score is 1..5: four careful workers (noise 0.6), two lenient ones
    (+1.5 bias), two harsh ones (-1.5), and four spammers (two uniform random, two always answering 5).
    The mean is pulled toward the spammers' answers; a model of bias and noise is not."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, n_tasks).astype(float)
    kinds = {"careful0": ("noise", 0.0), "careful1": ("noise", 0.0), "careful2": ("noise", 0.0),
             "careful3": ("noise", 0.0), "lenient0": ("noise", 1.5), "lenient1": ("noise", 1.5),
             "harsh0": ("noise", -1.5), "harsh1": ("noise", -1.5), "random0": ("random", 0.0),
             "random1": ("random", 0.0), "always5_0": ("constant", 5.0), "always5_1": ("constant", 5.0)}
    names = list(kinds)
    rows = []
    for task in range(n_tasks):
        for w in rng.choice(len(names), size=per_task, replace=False):
            kind, parameter = kinds[names[w]]
            if kind == "noise":
                label = np.clip(np.round(truth[task] + parameter + rng.normal(0, 0.6)), 1, 5)
            elif kind == "random":
                label = rng.integers(1, 6)
            else:
                label = parameter
            rows.append((f"item{task:04d}", names[w], int(label)))
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    truth_series = pd.Series(truth, index=[f"item{t:04d}" for t in range(n_tasks)])
    spammers = [n for n in names if kinds[n][0] != "noise"]
    return Crowd(answers, truth_series, spammers, [n for n in names if n.startswith("careful")])


def pairwise_crowd(seed: int = 0, n_items: int = 8, n_judgments: int = 600) -> tuple[pd.DataFrame, pd.Series]:
    """Judgments ``task="a|b", worker, label=winner`` drawn from a Bradley-Terry model with known
    log-strengths (item0 weakest ... item7 strongest)."""
    rng = np.random.default_rng(seed)
    strength = np.linspace(-2, 2, n_items)
    items = [f"item{i}" for i in range(n_items)]
    rows = []
    for j in range(n_judgments):
        a, b = rng.choice(n_items, size=2, replace=False)
        p_a = 1.0 / (1.0 + np.exp(strength[b] - strength[a]))
        winner = a if rng.random() < p_a else b
        rows.append((f"{items[a]}|{items[b]}", f"w{j % 5}", items[winner]))
    return pd.DataFrame(rows, columns=["task", "worker", "label"]), pd.Series(strength, index=items)


# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories,
# counts of raters per category; kappa = 0.210.
FLEISS_TEXTBOOK_COUNTS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]
FLEISS_TEXTBOOK_KAPPA = 0.210


def counts_to_answers(counts: list[list[int]]) -> pd.DataFrame:
    """Expand a subjects x categories count table into one answer per rater."""
    rows = []
    for subject, row in enumerate(counts):
        rater = 0
        for category, count in enumerate(row):
            for _ in range(count):
                rows.append((subject, f"r{rater}", category))
                rater += 1
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def review_batch() -> dict[str, pd.DataFrame]:
    """Six HITs of four items each (three rated items and one gold item whose true score is 4), done by:
    ``careful`` (right, 20 s/item), ``sloppy_gold`` (answers 1 on every gold item), ``speeder`` (right
    but 1 s/item), ``liner`` (always 3), and ``twice`` (careful, but submits HIT H0 a second time)."""
    start = pd.Timestamp("2026-03-01 12:00:00")
    gold = pd.DataFrame({"task": [f"gold{h}" for h in range(6)], "true_label": [4] * 6})
    assignment_rows, rating_rows = [], []
    rng = np.random.default_rng(7)
    true_scores = {f"item{h}_{i}": int(rng.integers(1, 6)) for h in range(6) for i in range(3)}

    def add(assignment: str, hit: int, worker: str, seconds_per_item: float, labels: list[int], offset: int) -> None:
        accept = start + pd.Timedelta(minutes=offset)
        assignment_rows.append((assignment, f"H{hit}", worker, accept,
                                accept + pd.Timedelta(seconds=seconds_per_item * len(labels))))
        tasks = [f"item{hit}_{i}" for i in range(3)] + [f"gold{hit}"]
        for task, label in zip(tasks, labels):
            rating_rows.append((assignment, f"H{hit}", task, worker, label))

    for hit in range(6):
        items = [true_scores[f"item{hit}_{i}"] for i in range(3)]
        add(f"A{hit}_careful", hit, "careful", 20, items + [4], hit)
        add(f"A{hit}_sloppy", hit, "sloppy_gold", 15, [max(1, s - 1) for s in items] + [1], hit)
        add(f"A{hit}_speeder", hit, "speeder", 1, items + [4], hit)
        add(f"A{hit}_liner", hit, "liner", 12, [3, 3, 3, 3], hit)
        add(f"A{hit}_twice", hit, "twice", 18, items + [4], hit)
    add("A0_twice_again", 0, "twice", 18, [true_scores[f"item0_{i}"] for i in range(3)] + [4], 30)
    assignments = pd.DataFrame(assignment_rows, columns=["assignment_id", "hit_id", "worker", "accept_time",
                                                         "submit_time"])
    ratings = pd.DataFrame(rating_rows, columns=["assignment_id", "hit_id", "task", "worker", "label"])
    return {"ratings": ratings, "assignments": assignments, "gold": gold}
