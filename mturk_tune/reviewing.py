"""Turn quality signals into approve/reject/bonus/block calls, each made at most once.

`plan_review` is pure over the store: it shows what would happen. `apply_review` first records
each assignment's whole decision (one row, one transaction), then makes its calls one by one,
each with its own intent (a deterministic token) before the remote call and its outcome after.
A decision, once recorded, is final: a re-run finishes it exactly as recorded even when new
ratings would now decide otherwise, so a crash between the approval and the bonus still pays the
bonus, once. A call whose outcome was never recorded is checked on the marketplace before it is
made again (the assignment's status, its bonus payments, the HIT's size), so nothing is paid
twice even after the 24-hour window of MTurk's UniqueRequestToken.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

import pandas as pd
from botocore.exceptions import ClientError

from .errors import SafetyError
from .money import bonus_cost, format_dollars, parse_dollars
from .requester import run_pool
from .store import Store

DECISION_COLUMNS = ["assignment_id", "hit_id", "worker", "action", "reason", "feedback", "bonus", "block"]
DECISION_KIND = "review"
FINISHED_STATES = ("done",)
BONUS_REASON = "High-quality work, thank you"
_STATUS_AFTER = {"approve": "Approved", "reject": "Rejected"}


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


def _recorded_decisions(store: Store) -> pd.DataFrame:
    """Decisions recorded by earlier runs: one row per assignment, with its state."""
    actions = store.actions_frame()
    actions = actions[actions["kind"] == DECISION_KIND]
    if actions.empty:
        return pd.DataFrame(columns=[*DECISION_COLUMNS, "state"])
    rows = [{**{c: "" for c in DECISION_COLUMNS}, **json.loads(p), "state": s}
            for p, s in zip(actions["params"], actions["state"])]
    return pd.DataFrame(rows)[[*DECISION_COLUMNS, "state"]]


def plan_review(store: Store, policy, round_: int | None = None, endpoint: str | None = None) -> pd.DataFrame:
    """What `apply_review` will do: unfinished decisions of earlier runs (as recorded), then
    decisions for every submitted assignment not decided yet (one row each, with reasons).

    Signals use every rating; with `endpoint` (a label such as "local"), only that marketplace's
    assignments are decided, since the calls go there.
    """
    from .quality import decide

    recorded = _recorded_decisions(store)
    unfinished = recorded[~recorded["state"].isin(FINISHED_STATES)][DECISION_COLUMNS]
    ratings, assignments, gold = review_inputs(store, round_)
    if endpoint is not None:
        on_endpoint = {row["hit_id"] for row in store.hits(endpoint=endpoint)}
        unfinished = unfinished[unfinished["hit_id"].isin(on_endpoint)]
    else:
        on_endpoint = set(assignments["hit_id"])
    if ratings.empty:
        return unfinished.reset_index(drop=True)
    decisions = decide(ratings, assignments, gold, policy)
    status = assignments.set_index("assignment_id")["status"]
    pending = decisions["assignment_id"].map(status).eq("Submitted") & decisions["hit_id"].isin(on_endpoint)
    new = decisions[pending & ~decisions["assignment_id"].isin(recorded["assignment_id"])]
    frames = [f for f in (unfinished, new) if len(f)]
    if not frames:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[DECISION_COLUMNS]


def review_cost(decisions: pd.DataFrame) -> Decimal:
    """Bonuses plus MTurk's fees (rewards were paid for when the HITs were published)."""
    bonuses = [parse_dollars(b, "bonus") for b in decisions.get("bonus", []) if isinstance(b, str) and b]
    return sum((bonus_cost(b) for b in bonuses), Decimal("0"))


@dataclass(frozen=True)
class _Step:
    kind: str  # approve | reject | bonus | block | soft_block
    target: str
    params: dict

    @property
    def token(self) -> str:
        return action_token(self.kind, self.target)


def _steps(decision: dict) -> list[_Step]:
    assignment, worker = decision["assignment_id"], decision["worker"]
    steps = []
    if decision["action"] == "approve":
        steps.append(_Step("approve", assignment, {"assignment": assignment,
                                                    "feedback": (decision["feedback"] or "")[:1024] or "Thank you"}))
        if decision.get("bonus"):
            amount = format_dollars(parse_dollars(decision["bonus"], "bonus"))
            steps.append(_Step("bonus", assignment, {"assignment": assignment, "worker": worker, "amount": amount}))
    else:
        steps.append(_Step("reject", assignment, {"assignment": assignment,
                                                   "feedback": (decision["feedback"] or decision["reason"])[:1024]}))
    if decision.get("block") == "hard":
        steps.append(_Step("block", worker, {"worker": worker, "reason": (decision["reason"] or "quality")[:1024]}))
    elif decision.get("block") == "soft":
        steps.append(_Step("soft_block", worker, {"worker": worker}))
    return steps


