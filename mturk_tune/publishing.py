"""Publish a batch of items as HITs, at most once each.

Every HIT is first claimed in the store (its items and a deterministic UniqueRequestToken), then
created remotely, then marked created. A re-run after a crash finishes the claimed HITs: it looks
for them on the marketplace by their RequesterAnnotation (which holds the token) before creating
anything, so no HIT is created twice even after MTurk's 24-hour token window.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable, Sequence

from botocore.exceptions import ClientError

from .config import PublishSection
from .errors import ConfigError, SafetyError, WorkspaceError
from .hits import HitItem, html_question, render_hit_page
from .money import format_dollars, hit_cost, parse_dollars
from .requester import Endpoint, run_pool
from .store import Store

HIT_EXISTS_CODE = "AWS.MechanicalTurk.HitAlreadyExists"
_HIT_ID_IN_MESSAGE = re.compile(r'HIT with ID "([A-Za-z0-9]{1,64})"')


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


def hit_type_params(settings: PublishSection, store: Store | None = None, endpoint: Endpoint | None = None) -> dict:
    """CreateHITType parameters; identical parameters give the identical HIT type.

    Workers soft-blocked by review hold the workspace's soft-block qualification: HITs require it
    to be absent, so those workers can neither see nor accept them.
    """
    params = {
        "AutoApprovalDelayInSeconds": settings.auto_approval_delay,
        "AssignmentDurationInSeconds": settings.assignment_duration,
        "Reward": format_dollars(parse_dollars(settings.reward, "reward")),
        "Title": settings.title,
        "Keywords": settings.keywords,
        "Description": settings.description,
    }
    blocks = store.soft_block_qualifications(endpoint.label) if store is not None and endpoint is not None else []
    if blocks:
        params["QualificationRequirements"] = [
            {"QualificationTypeId": q, "Comparator": "DoesNotExist", "ActionsGuarded": "DiscoverPreviewAndAccept"}
            for q in blocks
        ]
    return params


def read_gold(path: Path) -> list[GoldItem]:
    """Gold items from JSONL: {"id": ..., "text": ..., "label": 1-5, "prompt": optional}.

    A label off the rating scale would make every honest worker look wrong (and be rejected), so
    each label must be a value the HIT form offers.
    """
    from .errors import InputFileError
    from .hits import LIKERT_SCALE

    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            f"{path}: gold file not found; pass JSONL lines like {{\"id\": \"g1\", \"text\": \"...\", \"label\": 5}}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not UTF-8; re-save the file as UTF-8") from None
    gold = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            gold.append(GoldItem(id=str(record["id"]), text=str(record["text"]), label=float(record["label"]),
                                 prompt=str(record.get("prompt", ""))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputFileError(f"{path}:{number}: expected {{\"id\", \"text\", \"label\"}} as JSON") from None
        if gold[-1].label not in LIKERT_SCALE:
            raise InputFileError(
                f"{path}:{number}: label {record['label']!r} is not on the rating scale {list(LIKERT_SCALE)}")
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
    # A missing template must stop the command before any HIT is claimed.
    render_hit_page([HitItem(id="check", text="check")], template=settings.template, title=settings.title)
    pending = [row["request_token"] for row in store.pending_hit_intents(endpoint.label) if row["batch_id"] == batch_id]
    items = [row["id"] for row in store.unpublished_items(batch_id) if row["kind"] != "gold"]
    if gold and settings.gold_rate > 0 and settings.items_per_hit < 2:
        raise ConfigError("gold items need at least 2 items per HIT (one gold, one to rate): raise --items-per-hit")
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
    """Create the planned HITs, each at most once. The CLI shows the plan and its cost before this.

    1. Every new HIT is claimed in one transaction (its items and token): a crash leaves all or none.
    2. HITs claimed by a crashed run are looked up on the marketplace by annotation first.
    3. The rest are created by `settings.concurrency` threads; each result is recorded in the store
       by one writer thread in group commits (a crash before the commit is recovered by step 2).
    """
    check_budget(plan, settings.max_cost)
    params = hit_type_params(settings, store, endpoint)
    hit_type_id = client.create_hit_type(**params)["HITTypeId"]
    store.record_hit_type(hit_type_id, endpoint.label, params)
    batch_round = store.batch_round(plan.batch_id)
    if plan.gold_rows:
        store.add_items(plan.batch_id, plan.gold_rows)

    recovered = recover_pending_hits(store, client, endpoint, plan.pending_tokens)
    new_tokens = [request_token(endpoint, plan.batch_id, item_ids) for item_ids in plan.new_hits]
    _claim_hits(store, [
        (token, plan.batch_id, batch_round, endpoint.label, hit_type_id, settings.assignments, params["Reward"], ids)
        for token, ids in zip(new_tokens, plan.new_hits)
    ])
    intents = {row["request_token"]: row for row in store.pending_hit_intents(endpoint.label)}
    todo = [t for t in [*plan.pending_tokens, *new_tokens] if t in intents]
    if progress and recovered:
        progress(len(recovered))

    with _CreatedWriter(store, progress) as writer:
        def create(token: str) -> None:
            writer.put(token, _create_hit(store, client, intents[token], settings))

        run_pool(create, todo, settings.concurrency)
    return PublishResult(
        batch_id=plan.batch_id,
        hit_type_id=hit_type_id,
        created=len(todo),
        recovered=len(recovered),
        cost=format_dollars(plan.cost),
    )


def _claim_hits(store: Store, intents: Sequence[tuple]) -> None:
    store.record_hit_intents(intents)


def _mark_created(store: Store, pairs: Sequence[tuple[str, str]]) -> None:
    store.mark_hits_created(pairs)


class _CreatedWriter:
    """Records created HITs from many threads in few transactions (group commit).

    Marking each HIT in its own transaction costs one fsync per HIT, done under the store's write
    lock: at a few ms each it would cap publishing near 300 HITs/s whatever the concurrency.
    """

    def __init__(self, store: Store, progress: Callable[[int], None] | None):
        self.store, self.progress = store, progress
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="publish-writer", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> "_CreatedWriter":
        self.thread.start()
        return self

    def put(self, token: str, hit_id: str) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((token, hit_id))

    def _run(self) -> None:
        try:
            self._drain()
        finally:
            self.store.close()  # this thread's own connection

    def _drain(self) -> None:
        stop = False
        while not stop:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            pairs = [p for p in batch if p is not None]
            if not pairs or self.error is not None:
                continue
            try:
                _mark_created(self.store, pairs)
            except BaseException as exc:  # raised again in the publishing threads and at exit
                self.error = exc
                continue
            if self.progress:
                self.progress(len(pairs))

    def __exit__(self, *exc_info: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


def _create_hit(store: Store, client, intent, settings: PublishSection) -> str:
    """CreateHITWithHITType for one claimed HIT; its HIT id (adopted when a lost response created it)."""
    token = intent["request_token"]
    item_ids = store.hit_item_ids(token)
    rows = store.items_by_id(item_ids)
    items = [HitItem(id=i, text=rows[i]["text"], prompt=rows[i]["prompt"]) for i in item_ids]
    page = render_hit_page(items, template=settings.template, title=settings.title)
    try:
        response = client.create_hit_with_hit_type(
            HITTypeId=intent["hit_type_id"],
            MaxAssignments=int(intent["max_assignments"]),
            LifetimeInSeconds=settings.lifetime,
            Question=html_question(page),
            RequesterAnnotation=token,
            UniqueRequestToken=token,
        )
        return response["HIT"]["HITId"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = str(error.get("Message", ""))
        if HIT_EXISTS_CODE not in (str(exc.response.get("TurkErrorCode", "")), str(error.get("TurkErrorCode", "")),
                                   message):
            raise
    # Created by an earlier attempt whose answer was lost (a retry meets the token): adopt that HIT.
    match = _HIT_ID_IN_MESSAGE.search(message)
    if match:
        return match.group(1)
    found = _find_by_annotation(client, {token})
    if token not in found:
        raise WorkspaceError(f"the marketplace says HIT {token} exists but neither names it nor lists it; re-run publish")
    return found[token]


def recover_pending_hits(store: Store, client, endpoint: Endpoint, tokens: Sequence[str] | None = None) -> set[str]:
    """HITs claimed by a crashed run that do exist remotely: found by annotation, marked created.

    Works after MTurk's 24-hour token window too: the annotation, not the token, identifies them.
    """
    if tokens is None:
        tokens = [row["request_token"] for row in store.pending_hit_intents(endpoint.label)]
    if not tokens:
        return set()
    found = _find_by_annotation(client, set(tokens))
    if found:
        _mark_created(store, list(found.items()))
    return set(found)


def _find_by_annotation(client, wanted: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in client.get_paginator("list_hits").paginate(PaginationConfig={"PageSize": 100}):
        for hit in page.get("HITs", []):
            token = hit.get("RequesterAnnotation")
            if token in wanted and token not in found:
                found[token] = hit["HITId"]
        if len(found) == len(wanted):
            break
    return found
