"""The closed loop, measured: does the crowd's judgment make the model better, and does quality control matter?

Three arms run the same loop (built-in tiny model, same prompts, same seeds, same HIT pages with gold
items) for the same number of rounds, and differ only in the crowd and in what happens to its answers:

- clean:      every worker careful; review with gold items, then mean aggregation;
- filtered:   30% random spammers; the full quality pipeline (review rejects workers who fail the gold
              items and hard-blocks those near chance; aggregation sees approved ratings only);
- unfiltered: the same 30% spammers; no review, plain mean of every rating.

The crowd rates by a hidden preference: the share of words from the positive adjectives of the built-in
model's corpus, reaching 1 when 30% of the words are such adjectives (``--target-share``). A round's true
reward is that preference's mean over the round's generations, which the tuning never sees. Round 0 is
the base model; round N is the model after N tunes (its generations are made for evaluation only).

Each arm is repeated with ``--replicates`` seeds (generation, crowd and tuning seeds all change together;
the arms of one seed share them), and the JSON line reports the mean over seeds: one run of a tiny
model on 384 texts moves by a few hundredths from seed to seed, about as much as the effect measured.

    python benchmarks/closed_loop.py                 # the full benchmark: 3 arms x 5 seeds x 3 rounds
    python benchmarks/closed_loop.py --replicates 1 --prompts 12 --samples 4 -v   # a quick look

Prints the true reward per round of every arm and seed, per-round crowd figures, and the paths of the
first seed's HTML reports; the last line is a JSON object with ``clean``, ``filtered`` and ``unfiltered``
(mean true reward per round, round 0 first), ``filtered_gain_fraction`` (the filtered arm's total gain
over the clean arm's) and ``unfiltered_gain_fraction``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARMS = {
    "clean": {"mix": {"careful": 1.0}, "review": True},
    "filtered": {"mix": {"careful": 0.7, "spammer": 0.3}, "review": True},
    "unfiltered": {"mix": {"careful": 0.7, "spammer": 0.3}, "review": False},
}


def target_words() -> list[str]:
    """Positive adjectives of the built-in corpus: the words the hidden preference rewards."""
    from mturk_tune import tiny_corpus

    return sorted({w for topic in tiny_corpus.TOPICS for w in topic.good} | set(tiny_corpus.PERSON_GOOD))


def benchmark_prompts(n: int):
    from mturk_tune.prompts import Prompt
    from mturk_tune.tiny_corpus import TOPICS

    forms = ("Write a short review of a {}.", "Review of the {}:", "Write a review of the {}.",
             "Write a short review of the {}.")
    prompts = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)].name
        prompts.append(Prompt(id=f"p{i + 1}", text=forms[(i // len(TOPICS)) % len(forms)].format(topic)))
    return prompts


def workspace_settings(args) -> dict:
    return {
        "publish": {"endpoint": "local", "items_per_hit": args.items_per_hit, "assignments": args.assignments,
                    "gold_rate": args.gold_rate, "reward": "0.05", "max_cost": "1000.00"},
        "generate": {"samples_per_prompt": args.samples, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                     "temperature": args.temperature},
        "aggregate": {"method": "mean"},
        # Gold answers within one point count as right: a careful rater is then right almost always, a
        # random clicker about 40% of the time on the scale's ends. Judge after 3 gold answers.
        "quality": {"gold_tolerance": 1.0, "min_gold_answers": 3, "min_gold_accuracy": 0.7,
                    "hard_block_below_gold_accuracy": 0.6},
        "tune": {"scheme": args.scheme, "top_fraction": args.top_fraction, "temperature": args.weight_temperature,
                 "learning_rate": args.lr, "epochs": args.epochs, "batch_size": args.batch_size,
                 "seed": args.seed, "eval_prompts": 4, "threads": args.threads, "warmup": 0.1},
    }


def run_arm(name: str, seed: int, args, root: Path, report: bool = False) -> dict:
    """One arm of one replicate: its own workspace, the loop for `args.rounds` rounds (and its HTML report)."""
    import dataclasses

    from mturk_tune.config import CrowdSection
    from mturk_tune.loop import builtin_gold, run_loop
    from mturk_tune.workspace import init_workspace

    arm = ARMS[name]
    replicate = dataclasses.replace(args, seed=seed) if dataclasses.is_dataclass(args) else argparse.Namespace(**{**vars(args), "seed": seed})
    ws = init_workspace(root / f"seed{seed}" / name, model="builtin:tiny", settings=workspace_settings(replicate))
    preference = "target_words:" + ",".join(target_words()) + f"@{args.target_share}"
    crowd = CrowdSection(workers=args.workers, seed=seed, mix=arm["mix"])
    started = time.perf_counter()

    def echo(line: str) -> None:
        if args.verbose:
            print(f"  [{name} seed {seed}] {line}", flush=True)

    result = run_loop(ws, args.rounds, benchmark_prompts(args.prompts), review=arm["review"], method="mean",
                      preference=preference, crowd=crowd, gold=builtin_gold(preference, count=args.gold_items),
                      echo=echo)
    seconds = time.perf_counter() - started
    report_path = None
    if report:
        from mturk_tune.report import write_report

        report_path = str(write_report(ws))
    ws.store.close()
    return {"name": name, "seed": seed, "true_reward": result.true_reward, "rounds": result.rounds,
            "seconds": seconds, "workspace": str(ws.root), "report": report_path}


def mean_rewards(runs: list[dict]) -> list[float]:
    columns = list(zip(*(run["true_reward"] for run in runs)))
    return [sum(column) / len(column) for column in columns]


def print_tables(runs: list[dict], arms: list[str], rounds: int) -> None:
    header = ["arm", "seed"] + [f"round {r}" for r in range(rounds + 1)] + ["gain", "seconds"]
    print("true reward per round (mean hidden preference of the round's generations; round 0 = base model):")
    print("  ".join(f"{h:>10}" for h in header))
    for name in arms:
        mine = [run for run in runs if run["name"] == name]
        rows = [(str(run["seed"]), run["true_reward"], f"{run['seconds']:.0f}") for run in mine]
        if len(mine) > 1:
            rows.append(("mean", mean_rewards(mine), f"{sum(r['seconds'] for r in mine):.0f}"))
        for seed, rewards, seconds in rows:
            cells = [name, seed] + [f"{v:.4f}" for v in rewards] + [f"{rewards[-1] - rewards[0]:+.4f}", seconds]
            print("  ".join(f"{c:>10}" for c in cells))
    print()
    print("per tuned round, mean over seeds: rated reward (crowd, 0-1) | score-truth correlation | "
          "ratings kept/all | rejected assignments | alpha all/kept | cost $")
    for name in arms:
        mine = [run for run in runs if run["name"] == name]
        for round_ in range(rounds):
            rows = [r for run in mine for r in run["rounds"] if r["round"] == round_ and "rated_reward" in r]
            if not rows:
                continue

            def avg(key: str) -> float:
                values = [r[key] for r in rows if key in r]
                return sum(values) / len(values) if values else float("nan")

            print(f"  {name:>10} round {round_}: {avg('rated_reward'):.3f} | {avg('score_truth_corr'):.2f} | "
                  f"{avg('ratings_kept'):.0f}/{avg('ratings'):.0f} | {avg('rejected_assignments'):.1f} | "
                  f"{avg('alpha'):.2f}/{avg('alpha_kept'):.2f} | {avg('cost'):.2f}")
    print()


def summarize(runs: list[dict], arms: list[str], seconds: float) -> dict:
    by_arm = {name: mean_rewards([run for run in runs if run["name"] == name]) for name in arms}
    summary: dict = {name: [round(v, 4) for v in rewards] for name, rewards in by_arm.items()}
    gain = {name: rewards[-1] - rewards[0] for name, rewards in by_arm.items()}
    if "clean" in gain:
        for name in ("filtered", "unfiltered"):
            if name in gain:
                summary[f"{name}_gain_fraction"] = round(gain[name] / gain["clean"], 3) if gain["clean"] else None
        summary["clean_improves_every_round"] = all(b > a for a, b in zip(by_arm["clean"], by_arm["clean"][1:]))
    summary["seeds"] = sorted({run["seed"] for run in runs})
    summary["seconds"] = round(seconds, 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicates", type=int, default=5,
                        help="independent repeats of every arm (seeds seed, seed+1, ...); the JSON reports their mean")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt per round")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=30)
    parser.add_argument("--items-per-hit", type=int, default=6)
    parser.add_argument("--assignments", type=int, default=3)
    parser.add_argument("--gold-rate", type=float, default=0.34, help="share of each HIT given to gold items")
    parser.add_argument("--gold-items", type=int, default=16)
    parser.add_argument("--target-share", type=float, default=0.3, help="share of target words at which the preference reaches 1")
    parser.add_argument("--scheme", default="top_fraction")
    parser.add_argument("--top-fraction", type=float, default=0.25)
    parser.add_argument("--weight-temperature", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MTURK_TUNE_THREADS", "1")))
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of clean,filtered,unfiltered")
    parser.add_argument("--workdir", type=Path, help="keep the workspaces here (default: a temporary folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every loop step")
    args = parser.parse_args(argv)
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")

    import torch

    torch.set_num_threads(args.threads)
    from mturk_tune.cli import quiet_libraries
    from mturk_tune.models import builtin_model_path

    quiet_libraries()
    builtin_model_path()  # build the base model once, outside the timings
    root = args.workdir or Path(tempfile.mkdtemp(prefix="mturk-tune-closed-loop-"))
    seeds = [args.seed + i for i in range(args.replicates)]
    if args.workdir:
        for seed in seeds:
            shutil.rmtree(root / f"seed{seed}", ignore_errors=True)
    started = time.perf_counter()
    runs = []
    for seed in seeds:
        for name in arms:
            run = run_arm(name, seed, args, root, report=seed == seeds[0])
            runs.append(run)
            print(f"seed {seed} {name:>10}: true reward " + " ".join(f"{v:.3f}" for v in run["true_reward"])
                  + f"  ({run['seconds']:.0f} s)", flush=True)
    print()
    print_tables(runs, arms, args.rounds)
    summary = summarize(runs, arms, time.perf_counter() - started)
    print(f"workspaces in {root}; total {summary['seconds']:.0f} s; reports of seed {seeds[0]}:")
    for run in runs:
        if run["report"]:
            print(f"  {run['name']:>10}: {run['report']}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