class _Reviewer:
    """Applies recorded decisions through one client; thread-safe per assignment."""

    def __init__(self, store: Store, client, soft_block_name: str, endpoint: str):
        self.store, self.client, self.soft_block_name, self.endpoint = store, client, soft_block_name, endpoint
        self._soft_block_type: str | None = None

    def soft_block_type(self) -> str:
        if self._soft_block_type is None:
            self._soft_block_type = _soft_block_type(self.store, self.client, self.soft_block_name, self.endpoint)
        return self._soft_block_type

    def call(self, step: _Step, token: str) -> dict:
        c, p = self.client, step.params
        if step.kind == "approve":
            return c.approve_assignment(AssignmentId=p["assignment"], RequesterFeedback=p["feedback"])
        if step.kind == "reject":
            return c.reject_assignment(AssignmentId=p["assignment"], RequesterFeedback=p["feedback"])
        if step.kind == "bonus":
            return c.send_bonus(WorkerId=p["worker"], BonusAmount=p["amount"], AssignmentId=p["assignment"],
                                Reason=BONUS_REASON, UniqueRequestToken=token)
        if step.kind == "block":
            return c.create_worker_block(WorkerId=p["worker"], Reason=p["reason"])
        if step.kind == "soft_block":
            return c.associate_qualification_with_worker(QualificationTypeId=self.soft_block_type(),
                                                         WorkerId=p["worker"], IntegerValue=1, SendNotification=False)
        raise ValueError(f"unknown review step {step.kind!r}")

    def remote_outcome(self, step: _Step) -> tuple[str | None, str | None]:
        """For a call that may already have happened: ('done', status) if the marketplace shows its
        effect, ('moot', status) if it can no longer happen (say, auto-approved before a rejection),
        (None, status) if it should be made. `status` is the assignment's, for approve/reject."""
        if step.kind in _STATUS_AFTER:
            status = self.client.get_assignment(AssignmentId=step.params["assignment"])["Assignment"]["AssignmentStatus"]
            if status == _STATUS_AFTER[step.kind]:
                return "done", status
            return (None if status == "Submitted" else "moot"), status
        if step.kind == "bonus":
            paid = self.client.list_bonus_payments(AssignmentId=step.params["assignment"], MaxResults=100)
            return ("done" if paid.get("BonusPayments") else None), None
        return None, None  # blocks and qualification grants are idempotent: making them again is harmless

    def apply_step(self, step: _Step) -> str:
        """'applied', 'skipped' (done before), 'moot' (can no longer happen) or 'failed'."""
        token = step.token
        known_state = self.store.action_state(token)
        if known_state in FINISHED_STATES:
            recorded = self.store.action_result(token) or {}
            return "moot" if recorded.get("outcome") == "moot" else "skipped"
        if known_state is None:
            self.store.record_action_intent(token, step.kind, step.target, step.params)
        else:  # started by an earlier run, outcome unknown: look before calling again
            outcome, status = self.remote_outcome(step)
            if outcome is not None:
                return self._finish(step, outcome, status, {"note": f"{outcome} on the marketplace before this run"})
        try:
            result = self.call(step, token)
        except ClientError as exc:
            if not _is_request_error(exc):
                raise  # throttled or failing past the retry budget: stop; the intent stays for the re-run
            # Refused: perhaps because an attempt whose response was lost went through.
            outcome, status = self.remote_outcome(step)
            if outcome is None and step.kind == "bonus" and _is_duplicate(exc):
                outcome = "done"
            if outcome is not None:
                return self._finish(step, outcome, status, {"note": f"{outcome} on the marketplace", **_error(exc)})
            self.store.finish_action(token, "failed", _error(exc))
            return "failed"
        self._finish(step, "done", _STATUS_AFTER.get(step.kind),
                     {k: v for k, v in (result or {}).items() if k != "ResponseMetadata"})
        return "applied"

    def _finish(self, step: _Step, outcome: str, status: str | None, result: dict) -> str:
        # The assignment's status first: a crash between the two leaves the step open, and the
        # next run looks at the marketplace again, which is harmless; the other order could leave
        # a finished approval on an assignment the store still calls Submitted.
        if status is not None:
            self.store.set_assignment_status(step.params["assignment"], status)
        self.store.finish_action(step.token, "done", {**result, "outcome": outcome})
        return "skipped" if outcome == "done" else "moot"


