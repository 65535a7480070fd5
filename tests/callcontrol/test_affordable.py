"""affordable_duration: the longest call some money pays for, by table and by property."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from apps.rates.tariffs import Tariff, affordable_duration, billable_seconds, rate_call, usage_cost


def cost(tariff: Tariff, seconds: int) -> Decimal:
    """What rating charges for a call of `seconds`."""
    return rate_call(tariff, seconds * 1000).total


def first_period_cost(tariff: Tariff) -> Decimal:
    """The charge of the first billable period: the minimum, or one increment, and the fee."""
    first = billable_seconds(1, minimum=tariff.min_seconds, increment=tariff.increment_seconds)
    return usage_cost(tariff.price, first) + tariff.connection_fee


@pytest.mark.parametrize(
    ("tariff", "available", "ceiling", "expected"),
    [
        # 1.00 at 0.60/min pays 100 s; per-minute billing grants one minute.
        (Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), "1.00", 7200, (60, "0.60")),
        (Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), "0.60", 7200, (60, "0.60")),
        (Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), "1.199999", 7200, (60, "0.60")),
        (Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), "1.20", 7200, (120, "1.20")),
        (Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), "0.599999", 7200, None),
        # 30/6: 30 s, then 6 s steps: 30 + 11 * 6 = 96 s for 0.96; 102 s would be 1.02.
        (Tariff(Decimal("0.60"), min_seconds=30, increment_seconds=6), "1.00", 7200, (96, "0.96")),
        (Tariff(Decimal("0.60"), min_seconds=30, increment_seconds=6), "0.29", 7200, None),
        # No minimum, 60 s steps: the first period is one increment.
        (Tariff(Decimal("0.60"), min_seconds=0, increment_seconds=60), "1.00", 7200, (60, "0.60")),
        (Tariff(Decimal("0.60"), min_seconds=0, increment_seconds=60), "0.59", 7200, None),
        # The connection fee is paid first, and alone it buys nothing.
        (Tariff(Decimal("0.60"), Decimal("0.10")), "1.00", 7200, (90, "1.00")),
        (Tariff(Decimal("0.60"), Decimal("0.10")), "0.10", 7200, None),
        (Tariff(Decimal("0.60"), Decimal("0.10")), "0.09", 7200, None),
        # Per second.
        (Tariff(Decimal("0.06")), "0.07", 7200, (70, "0.07")),
        (Tariff(Decimal("0.07")), "0.001166", 7200, None),  # one second costs 0.001167
        # Free of charge: as long as the ceiling allows, once the fee is paid.
        (Tariff(Decimal("0")), "0", 7200, (7200, "0")),
        (Tariff(Decimal("0"), Decimal("0.05")), "0.05", 3600, (3600, "0.05")),
        (Tariff(Decimal("0"), Decimal("0.05")), "0.049999", 3600, None),
        # The ceiling caps the grant; off the grid, the hold covers the billed time.
        (Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), "10", 100, (100, "1.20")),
        (Tariff(Decimal("0.60"), min_seconds=30, increment_seconds=6), "1.00", 20, (20, "0.30")),
        (Tariff(Decimal("0.0001")), "1000", 86400, (86400, "0.144")),
        # Free seconds do not lengthen the grant: a longer call is billed from its first second.
        (Tariff(Decimal("0.60"), free_seconds=5), "0.10", 7200, (10, "0.10")),
        # Nothing, or less than nothing.
        (Tariff(Decimal("0.60")), "0", 7200, None),
        (Tariff(Decimal("0.60")), "-5", 7200, None),
        (Tariff(Decimal("0")), "-0.000001", 7200, None),
    ],
)
def test_affordable_duration(tariff, available, ceiling, expected):
    granted = affordable_duration(tariff, Decimal(available), ceiling=ceiling)
    if expected is None:
        assert granted is None
    else:
        assert granted == (expected[0], Decimal(expected[1]))
        assert granted[1] == cost(tariff, granted[0])


def test_money_is_never_a_float():
    with pytest.raises(TypeError):
        affordable_duration(Tariff(Decimal("0.60")), 1.0, ceiling=60)


def test_money_equal_to_the_rated_charge_of_the_first_second_pays_for_it():
    tariff = Tariff(Decimal("0.08"))
    assert cost(tariff, 1) == Decimal("0.001333")
    assert affordable_duration(tariff, Decimal("0.001333"), ceiling=7200) == (1, Decimal("0.001333"))


# Prices, fees and money to 1/10,000: the exact price * seconds / 60 of such a tariff is
# never within half a micro-unit of an amount of money without being on it, so rating's
# rounding cannot move a charge across the money (see the xfail above for finer amounts).
prices = st.integers(min_value=0, max_value=50_000).map(lambda n: Decimal(n).scaleb(-4))
fees = st.one_of(
    st.just(Decimal(0)), st.integers(min_value=1, max_value=5_000).map(lambda n: Decimal(n).scaleb(-4))
)
amounts = st.integers(min_value=-10_000, max_value=2_000_000).map(lambda n: Decimal(n).scaleb(-4))
fine_amounts = st.integers(min_value=-10_000, max_value=200_000_000).map(lambda n: Decimal(n).scaleb(-6))
tariffs = st.builds(
    Tariff,
    price=prices,
    connection_fee=fees,
    min_seconds=st.integers(min_value=0, max_value=120),
    increment_seconds=st.integers(min_value=1, max_value=60),
    free_seconds=st.integers(min_value=0, max_value=30),
)
ceilings = st.integers(min_value=10, max_value=86_400)


@given(tariff=tariffs, available=amounts, ceiling=ceilings)
@example(
    tariff=Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60), available=Decimal("10"), ceiling=100
)
def test_a_grant_never_costs_more_than_the_money_nor_lasts_longer_than_the_ceiling(
    tariff, available, ceiling
):
    granted = affordable_duration(tariff, available, ceiling=ceiling)
    if granted is None:
        return
    seconds, amount = granted
    assert 1 <= seconds <= ceiling
    assert amount == cost(tariff, seconds) <= available
    # On the billing grid, unless cut by the ceiling.
    if seconds != ceiling and tariff.price and seconds != tariff.free_seconds:
        assert seconds >= tariff.min_seconds
        assert (seconds - tariff.min_seconds) % tariff.increment_seconds == 0


@given(tariff=tariffs, available=amounts, ceiling=ceilings)
@example(  # found by Hypothesis: 21 free seconds cost nothing though 20 paid ones are all it affords
    tariff=Tariff(price=Decimal("0.0003"), min_seconds=0, increment_seconds=1, free_seconds=21),
    available=Decimal("0.0001"),
    ceiling=21,
)
def test_one_more_increment_would_cost_more_than_the_money_unless_the_ceiling_cut_the_grant(
    tariff, available, ceiling
):
    granted = affordable_duration(tariff, available, ceiling=ceiling)
    if granted is None or granted[0] == ceiling:
        return
    seconds, _amount = granted
    assert tariff.price > 0  # a free call is always cut by the ceiling
    assert cost(tariff, seconds + tariff.increment_seconds) > available


@given(tariff=tariffs, available=fine_amounts, ceiling=ceilings)
def test_one_more_increment_at_its_exact_price_would_exceed_the_money(tariff, available, ceiling):
    granted = affordable_duration(tariff, available, ceiling=ceiling)
    if granted is None or granted[0] == ceiling:
        return
    longer = granted[0] + tariff.increment_seconds
    assert Fraction(tariff.price) * longer / 60 + Fraction(tariff.connection_fee) > Fraction(available)


@given(tariff=tariffs, available=amounts, ceiling=ceilings)
def test_no_grant_exactly_when_the_money_does_not_pay_the_first_billable_period(tariff, available, ceiling):
    granted = affordable_duration(tariff, available, ceiling=ceiling)
    assert (granted is None) == (available < first_period_cost(tariff))


@given(tariff=tariffs, available=amounts, more=amounts, ceiling=ceilings)
def test_more_money_never_buys_a_shorter_call(tariff, available, more, ceiling):
    richer = available + abs(more)
    less, most = (affordable_duration(tariff, a, ceiling=ceiling) for a in (available, richer))
    if less is not None:
        assert most is not None and most[0] >= less[0]


def test_a_grant_lasts_the_free_seconds_when_the_money_pays_for_less():
    tariff = Tariff(price=Decimal("0.0003"), min_seconds=0, increment_seconds=1, free_seconds=21)
    assert affordable_duration(tariff, Decimal("0.0001"), ceiling=7200) == (21, Decimal("0.000000"))
    assert affordable_duration(tariff, Decimal("0.0001"), ceiling=5) == (5, Decimal("0.000000"))
    assert affordable_duration(tariff, Decimal("0"), ceiling=7200) is None  # no money: no call at all
