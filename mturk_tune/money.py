"""Dollar amounts and MTurk's fees, in Decimal (never floats).

MTurk charges 20% of each reward and bonus, another 20% of the reward on HITs with 10 or more
assignments, and at least $0.01 per assignment or bonus.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .errors import ConfigError

# botocore does not check this format; MTurk rejects anything else.
DOLLARS_PATTERN = re.compile(r"^[0-9]+(\.)?[0-9]{0,2}$")
CENT = Decimal("0.01")
BASE_FEE_RATE = Decimal("0.20")
LARGE_HIT_EXTRA_RATE = Decimal("0.20")
LARGE_HIT_ASSIGNMENTS = 10


def parse_dollars(text: str, where: str = "amount") -> Decimal:
    """'0.05' -> Decimal('0.05'); anything MTurk would reject raises ConfigError naming `where`."""
    if not isinstance(text, str) or not DOLLARS_PATTERN.match(text):
        raise ConfigError(f"{where} must be dollars like 0.05 (at most two decimals), got {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes this
        raise ConfigError(f"{where} must be dollars like 0.05, got {text!r}") from None


def format_dollars(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def reward_fee(reward: Decimal, max_assignments: int) -> Decimal:
    """MTurk's fee on one assignment's reward."""
    rate = BASE_FEE_RATE + (LARGE_HIT_EXTRA_RATE if max_assignments >= LARGE_HIT_ASSIGNMENTS else 0)
    return max((reward * rate).quantize(CENT, rounding=ROUND_HALF_UP), CENT)


def bonus_fee(amount: Decimal) -> Decimal:
    return max((amount * BASE_FEE_RATE).quantize(CENT, rounding=ROUND_HALF_UP), CENT)


def hit_cost(reward: Decimal, max_assignments: int) -> Decimal:
    """What one HIT costs when every assignment is approved: rewards plus fees."""
    return max_assignments * (reward + reward_fee(reward, max_assignments))


def bonus_cost(amount: Decimal) -> Decimal:
    return amount + bonus_fee(amount)
