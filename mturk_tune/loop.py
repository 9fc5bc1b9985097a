"""The closed loop: generate, publish, crowd, collect, review, aggregate, tune; then again from the new model.

Each step is the library call the matching CLI command makes, against the workspace's embedded
marketplace and its simulated crowd. The crowd rates by a hidden preference (preferences.py); the loop
logs the *true reward* of every round (the mean hidden preference of the round's generated texts) next to
what the crowd said, so a run can be judged by what real crowds never reveal.

Resumable at every step: before a step runs, the state store is asked whether it already happened for
the current round (a batch exists; every item is in a created HIT; every HIT slot was answered and
collected; no assignment waits for review; scores are saved; a checkpoint is recorded). Killing the loop
and running it again continues where it stopped, and never publishes, pays or tunes twice.

Every round samples with the same [generate] seed (common random numbers), so the difference between two
rounds' true rewards comes from the model, not from the draw.

Rounds: ``run_loop(ws, rounds=N)`` tunes rounds 0 .. N-1 (those not tuned yet), then generates one more
batch from the last checkpoint (round N) for evaluation only: its true reward is logged and nothing is
published. Asking later for N+1 rounds publishes that batch and goes on, as if the loop had never stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from . import collecting, crowd_runner, generating, publishing, reviewing, rounds, scoring
from .config import CrowdSection
from .errors import ConfigError, WorkspaceError
from .hits import LIKERT_SCALE
from .agreement import alpha_or_none
from .money import bonus_cost, parse_dollars, reward_fee
from .preferences import DEFAULT_PREFERENCE, Preference, load_preference
from .prompts import Prompt
from .publishing import GoldItem
from .store import Store
from .workspace import Workspace

LOCAL = "local"
STEPS = ("generate", "publish", "crowd", "collect", "review", "aggregate", "tune")
# Where the loop's choices live in the store, so a resumed loop keeps the crowd's hidden preference.
META_PREFERENCE = "loop.preference"


@dataclass(frozen=True)
class LoopResult:
    """What a loop run left in the workspace: per-round metrics and the checkpoints, round 0 first."""

    workspace: Path
    rounds: list[dict]  # one dict per round: {"round": r, metric: value, ...}
    true_reward: list[float]  # mean hidden preference of each round's generations, round 0 first
    checkpoints: list[str]
    steps_run: list[tuple[int, str]] = field(default_factory=list)  # (round, step) done by this call
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ state


def round_batch(store: Store, round_: int) -> str | None:
    """The batch the loop works on in a round: the round's latest."""
    return store.latest_batch(round_)


def round_progress(store: Store, round_: int, method: str, review: bool = True) -> dict[str, bool]:
    """Which loop steps already happened in a round, read from the store alone."""
    batch = round_batch(store, round_)
    done = dict.fromkeys(STEPS, False)
    if batch is None:
        return done
    done["generate"] = True
    unpublished = [r for r in store.unpublished_items(batch) if r["kind"] != "gold"]
    pending = [r for r in store.pending_hit_intents() if r["batch_id"] == batch]
    hits = store.hits(round_=round_)
    done["publish"] = bool(hits) and not unpublished and not pending
    if not done["publish"]:
        return done
    slots = sum(int(h["max_assignments"]) for h in hits)
    assignments = store.assignments_frame(round_=round_)
    done["crowd"] = done["collect"] = len(assignments) >= slots
    done["review"] = not review or (len(assignments) > 0 and not (assignments["status"] == "Submitted").any())
    scores = store.scores_frame(round_=round_, method=method)
    done["aggregate"] = bool((scores["kind"] == "generated").any()) if len(scores) else False
    done["tune"] = any(int(c["round"]) == round_ for c in store.checkpoints())
    return done


# ------------------------------------------------------------------------------------------------ gold


