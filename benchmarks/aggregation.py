"""Aggregation quality and speed: mturk-tune's aggregators against crowd-kit's, on real crowds and at scale.

1. Real datasets (``--data DIR``: one folder per dataset holding ``answers.csv`` with ``task,worker,label``
   and ``gold.csv`` with ``task,true_label``; default ``../shared/data/crowd`` next to the repository).
   For each categorical dataset: accuracy against gold (percent, on tasks that have gold; a task with no
   prediction counts as wrong) and wall time of every method here and of crowd-kit's MajorityVote, Wawa,
   ZeroBasedSkill, DawidSkene, OneCoinDawidSkene, GLAD and MACE, all computed in this run with default
   settings. Numeric datasets (more than 20 distinct labels, e.g. zheng_emotion) get MAE / RMSE of our
   numeric methods; crowd-kit has no aggregator for scalar ratings.
2. Dawid-Skene on 1,000,000 synthetic labels (100k tasks, 2k workers, 5 classes, 10 answers per task,
   workers with random confusion matrices, 10% spammers): ours against crowd-kit's ``DawidSkene`` at the
   same number of EM iterations (``--ds-iters``, early stopping off in both), the share of tasks where both
   pick the same label, and our peak memory during ``fit`` (tracemalloc, which sees numpy's buffers; and
   the resident-set growth of a separate process that runs only our fit).

    python benchmarks/aggregation.py                  # everything (about two minutes on 2 busy cores)
    python benchmarks/aggregation.py --quick          # 100k synthetic labels, skips crowd-kit's slow GLAD/MACE
    python benchmarks/aggregation.py --data /path/to/crowd

Needs ``pip install crowd-kit==1.4.2 "scikit-learn<1.8"`` for the comparison (without it, only our
figures are printed). Everything runs on one thread. The last line printed is one JSON object:
``{"datasets": {name: {method: accuracy}}, "numeric_datasets": {...}, "ds_speedup_1m": x,
"ds_peak_mb_1m": y, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread for every library, ours and crowd-kit's alike

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mturk_tune.aggregation import CATEGORICAL_METHODS, DawidSkene, aggregate  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "crowd"
NUMERIC_METHODS = [("mean", {}), ("median", {}), ("weighted_mean", {}),
                   ("weighted_mean+bias", {"correct_bias": True}), ("ordinal_ds", {})]
CROWDKIT_METHODS = ["MajorityVote", "Wawa", "ZeroBasedSkill", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE"]
CROWDKIT_SLOW = {"GLAD", "MACE"}


def load_crowdkit():
    try:
        import crowdkit.aggregation as crowdkit
    except ImportError:
        return None
    try:  # crowd-kit imports torch through transformers on some paths: keep it on one thread too
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    return crowdkit


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# Real datasets


def read_dataset(folder: Path) -> tuple[pd.DataFrame, pd.Series]:
    answers = pd.read_csv(folder / "answers.csv", dtype={"task": str, "worker": str})
    gold = pd.read_csv(folder / "gold.csv", dtype={"task": str})
    return answers, gold.drop_duplicates("task").set_index("task")["true_label"]


def accuracy(predicted: pd.Series, gold: pd.Series) -> float:
    return round(100.0 * float((predicted.reindex(gold.index) == gold).mean()), 2)


def run_categorical(answers, gold, crowdkit, quick) -> tuple[dict[str, float], dict[str, float]]:
    scores, seconds = {}, {}
    for method in CATEGORICAL_METHODS:
        result, took = timed(lambda: aggregate(answers, method))
        scores[method] = accuracy(result.items.set_index("task")["label"], gold)
        seconds[method] = took
    if crowdkit is not None:
        for name in CROWDKIT_METHODS:
            if quick and name in CROWDKIT_SLOW:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    labels, took = timed(lambda: getattr(crowdkit, name)().fit_predict(answers))
                except Exception as error:  # a crash in the reference is a result too
                    print(f"  crowd-kit {name} failed: {type(error).__name__}: {error}")
                    continue
            scores[f"crowdkit:{name}"] = accuracy(labels, gold)
            seconds[f"crowdkit:{name}"] = took
    return scores, seconds


def run_numeric(answers, gold) -> dict[str, dict[str, float]]:
    out = {}
    for name, params in NUMERIC_METHODS:
        method = name.split("+")[0]
        result, took = timed(lambda: aggregate(answers, method, **params))
        error = result.items.set_index("task")["label"].reindex(gold.index) - gold
        out[name] = {"mae": round(float(error.abs().mean()), 2), "rmse": round(float(np.sqrt((error ** 2).mean())), 2),
                     "seconds": took}
    return out


def print_accuracy_table(accuracies: dict[str, dict[str, float]], times: dict[str, dict[str, float]]) -> None:
    methods = list(dict.fromkeys(m for scores in accuracies.values() for m in scores))
    ours = [m for m in methods if not m.startswith("crowdkit:")]
    theirs = [m for m in methods if m.startswith("crowdkit:")]
    width = max(len(m) for m in methods) + 2
    names = list(accuracies)
    print("\nAccuracy against gold, percent (seconds in brackets)")
    print("method".ljust(width) + "".join(n[:16].rjust(18) for n in names))
    for method in ours + theirs:
        cells = []
        for name in names:
            if method in accuracies[name]:
                cells.append(f"{accuracies[name][method]:6.2f} ({times[name][method]:5.2f})".rjust(18))
            else:
                cells.append("-".rjust(18))
        print(method.ljust(width) + "".join(cells))
    if theirs:
        print("\nBest of ours vs best of crowd-kit")
        for name in names:
            best_ours = max(ours, key=lambda m: accuracies[name].get(m, -1))
            best_theirs = max(theirs, key=lambda m: accuracies[name].get(m, -1))
            a, b = accuracies[name][best_ours], accuracies[name][best_theirs]
            verdict = "ok" if a >= b else "BELOW"
            print(f"  {name:14s} ours {a:6.2f} ({best_ours})  crowd-kit {b:6.2f} ({best_theirs[9:]})  {verdict}")


# --------------------------------------------------------------------------------------------------
# Dawid-Skene at scale


def synthetic_labels(n_tasks: int, n_workers: int, n_classes: int = 5, per_task: int = 10,
                     seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Tasks with a skewed class prior; workers with random confusion matrices (diagonal 0.35-0.95,
    the rest spread by a Dirichlet draw), 10% of them uniform spammers; each task gets ``per_task``
    answers from distinct-enough random workers."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.35, 0.25, 0.2, 0.12, 0.08])[:n_classes]
    truth = rng.choice(n_classes, size=n_tasks, p=prior / prior.sum())
    accuracy_w = rng.uniform(0.35, 0.95, n_workers)
    confusion = rng.dirichlet(np.ones(n_classes - 1), size=(n_workers, n_classes))  # (w, true, wrong)
    matrix = np.zeros((n_workers, n_classes, n_classes))  # (w, true, given)
    for true in range(n_classes):  # a loop over the 5 classes only, building the generator
        wrong = [c for c in range(n_classes) if c != true]
        matrix[:, true, true] = accuracy_w
        matrix[:, true, wrong] = (1 - accuracy_w)[:, None] * confusion[:, true, :]
    spammers = rng.random(n_workers) < 0.1
    matrix[spammers] = 1.0 / n_classes
    task = np.repeat(np.arange(n_tasks), per_task)
    worker = rng.integers(0, n_workers, task.size)
    cdf = np.cumsum(matrix, axis=2)[worker, truth[task]]  # (answers, classes)
    label = (rng.random(task.size)[:, None] > cdf).sum(axis=1).clip(0, n_classes - 1)
    return pd.DataFrame({"task": task, "worker": worker, "label": label}), truth


def memory_probe(path: str, iterations: int) -> None:
    """Run in a child process: resident-set growth of one Dawid-Skene fit (JSON on stdout). The labels
    come from a file, so the peak before the fit is just the loaded table, not the generator's scratch."""
    with np.load(path) as saved:
        answers = pd.DataFrame({column: saved[column] for column in ("task", "worker", "label")})
    before = peak_rss_kib()
    DawidSkene(n_iter=iterations, tol=0, smoothing=0).fit(answers)
    print(json.dumps({"rss_growth_mb": (peak_rss_kib() - before) / 1024}))


