"""Small helpers shared by several test modules."""

from __future__ import annotations


def all_pages(market, method: str, key: str, **args) -> list[dict]:
    """Every row of a paginated marketplace listing (ListHITs, ListAssignmentsForHIT, ...)."""
    rows, token = [], None
    while True:
        page = getattr(market, method)(**args, **({"NextToken": token} if token else {}), MaxResults=100)
        rows += page[key]
        token = page.get("NextToken")
        if not token:
            return rows