def apply_review(
    store: Store,
    client,
    decisions: pd.DataFrame,
    soft_block_name: str = "mturk-tune-soft-block",
    progress: Callable[[int], None] | None = None,
    concurrency: int = 4,
    max_cost: str | None = None,
    endpoint: str = "",
) -> ReviewResult:
    """Record each decision, then make its calls; re-running after a crash finishes the rest.

    `max_cost` (dollars) is a hard cap on the bonuses with their fees, checked before any call.

    Counts: `applied` calls made now, `skipped` calls found done (by an earlier run, or on the
    marketplace) or moot, `failed` calls the marketplace refused (retried by the next run).
    """
    if max_cost is not None:
        cost, cap = review_cost(decisions), parse_dollars(max_cost, "max cost")
        if cost > cap:
            raise SafetyError(f"the review's bonuses would cost ${format_dollars(cost)} with MTurk fees, over the cap "
                              f"of ${format_dollars(cap)}: raise --max-cost or lower [quality] bonus_amount")
    reviewer = _Reviewer(store, client, soft_block_name, endpoint)
    if (decisions.get("block", pd.Series(dtype=object)) == "soft").any():
        reviewer.soft_block_type()  # made once, before the threads start

    def review_one(decision: dict) -> tuple[int, int, int]:
        decision_token = action_token(DECISION_KIND, decision["assignment_id"])
        if store.action_state(decision_token) in FINISHED_STATES:
            return 0, 1, 0
        store.record_action_intent(decision_token, DECISION_KIND, decision["assignment_id"], decision)
        counts = {"applied": 0, "skipped": 0, "moot": 0, "failed": 0}
        approved = False
        for step in _steps(decision):
            if step.kind == "bonus" and not approved:
                continue  # no bonus for an approval that did not (or cannot) go through; the next run retries
            outcome = reviewer.apply_step(step)
            counts[outcome] += 1
            if step.kind == "approve":
                approved = outcome in ("applied", "skipped")
        if not counts["failed"]:
            store.finish_action(decision_token, "done", counts)
        if progress:
            progress(1)
        return counts["applied"], counts["skipped"] + counts["moot"], counts["failed"]

    rows = [{c: ("" if pd.isna(v) else v) for c, v in zip(DECISION_COLUMNS, row)}
            for row in decisions[DECISION_COLUMNS].itertuples(index=False)]
    totals = run_pool(review_one, rows, concurrency)
    return ReviewResult(applied=sum(t[0] for t in totals), skipped=sum(t[1] for t in totals),
                        failed=sum(t[2] for t in totals))


def _is_request_error(exc: ClientError) -> bool:
    """The marketplace refused the call (HTTP 4xx other than throttling): retrying now will not help."""
    meta = exc.response.get("ResponseMetadata", {})
    if meta.get("MaxAttemptsReached") or meta.get("RetryQuotaReached"):
        return False
    status = int(meta.get("HTTPStatusCode", 400))
    return 400 <= status < 500 and exc.response.get("Error", {}).get("Code") != "ThrottlingException"


