"""Publish a batch of items as HITs, at most once each.

Every HIT is first claimed in the store (its items and a deterministic UniqueRequestToken), then
created remotely, then marked created. A re-run after a crash finishes the claimed HITs: it looks
for them on the marketplace by their RequesterAnnotation (which holds the token) before creating
anything, so no HIT is created twice even after MTurk's 24-hour token window.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable, Sequence

from botocore.exceptions import ClientError

from .config import PublishSection
from .errors import SafetyError, WorkspaceError
from .hits import HitItem, html_question, render_hit_page
from .money import format_dollars, hit_cost, parse_dollars
from .requester import Endpoint
from .store import Store

HIT_EXISTS_CODE = "AWS.MechanicalTurk.HitAlreadyExists"
_HIT_ID_IN_MESSAGE = re.compile(r"\b([A-Z0-9]{20,40})\b")


@dataclass(frozen=True)
class GoldItem:
    """A control item with a known rating, mixed into HITs to measure each worker's accuracy."""

    id: str
    text: str
    label: float
    prompt: str = ""


@dataclass(frozen=True)
class PublishPlan:
    batch_id: str
    new_hits: list[list[str]]  # item ids of each HIT still to create (gold placements included)
    gold_rows: list[dict]  # gold placements to add to the batch before the HITs are claimed
    pending_tokens: list[str]  # HITs claimed by an earlier run that did not finish
    reward: Decimal
    assignments: int

    @property
    def hit_count(self) -> int:
        return len(self.new_hits) + len(self.pending_tokens)

    @property
    def cost(self) -> Decimal:
        return self.hit_count * hit_cost(self.reward, self.assignments)


@dataclass(frozen=True)
class PublishResult:
    batch_id: str
    hit_type_id: str
    created: int
    recovered: int
    cost: str


def request_token(endpoint: Endpoint, batch_id: str, item_ids: Sequence[str]) -> str:
    """Deterministic per (endpoint, items): the same HIT always gets the same token (<= 64 chars)."""
    digest = hashlib.sha256("\x1f".join([endpoint.label, batch_id, *item_ids]).encode()).hexdigest()
    return f"mtt-{digest[:40]}"


def hit_type_params(settings: PublishSection) -> dict:
    return {
        "AutoApprovalDelayInSeconds": settings.auto_approval_delay,
        "AssignmentDurationInSeconds": settings.assignment_duration,
        "Reward": format_dollars(parse_dollars(settings.reward, "reward")),
        "Title": settings.title,
        "Keywords": settings.keywords,
        "Description": settings.description,
    }


