"""Run the simulated crowd against a workspace's local marketplace."""

from __future__ import annotations

from typing import Callable

from .config import CrowdSection
from .workspace import Workspace


def run_crowd(
    ws: Workspace,
    settings: CrowdSection,
    preference: Callable[[str], float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Every open HIT on the local marketplace gets answered; returns the assignments submitted."""
    from .marketplace.crowd import SimulatedCrowd, make_crowd
    from .marketplace.local import open_marketplace

    market = open_marketplace(ws.marketplace_db)
    workers = make_crowd(settings.workers, dict(settings.mix), seed=settings.seed)
    crowd = SimulatedCrowd(market, workers, preference=preference, seed=settings.seed)
    return crowd.work(progress=progress)
