"""Pure rating math, by table and by property."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.rates.rating import Tariff, billable_seconds, call_cost, duration_seconds


@pytest.mark.parametrize(
    ("duration", "notation", "expected"),
    [
        (0, (1, 1, 0), 0),
        (1, (1, 1, 0), 1),
        (59, (60, 60, 0), 60),
        (61, (60, 60, 0), 120),
        (10, (30, 6, 0), 30),
        (30, (30, 6, 0), 30),
        (31, (30, 6, 0), 36),
        (37, (30, 6, 0), 42),
        (5, (30, 6, 5), 0),
        (6, (30, 6, 5), 30),
        (3600, (1, 1, 0), 3600),
    ],
)
def test_billable_seconds(duration, notation, expected):
    minimum, increment, free = notation
    assert billable_seconds(duration, minimum=minimum, increment=increment, free=free) == expected


@given(
    duration=st.integers(min_value=1, max_value=100_000),
    minimum=st.integers(min_value=0, max_value=120),
    increment=st.integers(min_value=1, max_value=60),
)
def test_billable_seconds_cover_the_call_and_respect_the_increment(duration, minimum, increment):
    billed = billable_seconds(duration, minimum=minimum, increment=increment)
    assert billed >= duration
    assert billed >= minimum
    assert (billed - minimum) % increment == 0
    assert billed - max(duration, minimum) < increment


def test_a_started_millisecond_counts_as_a_second():
    assert [duration_seconds(ms) for ms in (0, 1, 999, 1000, 1001)] == [0, 1, 1, 1, 2]


def test_call_cost_is_exact_decimal_money():
    tariff = Tariff(
        price=Decimal("0.0123"), connection_fee=Decimal("0.01"), min_seconds=30, increment_seconds=6
    )
    assert call_cost(tariff, 31_000) == (36, Decimal("0.017380"))
    assert call_cost(tariff, 0) == (0, Decimal("0"))
    free_start = Tariff(price=Decimal("1"), connection_fee=Decimal("0.5"), free_seconds=5)
    assert call_cost(free_start, 4_200) == (0, Decimal("0"))
    assert call_cost(free_start, 5_001) == (6, Decimal("0.600000"))
    with pytest.raises(TypeError):
        from apps.core.money import money

        money(0.1)


@pytest.mark.django_db
def test_add_rates_refuses_duplicates_before_writing_anything(system):
    from django.core.exceptions import ValidationError
    from django.utils import timezone

    from apps.rates.models import Rate
    from apps.rates.services import add_rates
    from tests.factories import make_rate_table

    table = make_rate_table("Dupes")
    start = timezone.now()

    def rate(prefix, price="0.01"):
        return Rate(prefix=prefix, destination="X", price=Decimal(price), effective_from=start)

    with pytest.raises(ValidationError, match=r"Rate #3 \(44\).*rate #1"):
        add_rates(table, [rate("44"), rate("33"), rate("44", "0.02")], actor=system)
    assert not Rate.objects.exists()
    assert add_rates(table, [rate("44")], actor=system) == 1
    with pytest.raises(ValidationError, match=r"Rate #2 \(44\): the table already has"):
        add_rates(table, [rate("49"), rate("44")], actor=system)
    with pytest.raises(ValidationError, match=r"Rate #1 \(4x\)"):
        add_rates(table, [rate("4x")], actor=system)
    assert Rate.objects.count() == 1