def read_gold(path: Path) -> list[GoldItem]:
    """Gold items from JSONL: {"id": ..., "text": ..., "label": 1-5, "prompt": optional}."""
    from .errors import InputFileError

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: gold file not found; pass JSONL lines like {{\"id\": \"g1\", \"text\": \"...\", \"label\": 5}}")
    gold = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            gold.append(GoldItem(id=str(record["id"]), text=str(record["text"]), label=float(record["label"]),
                                 prompt=str(record.get("prompt", ""))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputFileError(f"{path}:{number}: expected {{\"id\", \"text\", \"label\"}} as JSON") from None
    if not gold:
        raise InputFileError(f"{path}: no gold items")
    return gold


def _place_gold(batch_id: str, chunks: list[list[str]], gold: Sequence[GoldItem], per_hit: int) -> tuple[list[list[str]], list[dict]]:
    """Add `per_hit` gold placements to each HIT at deterministic positions.

    Each placement is its own item row (one item, one HIT), with an id derived from the HIT's
    first item, so planning again after a crash gives the same placements.
    """
    rows, out = [], []
    for chunk in chunks:
        seed = int(hashlib.sha256(chunk[0].encode()).hexdigest()[:8], 16)
        rng = random.Random(seed)
        picks = rng.sample(list(gold), k=min(per_hit, len(gold)))
        ids = list(chunk)
        for g in picks:
            placement = "g" + hashlib.sha256(f"{batch_id}\x1f{chunk[0]}\x1f{g.id}".encode()).hexdigest()[:15]
            rows.append({"id": placement, "kind": "gold", "prompt_id": g.id, "prompt": g.prompt, "text": g.text,
                         "model": "gold", "gold_label": g.label})
            ids.insert(rng.randint(0, len(ids)), placement)
        out.append(ids)
    return out, rows


def plan_publish(
    store: Store, endpoint: Endpoint, settings: PublishSection, batch_id: str | None = None,
    gold: Sequence[GoldItem] | None = None,
) -> PublishPlan:
    batch_id = batch_id or store.latest_batch()
    if batch_id is None:
        raise WorkspaceError("nothing to publish: run 'mturk-tune generate' first")
    store.batch_round(batch_id)  # raises a clear error for an unknown batch
    pending = [row["request_token"] for row in store.pending_hit_intents(endpoint.label) if row["batch_id"] == batch_id]
    items = [row["id"] for row in store.unpublished_items(batch_id) if row["kind"] != "gold"]
    gold_per_hit = round(settings.items_per_hit * settings.gold_rate) if gold else 0
    if gold and settings.gold_rate > 0:
        gold_per_hit = max(1, min(gold_per_hit, settings.items_per_hit - 1))
    size = settings.items_per_hit - gold_per_hit
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    gold_rows: list[dict] = []
    if gold_per_hit and chunks:
        chunks, gold_rows = _place_gold(batch_id, chunks, gold, gold_per_hit)
    return PublishPlan(
        batch_id=batch_id,
        new_hits=chunks,
        gold_rows=gold_rows,
        pending_tokens=pending,
        reward=parse_dollars(settings.reward, "reward"),
        assignments=settings.assignments,
    )


def check_budget(plan: PublishPlan, max_cost: str) -> None:
    cap = parse_dollars(max_cost, "max cost")
    if plan.cost > cap:
        raise SafetyError(
            f"publishing {plan.hit_count} HITs would cost ${format_dollars(plan.cost)} (rewards plus MTurk fees), "
            f"over the cap of ${format_dollars(cap)}: raise --max-cost or publish fewer items"
        )


def publish(
    store: Store,
    client,
    endpoint: Endpoint,
    settings: PublishSection,
    plan: PublishPlan,
    progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Create the planned HITs. Call `check_budget` first; the CLI shows the plan before this."""
    check_budget(plan, settings.max_cost)
    params = hit_type_params(settings)
    hit_type_id = client.create_hit_type(**params)["HITTypeId"]
    store.record_hit_type(hit_type_id, endpoint.label, params)
    batch_round = store.batch_round(plan.batch_id)
    if plan.gold_rows:
        store.add_items(plan.batch_id, plan.gold_rows)

    recovered = _recover_pending(store, client, plan.pending_tokens)
    todo = [t for t in plan.pending_tokens if t not in recovered]
    for item_ids in plan.new_hits:
        token = request_token(endpoint, plan.batch_id, item_ids)
        store.record_hit_intent(
            token, plan.batch_id, batch_round, endpoint.label, hit_type_id,
            settings.assignments, params["Reward"], item_ids,
        )
        todo.append(token)
    if progress and recovered:
        progress(len(recovered))

    def create(token: str) -> None:
        _create_hit(store, client, token, hit_type_id, settings)
        if progress:
            progress(1)

    workers = max(1, settings.concurrency)
    if workers == 1 or len(todo) <= 1:
        for token in todo:
            create(token)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list() re-raises the first failure after the others finished or failed.
            list(pool.map(create, todo))
    return PublishResult(
        batch_id=plan.batch_id,
        hit_type_id=hit_type_id,
        created=len(todo),
        recovered=len(recovered),
        cost=format_dollars(plan.cost),
    )


def _create_hit(store: Store, client, token: str, hit_type_id: str, settings: PublishSection) -> None:
    item_ids = store.hit_item_ids(token)
    rows = store.items_by_id(item_ids)
    items = [HitItem(id=i, text=rows[i]["text"], prompt=rows[i]["prompt"]) for i in item_ids]
    page = render_hit_page(items, template=settings.template, title=settings.title)
    try:
        response = client.create_hit_with_hit_type(
            HITTypeId=hit_type_id,
            MaxAssignments=settings.assignments,
            LifetimeInSeconds=settings.lifetime,
            Question=html_question(page),
            RequesterAnnotation=token,
            UniqueRequestToken=token,
        )
        hit_id = response["HIT"]["HITId"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("TurkErrorCode") != HIT_EXISTS_CODE and HIT_EXISTS_CODE not in str(error.get("Message", "")):
            raise
        # Created by an earlier attempt whose answer was lost: adopt the existing HIT.
        match = _HIT_ID_IN_MESSAGE.search(str(error.get("Message", "")))
        if not match:
            raise
        hit_id = match.group(1)
    store.mark_hit_created(token, hit_id)


def _recover_pending(store: Store, client, tokens: Sequence[str]) -> set[str]:
    """HITs claimed by a crashed run that do exist remotely: found by annotation, marked created."""
    if not tokens:
        return set()
    wanted = set(tokens)
    found: set[str] = set()
    for page in client.get_paginator("list_hits").paginate(PaginationConfig={"PageSize": 100}):
        for hit in page.get("HITs", []):
            token = hit.get("RequesterAnnotation")
            if token in wanted and token not in found:
                store.mark_hit_created(token, hit["HITId"])
                found.add(token)
        if found == wanted:
            break
    return found