def gold_from_preference(preference: Preference | str, texts: Sequence[str], count: int = 12,
                         scale: Sequence[int] = LIKERT_SCALE) -> list[GoldItem]:
    """Control items whose known answer is what an attentive rater with the hidden preference gives.

    Picks `count` distinct texts spread over the scale (its ends first: a random clicker is then right
    least often), label ``round(low + (high - low) * preference(text))``. Simulation only: a real crowd's
    gold answers come from people who know the task.
    """
    preference = load_preference(preference)
    low, high = min(scale), max(scale)
    by_label: dict[int, list[str]] = {}
    for text in dict.fromkeys(t for t in texts if t.strip()):
        label = int(round(low + (high - low) * preference(text)))
        by_label.setdefault(label, []).append(text)
    if len(by_label) < 2:
        raise ConfigError("gold items need texts the preference rates differently; pass more varied texts")
    # Extremes first, then the middle of the scale, round robin until `count` texts are picked.
    order = sorted(by_label, key=lambda label: (-abs(label - (low + high) / 2), label))
    picked: list[tuple[str, int]] = []
    while len(picked) < count and any(by_label.values()):
        for label in order:
            if by_label[label] and len(picked) < count:
                picked.append((by_label[label].pop(0), label))
    return [GoldItem(id="gold-" + hashlib.sha256(text.encode()).hexdigest()[:10], text=text, label=float(label))
            for text, label in picked]


def builtin_gold(preference: Preference | str, count: int = 12, seed: int = 7) -> list[GoldItem]:
    """Gold items drawn from the built-in model's own corpus (reviews and stories), labelled by the preference."""
    from .tiny_corpus import corpus

    return gold_from_preference(preference, corpus(400, seed=seed), count=count)


# ------------------------------------------------------------------------------------------------ the loop