def peak_rss_kib() -> int:
    """This process's peak resident set. Linux's VmHWM, because ru_maxrss carries the parent's peak
    across fork and exec (so a child of a big benchmark would start at the parent's figure)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_scale(n_tasks: int, n_workers: int, iterations: int, crowdkit) -> dict[str, float]:
    answers, truth = synthetic_labels(n_tasks, n_workers)
    print(f"\nDawid-Skene on {len(answers):,} synthetic labels ({n_tasks:,} tasks, {n_workers:,} workers, "
          f"5 classes), {iterations} EM iterations, early stopping off")
    # Same algorithm as crowd-kit: majority-vote start, no smoothing, probabilities floored at 1e-10.
    ours_times, model = [], None
    for _ in range(3):
        model, took = timed(lambda: DawidSkene(n_iter=iterations, tol=0, smoothing=0).fit(answers))
        ours_times.append(took)
    ours_seconds = float(np.median(ours_times))
    tracemalloc.start()
    DawidSkene(n_iter=iterations, tol=0, smoothing=0).fit(answers)
    peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "labels.npz")
        np.savez(path, **{column: answers[column].to_numpy() for column in ("task", "worker", "label")})
        probe = subprocess.run([sys.executable, __file__, "--memory-probe", path, str(iterations)],
                               capture_output=True, text=True, check=True)
    rss_mb = json.loads(probe.stdout.strip().splitlines()[-1])["rss_growth_mb"]
    ours_accuracy = float((model.labels_.sort_index().to_numpy() == truth).mean())
    print(f"  ours       {ours_seconds:7.3f} s (median of 3)  accuracy vs truth {100 * ours_accuracy:.2f}%  "
          f"peak {peak_mb:.0f} MiB (tracemalloc), RSS growth {rss_mb:.0f} MiB (own process)")
    out = {"ours_seconds": ours_seconds, "peak_mb": peak_mb, "rss_growth_mb": rss_mb, "iterations": iterations}
    if crowdkit is None:
        print("  crowd-kit not installed: no comparison")
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, their_seconds = timed(lambda: crowdkit.DawidSkene(n_iter=iterations, tol=-np.inf).fit(answers))
        default, default_seconds = timed(lambda: crowdkit.DawidSkene().fit(answers))
    same = float((theirs.labels_.sort_index().to_numpy() == model.labels_.sort_index().to_numpy()).mean())
    print(f"  crowd-kit  {their_seconds:7.3f} s  same label as ours on {100 * same:.3f}% of tasks")
    print(f"  speedup    {their_seconds / ours_seconds:.1f}x at {iterations} iterations")
    # For context: crowd-kit with its defaults (n_iter=100, tol=1e-5) stops by itself; ours at that count.
    default_iters = len(default.loss_history_)
    _, ours_at_default = timed(lambda: DawidSkene(n_iter=default_iters, tol=0, smoothing=0).fit(answers))
    print(f"  crowd-kit defaults stop after {default_iters} iterations in {default_seconds:.3f} s; "
          f"ours at {default_iters}: {ours_at_default:.3f} s ({default_seconds / ours_at_default:.1f}x)")
    out.update(crowdkit_seconds=their_seconds, speedup=their_seconds / ours_seconds, same_labels=same,
               default_iterations=default_iters, speedup_at_default=default_seconds / ours_at_default)
    return out


# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with one folder per dataset")
    parser.add_argument("--quick", action="store_true", help="100k synthetic labels; skip crowd-kit's GLAD and MACE")
    parser.add_argument("--ds-iters", type=int, default=20, help="EM iterations for the scale comparison")
    parser.add_argument("--memory-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]))
        return

    crowdkit = load_crowdkit()
    if crowdkit is None:
        print('crowd-kit is not installed (pip install crowd-kit==1.4.2 "scikit-learn<1.8"): ours only')
    report: dict = {"datasets": {}, "numeric_datasets": {}}
    if not args.data.is_dir():
        print(f"no dataset folder at {args.data}: skipping the real datasets")
    else:
        times: dict[str, dict[str, float]] = {}
        folders = sorted(p for p in args.data.iterdir() if (p / "answers.csv").exists() and (p / "gold.csv").exists())
        for folder in folders:
            answers, gold = read_dataset(folder)
            kind = "numeric" if answers["label"].nunique() > 20 else "categorical"
            print(f"{folder.name}: {len(answers):,} answers, {answers['task'].nunique():,} tasks, "
                  f"{answers['worker'].nunique():,} workers, {len(gold):,} gold, {kind}", flush=True)
            if kind == "numeric":
                report["numeric_datasets"][folder.name] = run_numeric(answers, gold)
            else:
                scores, times[folder.name] = run_categorical(answers, gold, crowdkit, args.quick)
                report["datasets"][folder.name] = scores
        if report["datasets"]:
            print_accuracy_table(report["datasets"], times)
        for name, results in report["numeric_datasets"].items():
            print(f"\n{name} (numeric; crowd-kit has no scalar-rating aggregator to compare with)")
            for method, figures in results.items():
                print(f"  {method:20s} MAE {figures['mae']:6.2f}  RMSE {figures['rmse']:6.2f}  "
                      f"({figures['seconds']:.3f} s)")
            for figures in results.values():
                figures.pop("seconds")

    n_tasks, n_workers = (10_000, 500) if args.quick else (100_000, 2_000)
    scale = run_scale(n_tasks, n_workers, args.ds_iters, crowdkit)
    key = "100k" if args.quick else "1m"
    report[f"ds_speedup_{key}"] = round(scale["speedup"], 2) if "speedup" in scale else None
    report[f"ds_peak_mb_{key}"] = round(scale["peak_mb"], 1)
    report[f"ds_rss_growth_mb_{key}"] = round(scale["rss_growth_mb"], 1)
    report[f"ds_same_labels_{key}"] = round(scale["same_labels"], 5) if "same_labels" in scale else None
    report[f"ds_iterations_{key}"] = scale["iterations"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