def _is_duplicate(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    code = str(exc.response.get("TurkErrorCode") or error.get("TurkErrorCode") or "")
    return "Duplicate" in code or "already" in str(error.get("Message", "")).lower()


def _error(exc: ClientError) -> dict:
    error = exc.response.get("Error", {})
    return {"code": error.get("Code"), "turk_error_code": exc.response.get("TurkErrorCode") or error.get("TurkErrorCode"),
            "message": error.get("Message")}


def _soft_block_type(store: Store, client, name: str, endpoint: str = "") -> str:
    """The soft-block qualification type of one marketplace, created once and remembered in the actions table."""
    token = action_token("qualification_type", f"{endpoint}\x1f{name}")
    known = store.action_result(token)
    if known:
        return known["QualificationTypeId"]
    started = store.action_state(token) is not None
    store.record_action_intent(token, "qualification_type", name, {"endpoint": endpoint})
    qual_id = _find_qualification_type(client, name) if started else None
    if qual_id is None:
        try:
            qual_id = client.create_qualification_type(
                Name=name, Description="Workers whose recent ratings did not meet the quality policy",
                QualificationTypeStatus="Active",
            )["QualificationType"]["QualificationTypeId"]
        except ClientError:
            qual_id = _find_qualification_type(client, name)  # made by an earlier, interrupted run
            if qual_id is None:
                raise
    store.finish_action(token, "done", {"QualificationTypeId": qual_id})
    return qual_id


def _find_qualification_type(client, name: str) -> str | None:
    pages = client.get_paginator("list_qualification_types").paginate(
        Query=name, MustBeRequestable=False, MustBeOwnedByCaller=True)
    for page in pages:
        for qual in page.get("QualificationTypes", []):
            if qual.get("Name") == name:
                return qual["QualificationTypeId"]
    return None


# ------------------------------------------------------------------------------------- extension


@dataclass(frozen=True)
class ExtensionPlan:
    hits: dict[str, int]  # HIT id -> its MaxAssignments now
    items: list[str]
    extra_per_hit: int
    cost: Decimal


def _unfinished_extensions(store: Store) -> dict[str, int]:
    """HIT id -> size before, for extensions an earlier run started and never heard back about
    (refused ones are not retried unless the scores ask for them again)."""
    actions = store.actions_frame()
    actions = actions[(actions["kind"] == "extend") & (actions["state"] == "intent")]
    return {target: int(json.loads(params)["from"]) for target, params in zip(actions["target"], actions["params"])}


def plan_extension(store: Store, method: str, threshold: float, max_extra_assignments: int,
                   round_: int | None = None, endpoint: str | None = None) -> ExtensionPlan:
    """HITs holding the least confident items, one more assignment each, within the budget.

    Extensions an earlier run started come first, whatever the scores say now. A HIT still
    waiting for answers it was given (more assignments than collected) is not extended again:
    the scores cannot have seen those answers yet.
    """
    from .money import hit_cost
    from .quality import extension_candidates

    hit_rows = {row["hit_id"]: row for row in store.hits(round_=round_, endpoint=endpoint)}
    collected = store.assignments_frame()["hit_id"].value_counts().to_dict()
    hits: dict[str, int] = {h: size for h, size in _unfinished_extensions(store).items() if h in hit_rows}
    tasks: list[str] = []
    scores = store.scores_frame(round_=round_, method=method)
    scores = scores[scores["kind"] == "generated"]
    if len(scores):
        item_hit = {item: hit_id for hit_id in hit_rows for item in store.items_of_hit(hit_id)}
        # Every uncertain item, least confident first: the budget counts assignments (one per HIT),
        # and several uncertain items can share a HIT.
        candidates = extension_candidates(scores[["task", "confidence", "n"]], threshold, len(scores))
        for task in candidates:
            hit_id = item_hit.get(task)
            if hit_id is None or hit_id in hits:
                continue
            current = int(hit_rows[hit_id]["max_assignments"])
            if current < 10 <= current + 1:  # MTurk refuses crossing from <10 to >=10 assignments
                continue
            if collected.get(hit_id, 0) < current:  # still waiting for answers already paid for
                continue
            if len(hits) >= max_extra_assignments:
                break
            hits[hit_id] = current
        tasks = [t for t in candidates if item_hit.get(t) in hits]
    cost = sum((hit_cost(parse_dollars(hit_rows[h]["reward"], "reward"), m + 1) / (m + 1) for h, m in hits.items()),
               Decimal("0"))
    return ExtensionPlan(hits=hits, items=tasks, extra_per_hit=1, cost=cost.quantize(Decimal("0.01")))


def apply_extension(store: Store, client, plan: ExtensionPlan) -> int:
    """CreateAdditionalAssignmentsForHIT once per HIT; the token names the HIT and its size before.

    An extension started by an earlier run is first checked on the marketplace (the HIT's
    MaxAssignments), so it is not bought twice even after the token's 24 hours.
    """
    done = 0
    for hit_id, current in plan.hits.items():
        token = action_token("extend", f"{hit_id}@{current}")
        state = store.action_state(token)
        if state in FINISHED_STATES:
            continue
        target = current + plan.extra_per_hit
        already = False
        if state is not None:
            already = int(client.get_hit(HITId=hit_id)["HIT"]["MaxAssignments"]) >= target
        else:
            store.record_action_intent(token, "extend", hit_id, {"from": current, "extra": plan.extra_per_hit})
        if not already:
            try:
                client.create_additional_assignments_for_hit(
                    HITId=hit_id, NumberOfAdditionalAssignments=plan.extra_per_hit, UniqueRequestToken=token)
            except ClientError as exc:
                if not (_is_request_error(exc) and _is_duplicate(exc)):
                    if _is_request_error(exc):
                        store.finish_action(token, "failed", _error(exc))
                    raise
        store.set_hit_max_assignments(hit_id, target)  # before the action is closed (see _Reviewer._finish)
        store.finish_action(token, "done", {"max_assignments": target})
        done += 1
    return done
