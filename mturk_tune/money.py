"""Dollar amounts and MTurk's fees, in Decimal (never floats).

MTurk charges 20% of each reward and bonus, another 20% of the reward on HITs with 10 or more
assignments, and at least $0.01 per assignment or bonus.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .errors import ConfigError

# The fee rules live with the marketplace, which charges them; estimates here use the same code.
# botocore does not check the amount format; MTurk rejects anything else.
from .marketplace.money import CURRENCY_PATTERN as DOLLARS_PATTERN
from .marketplace.money import assignment_fee_cents, bonus_fee_cents, parse_amount

CENT = Decimal("0.01")


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


def _cents(amount: Decimal) -> int:
    return parse_amount(format_dollars(amount))


def reward_fee(reward: Decimal, max_assignments: int) -> Decimal:
    """MTurk's fee on one assignment's reward."""
    return Decimal(assignment_fee_cents(_cents(reward), max_assignments)) / 100


def bonus_fee(amount: Decimal) -> Decimal:
    return Decimal(bonus_fee_cents(_cents(amount))) / 100


def hit_cost(reward: Decimal, max_assignments: int) -> Decimal:
    """What one HIT costs when every assignment is approved: rewards plus fees."""
    return max_assignments * (reward + reward_fee(reward, max_assignments))


def bonus_cost(amount: Decimal) -> Decimal:
    return amount + bonus_fee(amount)
