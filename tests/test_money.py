from decimal import Decimal

import pytest

from mturk_tune.errors import ConfigError
from mturk_tune.money import bonus_cost, hit_cost, parse_dollars, reward_fee


@pytest.mark.parametrize("text", ["0.05", "1", "1.", "12.5", "0.10"])
def test_valid_amounts(text):
    assert parse_dollars(text) == Decimal(text)


@pytest.mark.parametrize("text", ["-1", "0.055", "1e2", "$1", "", " 1", "1.2.3"])
def test_amounts_mturk_would_reject(text):
    with pytest.raises(ConfigError):
        parse_dollars(text)


def test_fees_follow_mturk():
    assert reward_fee(Decimal("1.00"), 9) == Decimal("0.20")
    assert reward_fee(Decimal("1.00"), 10) == Decimal("0.40")  # +20% from 10 assignments
    assert reward_fee(Decimal("0.01"), 3) == Decimal("0.01")  # minimum one cent
    assert hit_cost(Decimal("0.05"), 3) == Decimal("0.18")  # 3 x (0.05 + 0.01)
    assert bonus_cost(Decimal("0.50")) == Decimal("0.60")
