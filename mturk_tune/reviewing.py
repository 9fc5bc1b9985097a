"""Turn quality signals into approve/reject/bonus/block calls, each made at most once.

`plan_review` is pure over the store: it shows what would happen. `apply_review` records each
action's intent (with a deterministic token) before the remote call and its outcome after, so a
re-run skips what is done and finishes what was interrupted; applying twice changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

import pandas as pd
from botocore.exceptions import ClientError

from .money import bonus_cost, format_dollars, parse_dollars
from .store import Store



@dataclass(frozen=True)
class ReviewResult:
    applied: int
    skipped: int
    failed: int


def action_token(kind: str, target: str) -> str:
    return "mtt-" + hashlib.sha256(f"{kind}\x1f{target}".encode()).hexdigest()[:40]


def review_inputs(store: Store, round_: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The ratings, assignments and gold tables the quality engine takes."""
    ratings = store.ratings_frame(round_=round_)
    assignments = store.assignments_frame(round_=round_)
    gold_rows = ratings[ratings["kind"] == "gold"][["task", "gold_label"]].drop_duplicates("task")
    gold = gold_rows.rename(columns={"gold_label": "true_label"}).reset_index(drop=True)
    return ratings, assignments, gold


def plan_review(store: Store, policy, round_: int | None = None) -> pd.DataFrame:
    """Decisions for every submitted assignment not yet reviewed (one row each, with reasons)."""
    from .quality import decide

    ratings, assignments, gold = review_inputs(store, round_)
    if ratings.empty:
        return pd.DataFrame(columns=["assignment_id", "hit_id", "worker", "action", "reason", "feedback", "bonus", "block"])
    decisions = decide(ratings, assignments, gold, policy)
    status = assignments.set_index("assignment_id")["status"]
    pending = decisions["assignment_id"].map(status).eq("Submitted")
    return decisions[pending].reset_index(drop=True)


def review_cost(decisions: pd.DataFrame) -> Decimal:
    bonuses = [parse_dollars(b, "bonus") for b in decisions.get("bonus", []) if isinstance(b, str) and b]
    return sum((bonus_cost(b) for b in bonuses), Decimal("0"))


def apply_review(
    store: Store,
    client,
    decisions: pd.DataFrame,
    soft_block_name: str = "mturk-tune-soft-block",
    progress: Callable[[int], None] | None = None,
) -> ReviewResult:
    applied = skipped = failed = 0
    for row in decisions.itertuples(index=False):
        steps: list[tuple[str, str, Callable[[str], object]]] = []
        if row.action == "approve":
            steps.append(("approve", row.assignment_id, lambda tok, r=row: client.approve_assignment(
                AssignmentId=r.assignment_id, RequesterFeedback=(r.feedback or "")[:1024] or "Thank you")))
        else:
            steps.append(("reject", row.assignment_id, lambda tok, r=row: client.reject_assignment(
                AssignmentId=r.assignment_id, RequesterFeedback=(r.feedback or r.reason)[:1024])))
        if isinstance(row.bonus, str) and row.bonus and row.action == "approve":
            steps.append(("bonus", row.assignment_id, lambda tok, r=row: client.send_bonus(
                WorkerId=r.worker, BonusAmount=format_dollars(parse_dollars(r.bonus, "bonus")),
                AssignmentId=r.assignment_id, Reason="High-quality work, thank you", UniqueRequestToken=tok)))
        if row.block == "hard":
            steps.append(("block", row.worker, lambda tok, r=row: client.create_worker_block(
                WorkerId=r.worker, Reason=(r.reason or "quality")[:1024])))
        elif row.block == "soft":
            steps.append(("soft_block", row.worker, lambda tok, r=row: client.associate_qualification_with_worker(
                QualificationTypeId=_soft_block_type(store, client, soft_block_name), WorkerId=r.worker,
                IntegerValue=1, SendNotification=False)))
        for kind, target, call in steps:
            token = action_token(kind, target)
            if store.action_state(token) == "done":
                skipped += 1
                continue
            store.record_action_intent(token, kind, target, {"assignment": row.assignment_id, "reason": row.reason})
            try:
                result = call(token)
            except ClientError as exc:
                if _already_done(client, kind, row, exc):
                    store.finish_action(token, "done", {"note": "already done remotely"})
                    skipped += 1
                    continue
                store.finish_action(token, "failed", exc.response.get("Error", {}))
                failed += 1
                continue
            store.finish_action(token, "done", {k: v for k, v in (result or {}).items() if k != "ResponseMetadata"})
            if kind in ("approve", "reject"):
                store.set_assignment_status(row.assignment_id, "Approved" if kind == "approve" else "Rejected")
            applied += 1
        if progress:
            progress(1)
    return ReviewResult(applied=applied, skipped=skipped, failed=failed)


