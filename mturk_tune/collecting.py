"""Collect every assignment of every published HIT, keeping each answer exactly once.

Order matters for "never lose an answer": the raw Answer XML is committed to the store first,
then parsed. A malformed answer is kept with its parse error (the worker may still deserve pay);
an answer stored by a run that crashed before parsing is parsed on the next run. HITs that a
crashed `publish` created but never recorded are found first (by annotation), so their answers
are collected too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import AnswerParseError
from .hits import parse_answer
from .publishing import recover_pending_hits
from .requester import Endpoint, run_pool
from .store import Store

ASSIGNMENT_STATUSES = ["Submitted", "Approved", "Rejected"]


@dataclass(frozen=True)
class CollectResult:
    hits: int
    new_assignments: int
    new_ratings: int
    parse_errors: int


def collect(
    store: Store,
    client,
    endpoint: Endpoint,
    round_: int | None = None,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
) -> CollectResult:
    recover_pending_hits(store, client, endpoint)
    hits = store.hits(round_=round_, endpoint=endpoint.label)
    known = store.known_assignment_ids()
    totals = {"assignments": 0, "ratings": 0, "errors": 0}
    retried = _parse_unparsed(store)
    totals["ratings"] += retried[0]
    totals["errors"] += retried[1]

    def collect_hit(hit_id: str) -> tuple[int, int, int]:
        new = ratings = errors = 0
        item_ids = store.items_of_hit(hit_id)
        paginator = client.get_paginator("list_assignments_for_hit")
        for page in paginator.paginate(
            HITId=hit_id, AssignmentStatuses=ASSIGNMENT_STATUSES, PaginationConfig={"PageSize": 100}
        ):
            for assignment in page.get("Assignments", []):
                if assignment["AssignmentId"] in known:
                    continue
                if not store.save_raw_assignment(assignment):
                    continue
                new += 1
                stored, failed = _parse_and_store(store, assignment, item_ids)
                ratings += stored
                errors += failed
        if progress:
            progress(1)
        return new, ratings, errors

    hit_ids = [row["hit_id"] for row in hits]
    for new, ratings, errors in run_pool(collect_hit, hit_ids, concurrency):
        totals["assignments"] += new
        totals["ratings"] += ratings
        totals["errors"] += errors
    return CollectResult(
        hits=len(hit_ids),
        new_assignments=totals["assignments"],
        new_ratings=totals["ratings"],
        parse_errors=totals["errors"],
    )


def _parse_and_store(store: Store, assignment: dict, item_ids: list[str]) -> tuple[int, int]:
    try:
        parsed = parse_answer(assignment.get("Answer", ""), item_ids)
    except AnswerParseError as exc:
        store.mark_parse_error(assignment["AssignmentId"], str(exc))
        return 0, 1
    store.save_ratings(assignment["AssignmentId"], assignment["WorkerId"], parsed.ratings)
    return len(parsed.ratings), 0


def _parse_unparsed(store: Store) -> tuple[int, int]:
    """Answers stored raw by a run that stopped before parsing them."""
    ratings = errors = 0
    for row in store.unparsed_assignments():
        stored, failed = _parse_and_store(
            store,
            {"AssignmentId": row["assignment_id"], "WorkerId": row["worker_id"], "Answer": row["answer_xml"]},
            store.items_of_hit(row["hit_id"]),
        )
        ratings += stored
        errors += failed
    return ratings, errors
