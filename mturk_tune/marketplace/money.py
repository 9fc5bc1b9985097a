"""Dollar amounts as MTurk writes them, and MTurk's fees, in whole cents (never floats).

Fees (MTurk pricing, 2015 onwards): 20% of the reward and of any bonus; HITs with 10 or more
assignments pay a further 20% of the reward; the minimum fee is $0.01 per assignment or bonus.
Fractions of a cent are rounded half up on the total fee of one assignment or bonus.
"""

from __future__ import annotations

import re
from decimal import Decimal

CURRENCY_PATTERN = re.compile(r"^[0-9]+(\.)?[0-9]{0,2}$")
MIN_FEE_CENTS = 1
BASE_FEE_PERCENT = 20
LARGE_HIT_EXTRA_FEE_PERCENT = 20
LARGE_HIT_ASSIGNMENTS = 10


def parse_amount(text: str) -> int:
    """'0.05' -> 5 cents. The caller has checked ``CURRENCY_PATTERN``."""
    return int((Decimal(text) * 100).to_integral_exact())


def format_amount(cents: int) -> str:
    """5 -> '0.05' (MTurk's CurrencyAmount form)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _percent_half_up(cents: int, percent: int) -> int:
    return (cents * percent + 50) // 100


def assignment_fee_cents(reward_cents: int, max_assignments: int) -> int:
    """MTurk's commission on one assignment of a HIT with ``max_assignments`` assignments."""
    percent = BASE_FEE_PERCENT
    if max_assignments >= LARGE_HIT_ASSIGNMENTS:
        percent += LARGE_HIT_EXTRA_FEE_PERCENT
    return max(MIN_FEE_CENTS, _percent_half_up(reward_cents, percent))


def bonus_fee_cents(bonus_cents: int) -> int:
    """MTurk's commission on one bonus payment."""
    return max(MIN_FEE_CENTS, _percent_half_up(bonus_cents, BASE_FEE_PERCENT))