class _Loop:
    """One run of the loop over a workspace; each method is one step of one round."""

    def __init__(self, ws: Workspace, prompts: Sequence[Prompt], *, review: bool, method: str,
                 preference: Preference, crowd: CrowdSection, gold: Sequence[GoldItem] | None,
                 tune_overrides: Mapping[str, Any], echo: Callable[[str], None]):
        from .quality import QualityPolicy
        from .requester import make_client, resolve_endpoint

        self.ws, self.store = ws, ws.store
        self.prompts = list(prompts)
        self.review, self.method, self.preference = review, method, preference
        self.crowd, self.gold = crowd, list(gold) if gold else None
        self.tune_overrides = dict(tune_overrides)
        self.echo = echo
        self.policy = QualityPolicy.from_dict(dict(ws.config.quality))
        self.endpoint = resolve_endpoint(LOCAL)
        self.client = make_client(self.endpoint, region=ws.config.publish.region, marketplace_db=ws.marketplace_db)
        self.publish_settings = _local_publish_settings(ws)
        self.steps_run: list[tuple[int, str]] = []

    def close(self) -> None:
        market = getattr(self.client.meta, "local_marketplace", None)
        if market is not None:
            market.close()

    def metric(self, round_: int, name: str, value: float | int | None) -> None:
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            self.store.set_metric(round_, name, float(value))

    # -- steps ----------------------------------------------------------------------------------

    def generate(self, round_: int) -> None:
        settings = self.ws.config.generate
        batch = generating.generate_batch(self.store, self.prompts, settings)
        self.log_true_reward(round_, batch.batch_id)
        self.echo(f"round {round_}: generated {batch.items} texts from {batch.model}; "
                  f"true reward {self.metrics(round_)['true_reward']:.3f}")

    def log_true_reward(self, round_: int, batch_id: str) -> None:
        items = self.store.items_frame(batch_id=batch_id)
        items = items[items["kind"] == "generated"]
        values = [self.preference(t) for t in items["text"]]
        n = len(values)
        mean = sum(values) / n if n else float("nan")
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else float("nan")
        self.metric(round_, "true_reward", mean)
        self.metric(round_, "true_reward_sd", sd)
        self.metric(round_, "generated_items", n)

    def publish(self, round_: int) -> None:
        batch = round_batch(self.store, round_)
        plan = publishing.plan_publish(self.store, self.endpoint, self.publish_settings, batch, gold=self.gold)
        if plan.hit_count:
            result = publishing.publish(self.store, self.client, self.endpoint, self.publish_settings, plan)
            self.echo(f"round {round_}: published {result.created} HITs ({result.recovered} recovered) "
                      f"x {plan.assignments} assignments")

    def crowd_and_collect(self, round_: int) -> None:
        submitted = crowd_runner.run_crowd(self.ws, self.crowd, preference=self.preference)
        result = collecting.collect(self.store, self.client, self.endpoint, round_=round_,
                                    concurrency=self.publish_settings.concurrency)
        slots = sum(int(h["max_assignments"]) for h in self.store.hits(round_=round_))
        have = len(self.store.assignments_frame(round_=round_))
        self.echo(f"round {round_}: the crowd submitted {submitted} assignments; collected "
                  f"{result.new_assignments} ({result.new_ratings} ratings, {result.parse_errors} unparseable)"
                  + (f"; {slots - have} slots left unanswered (too few eligible workers)" if have < slots else ""))
        ratings = self.store.ratings_frame(round_=round_)
        self.metric(round_, "assignments", have)
        self.metric(round_, "ratings", len(ratings))
        self.metric(round_, "workers", ratings["worker"].nunique())
        self.metric(round_, "alpha", alpha_or_none(ratings))

    def do_review(self, round_: int) -> None:
        decisions = reviewing.plan_review(self.store, self.policy, round_, endpoint=self.endpoint.label)
        if decisions.empty:
            return
        result = reviewing.apply_review(self.store, self.client, decisions,
                                        soft_block_name=self.policy.soft_block_qualification_name,
                                        endpoint=self.endpoint.label)
        counts = decisions["action"].value_counts()
        blocked = decisions.loc[decisions["block"] == "hard", "worker"].nunique()
        self.echo(f"round {round_}: review approved {counts.get('approve', 0)}, rejected {counts.get('reject', 0)} "
                  f"assignments, hard-blocked {blocked} workers ({result.applied} actions, {result.failed} failed)")
        if result.failed:
            raise WorkspaceError(f"round {round_}: {result.failed} review actions failed; run the loop again to retry them")

    def kept_ratings(self, round_: int) -> pd.DataFrame:
        """The ratings aggregation sees: approved assignments only after review, all of them without."""
        from .quality import filter_answers

        ratings = self.store.ratings_frame(round_=round_)
        if not self.review:
            return ratings
        assignments = self.store.assignments_frame(round_=round_)
        decisions = pd.DataFrame({
            "assignment_id": assignments["assignment_id"],
            "action": assignments["status"].map({"Approved": "approve"}).fillna("reject"),
        })
        return filter_answers(ratings, decisions)

    def aggregate(self, round_: int) -> None:
        kept = self.kept_ratings(round_)
        if kept.empty:
            raise WorkspaceError(f"round {round_}: review rejected every rating; loosen [quality] or check the crowd mix")
        result = scoring.aggregate_round(self.store, self.ws.exports_dir, method=self.method, round_=round_, ratings=kept)
        self.log_scores(round_, kept)
        m = self.metrics(round_)
        self.echo(f"round {round_}: {len(result.items)} items scored with {self.method} from {len(kept)} ratings; "
                  f"rated reward {m.get('rated_reward', float('nan')):.3f}, "
                  f"score-truth correlation {m.get('score_truth_corr', float('nan')):.2f}")

    def log_scores(self, round_: int, kept: pd.DataFrame) -> None:
        low, high = min(LIKERT_SCALE), max(LIKERT_SCALE)
        scores = self.store.scores_frame(round_=round_, method=self.method)
        scores = scores[scores["kind"] == "generated"]
        truth = scores["text"].map(self.preference)
        self.metric(round_, "rated_score", scores["label"].mean())
        self.metric(round_, "rated_reward", (scores["label"].mean() - low) / (high - low))
        if len(scores) > 2 and scores["label"].std() > 0 and truth.std() > 0:
            self.metric(round_, "score_truth_corr", float(scores["label"].corr(truth)))
        self.metric(round_, "ratings_kept", len(kept))
        self.metric(round_, "alpha_kept", alpha_or_none(kept))
        assignments = self.store.assignments_frame(round_=round_)
        self.metric(round_, "rejected_assignments", int((assignments["status"] == "Rejected").sum()))
        self.metric(round_, "cost", float(round_cost(self.store, round_, self.policy.bonus_amount)))

    def tune(self, round_: int) -> None:
        if any(int(c["round"]) == round_ for c in self.store.checkpoints()):
            # Tuned and recorded, but the process stopped before the next round was opened.
            path = next(c["path"] for c in reversed(self.store.checkpoints()) if int(c["round"]) == round_)
            self.store.start_round(path)
            return
        out_dir = self.ws.checkpoints_dir / f"round{round_}"
        started = time.perf_counter()
        result = rounds.tune_round(self.ws, self.tune_overrides, method=self.method, resume=out_dir.exists())
        training = result.record.get("training", {})
        self.metric(round_, "tune_seconds", time.perf_counter() - started)
        self.metric(round_, "tune_final_loss", training.get("final_loss"))
        self.echo(f"round {round_}: tuned {training.get('steps')} steps -> {result.checkpoint}")

    def metrics(self, round_: int) -> dict[str, float]:
        frame = self.store.metrics_frame()
        frame = frame[frame["round"] == round_]
        return dict(zip(frame["name"], frame["value"]))

    # -- driver ---------------------------------------------------------------------------------

    def run_round(self, round_: int) -> None:
        done = round_progress(self.store, round_, self.method, self.review)
        skipped = [s for s in STEPS if done[s]]
        if skipped:
            self.echo(f"round {round_}: already done: {', '.join(skipped)}")
        for step, action in (("generate", self.generate), ("publish", self.publish),
                             ("collect", self.crowd_and_collect), ("review", self.do_review),
                             ("aggregate", self.aggregate), ("tune", self.tune)):
            if step == "review" and not self.review:
                continue
            if done[step] and not (step == "tune" and self.store.current_round() == round_):
                continue
            action(round_)
            self.steps_run.append((round_, "crowd+collect" if step == "collect" else step))
            done = round_progress(self.store, round_, self.method, self.review)

    def evaluate(self, round_: int) -> None:
        """Generations of the final model: true reward only, nothing published."""
        batch = round_batch(self.store, round_)
        if batch is None:
            self.generate(round_)
            self.steps_run.append((round_, "generate"))
        elif "true_reward" not in self.metrics(round_):
            self.log_true_reward(round_, batch)


