"""Run the simulated crowd against a workspace's local marketplace."""

from __future__ import annotations

from typing import Callable

from .config import CrowdSection
from .errors import ConfigError
from .workspace import Workspace


def run_crowd(
    ws: Workspace,
    settings: CrowdSection,
    preference: str | Callable[[str], float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Every open HIT on the local marketplace gets answered; returns the assignments submitted.

    `preference` is the hidden true quality careful workers rate by: a spec such as "sentiment",
    "target_words:clean,kind" or "module:function" (see preferences.py), or a function of a text.
    Without one, the crowd section's own `preference` key is used when it has one, else "sentiment".
    """
    from .marketplace.crowd import SimulatedCrowd, make_crowd
    from .marketplace.local import open_marketplace
    from .preferences import DEFAULT_PREFERENCE, load_preference

    chosen = load_preference(preference or getattr(settings, "preference", None) or DEFAULT_PREFERENCE)
    market = open_marketplace(ws.marketplace_db)
    try:
        workers = make_crowd(settings.workers, dict(settings.mix), seed=settings.seed)
    except ValueError as exc:
        raise ConfigError(f"[crowd] mix: {exc}") from None
    try:
        return SimulatedCrowd(market, workers, preference=chosen, seed=settings.seed).work(progress=progress)
    finally:
        market.close()