def _already_done(client, kind: str, row, exc: ClientError) -> bool:
    """A call that reached the marketplace before a crash: check the remote state instead of failing."""
    error = exc.response.get("Error", {})
    if kind in ("approve", "reject"):
        try:
            status = client.get_assignment(AssignmentId=row.assignment_id)["Assignment"]["AssignmentStatus"]
        except ClientError:
            return False
        return status == ("Approved" if kind == "approve" else "Rejected")
    if kind == "bonus":
        return "already" in str(error.get("Message", "")).lower() or "Duplicate" in str(error.get("TurkErrorCode", ""))
    return False


def _soft_block_type(store: Store, client, name: str) -> str:
    """The soft-block qualification type, created once and remembered in the actions table."""
    token = action_token("qualification_type", name)
    known = store.action_result(token)
    if known:
        return known["QualificationTypeId"]
    store.record_action_intent(token, "qualification_type", name, {})
    qual = client.create_qualification_type(
        Name=name, Description="Workers whose recent ratings did not meet the quality policy",
        QualificationTypeStatus="Active",
    )["QualificationType"]
    store.finish_action(token, "done", {"QualificationTypeId": qual["QualificationTypeId"]})
    return qual["QualificationTypeId"]


@dataclass(frozen=True)
class ExtensionPlan:
    hits: dict[str, int]  # HIT id -> its MaxAssignments now
    items: list[str]
    extra_per_hit: int
    cost: Decimal


def plan_extension(store: Store, method: str, threshold: float, max_extra_assignments: int,
                   round_: int | None = None) -> ExtensionPlan:
    """HITs holding the least confident items, one more assignment each, within the budget."""
    from .money import hit_cost
    from .quality import extension_candidates

    scores = store.scores_frame(round_=round_, method=method)
    scores = scores[scores["kind"] == "generated"]
    hit_rows = {row["hit_id"]: row for row in store.hits(round_=round_)}
    item_hit = {item: hit_id for hit_id in hit_rows for item in store.items_of_hit(hit_id)}
    tasks = extension_candidates(scores[["task", "confidence", "n"]], threshold, max_extra_assignments)
    hits: dict[str, int] = {}
    for task in tasks:
        hit_id = item_hit.get(task)
        if hit_id is None or hit_id in hits:
            continue
        current = int(hit_rows[hit_id]["max_assignments"])
        if current < 10 <= current + 1:  # MTurk refuses crossing from <10 to >=10 assignments
            continue
        if len(hits) >= max_extra_assignments:
            break
        hits[hit_id] = current
    cost = sum((hit_cost(parse_dollars(hit_rows[h]["reward"], "reward"), m + 1) / (m + 1) for h, m in hits.items()),
               Decimal("0"))
    return ExtensionPlan(hits=hits, items=tasks, extra_per_hit=1, cost=cost.quantize(Decimal("0.01")))


def apply_extension(store: Store, client, plan: ExtensionPlan) -> int:
    """CreateAdditionalAssignmentsForHIT once per HIT; the token names the HIT and its size before."""
    done = 0
    for hit_id, current in plan.hits.items():
        token = action_token("extend", f"{hit_id}@{current}")
        if store.action_state(token) == "done":
            continue
        store.record_action_intent(token, "extend", hit_id, {"from": current, "extra": plan.extra_per_hit})
        try:
            client.create_additional_assignments_for_hit(
                HITId=hit_id, NumberOfAdditionalAssignments=plan.extra_per_hit, UniqueRequestToken=token)
        except ClientError as exc:
            if "AlreadyExists" not in str(exc.response.get("Error", {}).get("TurkErrorCode", "")):
                store.finish_action(token, "failed", exc.response.get("Error", {}))
                raise
        store.finish_action(token, "done", {"max_assignments": current + plan.extra_per_hit})
        store.set_hit_max_assignments(hit_id, current + plan.extra_per_hit)
        done += 1
    return done