def run_loop(
    ws: Workspace,
    rounds: int,
    prompts: Sequence[Prompt],
    *,
    review: bool = True,
    method: str | None = None,
    preference: str | Preference | Callable[[str], float] | None = None,
    crowd: CrowdSection | None = None,
    gold: Sequence[GoldItem] | None = None,
    auto_gold: int = 12,
    tune_overrides: Mapping[str, Any] | None = None,
    evaluate_final: bool = True,
    echo: Callable[[str], None] | None = None,
) -> LoopResult:
    """Run the closed loop until `rounds` rounds are tuned (see the module docstring); resumable.

    `review` on: the [quality] policy approves or rejects each assignment and only approved ratings are
    aggregated; off: every rating is. Gold items go into HITs at [publish] gold_rate: `gold` when given,
    else [publish] gold_file, else `auto_gold` items labelled by the hidden preference (`builtin_gold`). `method` defaults to [aggregate] method. `preference` is the simulated crowd's hidden
    preference (a spec, see preferences.py); a workspace remembers the first one it ran with and refuses
    another. `crowd` defaults to the [crowd] section. `tune_overrides` go over the [tune] section.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    if not prompts:
        raise ConfigError("the loop needs at least one prompt")
    started = time.perf_counter()
    echo = echo or (lambda line: None)
    store = ws.store
    crowd = crowd or ws.config.crowd
    _check_crowd(crowd)
    chosen = _remembered_preference(store, preference, crowd)
    if gold is None:
        gold = _configured_gold(ws, chosen, auto_gold)
    loop = _Loop(ws, prompts, review=review, method=method or ws.config.aggregate.method, preference=chosen,
                 crowd=crowd, gold=gold, tune_overrides=tune_overrides or {}, echo=echo)
    try:
        if store.current_round() >= rounds:
            echo(f"{rounds} rounds already tuned (the workspace is at round {store.current_round()})")
        while store.current_round() < rounds:
            loop.run_round(store.current_round())
        if evaluate_final:
            loop.evaluate(store.current_round())
    finally:
        loop.close()
    return LoopResult(
        workspace=ws.root,
        rounds=round_metrics(store),
        true_reward=true_rewards(store),
        checkpoints=[c["path"] for c in store.checkpoints()],
        steps_run=loop.steps_run,
        seconds=round(time.perf_counter() - started, 1),
    )


def _check_crowd(crowd: CrowdSection) -> None:
    """A crowd that cannot be made fails before anything is generated or published."""
    from .marketplace.crowd import make_crowd

    try:
        make_crowd(crowd.workers, dict(crowd.mix), seed=crowd.seed)
    except ValueError as exc:
        raise ConfigError(f"[crowd] mix: {exc}") from None


def _remembered_preference(store: Store, preference, crowd: CrowdSection) -> Preference:
    """The hidden preference is part of the experiment: a resumed loop must not switch it silently."""
    if preference is None:
        remembered = store.get_meta(META_PREFERENCE)
        preference = remembered or getattr(crowd, "preference", None) or DEFAULT_PREFERENCE
    chosen = load_preference(preference)
    stored = store.set_meta_once(META_PREFERENCE, chosen.spec)
    if stored != chosen.spec:
        raise ConfigError(f"this workspace's loop rates by preference {stored!r}, not {chosen.spec!r}: "
                          "use a new workspace to compare preferences")
    return chosen


def _configured_gold(ws: Workspace, preference: Preference, auto_gold: int) -> list[GoldItem] | None:
    settings = ws.config.publish
    if settings.gold_rate <= 0:
        return None
    if settings.gold_file:
        return publishing.read_gold(ws.root / settings.gold_file)
    return builtin_gold(preference, count=auto_gold) if auto_gold > 0 else None


def _local_publish_settings(ws: Workspace):
    import dataclasses

    return dataclasses.replace(ws.config.publish, endpoint=LOCAL)


# ------------------------------------------------------------------------------------------------ reading a run


def round_cost(store: Store, round_: int, bonus_amount: str = "0.00") -> Decimal:
    """Dollars a round costs on MTurk: reward plus fee for each assignment not rejected, plus the bonuses
    paid (each `bonus_amount` plus its fee)."""
    hits = {h["hit_id"]: h for h in store.hits(round_=round_)}
    assignments = store.assignments_frame(round_=round_)
    total = Decimal("0")
    for row in assignments.itertuples(index=False):
        hit = hits.get(row.hit_id)
        if hit is None or row.status == "Rejected":
            continue
        reward = parse_dollars(hit["reward"], "reward")
        total += reward + reward_fee(reward, int(hit["max_assignments"]))
    actions = store.actions_frame()
    if len(actions) and parse_dollars(bonus_amount, "bonus") > 0:
        paid = actions[(actions["kind"] == "bonus") & (actions["state"] == "done")
                       & actions["target"].isin(set(assignments["assignment_id"]))]
        total += len(paid) * bonus_cost(parse_dollars(bonus_amount, "bonus"))
    return total.quantize(Decimal("0.01"))


def round_metrics(store: Store) -> list[dict]:
    """Every logged metric, one dict per round (round 0 first)."""
    frame = store.metrics_frame()
    out = []
    for round_ in sorted(set(frame["round"])):
        part = frame[frame["round"] == round_]
        out.append({"round": int(round_), **dict(zip(part["name"], part["value"].astype(float)))})
    return out


def true_rewards(store: Store) -> list[float]:
    return [r["true_reward"] for r in round_metrics(store) if "true_reward" in r]


def round_trace(store: Store, round_: int) -> dict:
    """Everything a round's checkpoint came from: batches, HITs, assignments, ratings, workers, metrics.

    The data behind ``mturk-tune status --round R`` (see :func:`format_trace` for the text form).
    """
    if round_ not in {c.round for c in store.counts()}:
        raise WorkspaceError(f"round {round_} does not exist in this workspace; 'mturk-tune status' lists the rounds")
    items = store.items_frame(round_=round_)
    batches = []
    for batch_id in store.batches(round_):
        part = items[items["batch_id"] == batch_id]
        batches.append({"id": batch_id, "model": part["model"].iloc[0] if len(part) else store.round_model(round_),
                        "generated_items": int((part["kind"] == "generated").sum()),
                        "gold_items": int((part["kind"] == "gold").sum())})
    hits = store.hits(round_=round_, created_only=False)
    assignments = store.assignments_frame(round_=round_)
    ratings = store.ratings_frame(round_=round_)
    workers = []
    if len(assignments):
        per_worker = assignments.groupby("worker")["status"].value_counts().unstack(fill_value=0)
        rated = ratings.groupby("worker").size()
        for worker, row in per_worker.iterrows():
            workers.append({"worker": worker, "assignments": int(row.sum()),
                            **{status.lower(): int(n) for status, n in row.items()},
                            "ratings": int(rated.get(worker, 0))})
    scores = store.scores_frame(round_=round_)
    checkpoint = next((c for c in reversed(store.checkpoints()) if int(c["round"]) == round_), None)
    trace: dict[str, Any] = {
        "round": round_,
        "model": store.round_model(round_),
        "batches": batches,
        "hits": {"created": sum(h["state"] == "created" for h in hits),
                 "pending": sum(h["state"] != "created" for h in hits),
                 "ids": [h["hit_id"] for h in hits if h["hit_id"]]},
        "assignments": {"total": int(len(assignments)),
                        **{s.lower(): int(n) for s, n in assignments["status"].value_counts().items()}},
        "ratings": {"total": int(len(ratings)), "generated": int((ratings["kind"] == "generated").sum()),
                    "gold": int((ratings["kind"] == "gold").sum())},
        "workers": workers,
        "scores": {m: int(n) for m, n in scores["method"].value_counts().items()} if len(scores) else {},
        "metrics": next((r for r in round_metrics(store) if r["round"] == round_), {"round": round_}),
        "checkpoint": None,
    }
    trace["metrics"] = {k: v for k, v in trace["metrics"].items() if k != "round"}
    if checkpoint is not None:
        record = json.loads(checkpoint["record"])
        trace["checkpoint"] = {
            "path": checkpoint["path"], "base_model": checkpoint["base_model"], "created_at": checkpoint["created_at"],
            "weighting": record.get("weighting", {}).get("scheme"),
            "trained_items": record.get("data", {}).get("trained_items"),
            "steps": record.get("training", {}).get("steps"),
            "provenance": record.get("provenance", {}),
        }
    return trace


def format_trace(trace: dict) -> list[str]:
    """The lines `status --round R` prints."""
    lines = [f"round {trace['round']}  model {trace['model']}"]
    for b in trace["batches"]:
        lines.append(f"  batch {b['id']}: {b['generated_items']} generated + {b['gold_items']} gold items")
    h, a, r = trace["hits"], trace["assignments"], trace["ratings"]
    lines.append(f"  HITs {h['created']} created, {h['pending']} pending")
    statuses = ", ".join(f"{n} {s}" for s, n in a.items() if s != "total")
    lines.append(f"  assignments {a['total']}" + (f" ({statuses})" if statuses else ""))
    lines.append(f"  ratings {r['total']} ({r['generated']} on generated items, {r['gold']} on gold)")
    if trace["workers"]:
        rejected = [w["worker"] for w in trace["workers"] if w.get("rejected")]
        lines.append(f"  workers {len(trace['workers'])}" + (f"; rejected work from {', '.join(rejected)}" if rejected else ""))
    if trace["scores"]:
        lines.append("  scores " + ", ".join(f"{n} by {m}" for m, n in trace["scores"].items()))
    if trace["metrics"]:
        lines.append("  metrics " + ", ".join(f"{k} {_short(v)}" for k, v in sorted(trace["metrics"].items())))
    c = trace["checkpoint"]
    if c:
        lines.append(f"  checkpoint {c['path']} (from {c['base_model']}; {c['trained_items']} items, "
                     f"{c['steps']} steps, scheme {c['weighting']})")
    else:
        lines.append("  checkpoint none yet")
    return lines


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
