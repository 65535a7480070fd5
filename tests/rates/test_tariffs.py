"""Pure tariff math (apps.rates.tariffs), by table and by property."""

import ast
from decimal import ROUND_DOWN, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.core.money import MONEY_PLACES
from apps.rates import generation
from apps.rates import tariffs as tariff_math
from apps.rates.tariffs import (
    Tariff,
    billable_seconds,
    call_cost,
    duration_seconds,
    minor_units,
    rate_call,
    round_for_invoice,
    usage_cost,
)

MICRO = Decimal("0.000001")


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


# --- Charges: exact, one rounding, half up to the micro-unit -------------------------------------


@pytest.mark.parametrize(
    ("price", "fee", "notation", "duration_ms", "seconds", "cost"),
    [
        ("0.0123", "0.01", (30, 6, 0), 31_000, 36, "0.017380"),
        ("0.01", "0", (1, 1, 0), 7_000, 7, "0.001167"),  # 0.0011666... rounds up
        ("0.01", "0", (1, 1, 0), 1_000, 1, "0.000167"),
        ("0.0045", "0", (6, 6, 0), 6_000, 6, "0.000450"),  # survives to the ledger
        ("0.000003", "0", (1, 1, 0), 10_000, 10, "0.000001"),  # exactly half: up, not to even
        ("0.000015", "0", (1, 1, 0), 10_000, 10, "0.000003"),  # 0.0000025: up, not to even (2)
        ("0.000001", "0", (1, 1, 0), 1_000, 1, "0.000000"),  # under half a micro-unit
        ("1.5", "0.25", (60, 60, 0), 61_000, 120, "3.250000"),
        ("1.5", "0.25", (60, 60, 0), 60_000, 60, "1.750000"),
        ("1.5", "0.25", (60, 60, 0), 60_001, 120, "3.250000"),  # a started second counts
        ("0.2", "0.1", (0, 6, 0), 1, 6, "0.120000"),  # no minimum, still one increment
        ("0.2", "0.1", (30, 6, 10), 10_000, 0, "0"),  # within the free seconds: no fee either
        ("0.2", "0.1", (30, 6, 10), 10_001, 30, "0.200000"),  # billed from the first second
        ("0.2", "0.1", (30, 6, 0), 0, 0, "0"),  # unanswered
        ("123.456789", "0", (1, 1, 0), 3_600_000, 3600, "7407.407340"),
    ],
)
def test_call_cost_table(price, fee, notation, duration_ms, seconds, cost):
    minimum, increment, free = notation
    tariff = Tariff(Decimal(price), Decimal(fee), minimum, increment, free)
    assert call_cost(tariff, duration_ms) == (seconds, Decimal(cost))


prices = st.integers(min_value=0, max_value=50_000_000).map(lambda units: Decimal(units) * MICRO)
fees = st.integers(min_value=0, max_value=1_000_000).map(lambda units: Decimal(units) * MICRO)
tariffs = st.builds(
    Tariff,
    price=prices,
    connection_fee=fees,
    min_seconds=st.integers(min_value=0, max_value=120),
    increment_seconds=st.integers(min_value=1, max_value=60),
    free_seconds=st.integers(min_value=0, max_value=30),
)
durations_ms = st.integers(min_value=0, max_value=4 * 3600 * 1000)


def exact_usage(price: Decimal, seconds: int) -> Decimal:
    """The oracle: price in micro-units times seconds, over 60, half up, in integers only."""
    micro_seconds = int(price / MICRO) * seconds
    return Decimal((micro_seconds * 2 + 60) // 120) * MICRO


@given(tariff=tariffs, first=durations_ms, second=durations_ms)
def test_cost_never_decreases_when_the_call_is_longer(tariff, first, second):
    shorter, longer = sorted((first, second))
    assert call_cost(tariff, shorter)[1] <= call_cost(tariff, longer)[1]
    assert call_cost(tariff, shorter)[0] <= call_cost(tariff, longer)[0]


@given(tariff=tariffs, duration_ms=durations_ms)
def test_a_billed_call_covers_its_duration_the_minimum_and_whole_increments(tariff, duration_ms):
    seconds, cost = call_cost(tariff, duration_ms)
    if seconds == 0:
        assert duration_ms <= tariff.free_seconds * 1000
        assert cost == 0
        return
    assert seconds * 1000 >= duration_ms
    assert seconds >= duration_seconds(duration_ms)
    assert seconds >= tariff.min_seconds
    assert (seconds - tariff.min_seconds) % tariff.increment_seconds == 0
    assert seconds - max(duration_seconds(duration_ms), tariff.min_seconds) < tariff.increment_seconds
    floor = tariff.connection_fee + usage_cost(tariff.price, tariff.min_seconds)
    assert cost >= floor


@given(tariff=tariffs, duration_ms=durations_ms)
def test_calls_within_the_free_seconds_cost_nothing_and_longer_ones_are_billed(tariff, duration_ms):
    seconds, cost = call_cost(tariff, duration_ms)
    if 0 < duration_ms <= tariff.free_seconds * 1000 or duration_ms == 0:
        assert (seconds, cost) == (0, 0)
    else:
        assert seconds > 0
        assert cost >= tariff.connection_fee


@given(tariff=tariffs, duration_ms=durations_ms)
def test_the_connection_fee_is_charged_exactly_once_per_billed_call(tariff, duration_ms):
    charge = rate_call(tariff, duration_ms)
    without_fee = Tariff(
        tariff.price, Decimal(0), tariff.min_seconds, tariff.increment_seconds, tariff.free_seconds
    )
    difference = call_cost(tariff, duration_ms)[1] - call_cost(without_fee, duration_ms)[1]
    assert difference == (tariff.connection_fee if charge.seconds else 0)
    assert charge.total == charge.usage + charge.connection_fee


@given(tariff=tariffs, duration_ms=durations_ms)
def test_the_cost_is_the_exact_amount_rounded_once_half_up(tariff, duration_ms):
    seconds, cost = call_cost(tariff, duration_ms)
    assert isinstance(cost, Decimal)
    assert cost.as_tuple().exponent == -MONEY_PLACES
    if seconds:
        assert cost == tariff.connection_fee + exact_usage(tariff.price, seconds)
        exact = Fraction(tariff.connection_fee) + Fraction(tariff.price) * seconds / 60
        assert abs(Fraction(cost) - exact) <= Fraction(MICRO) / 2


@given(price=prices, minutes=st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_whole_minutes_add_up_exactly_to_the_price_per_minute(price, minutes):
    # The parts of a long call, priced a minute at a time, sum to the price of the whole.
    parts = sum((usage_cost(price, 60 * minute) for minute in minutes), Decimal(0))
    assert parts == usage_cost(price, 60 * sum(minutes)) == price * sum(minutes)


@given(price=prices, seconds=st.lists(st.integers(min_value=0, max_value=3600), min_size=1, max_size=8))
def test_parts_of_a_duration_differ_from_the_whole_by_their_roundings_only(price, seconds):
    parts = sum((usage_cost(price, part) for part in seconds), Decimal(0))
    whole = usage_cost(price, sum(seconds))
    # Each rounding moves by at most half a micro-unit, and the whole is rounded once.
    assert abs(parts - whole) <= MICRO * (len(seconds) + 1) / 2


@given(tariff=tariffs, duration_ms=durations_ms)
def test_the_started_second_is_what_counts(tariff, duration_ms):
    whole_seconds = -(-duration_ms // 1000)
    assert call_cost(tariff, duration_ms) == call_cost(tariff, whole_seconds * 1000)


def test_the_thread_decimal_context_does_not_change_a_charge():
    tariff = Tariff(Decimal("0.0123457"), Decimal("0.01"), 1, 1, 0)
    expected = call_cost(tariff, 7_000)
    with localcontext() as context:
        context.prec, context.rounding = 5, ROUND_DOWN
        assert call_cost(tariff, 7_000) == expected
    assert expected == (7, Decimal("0.011440"))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Tariff(price=0.01), TypeError),
        (lambda: Tariff(price=Decimal("0.01"), connection_fee=0.5), TypeError),
        (lambda: Tariff(price=Decimal("-0.01")), ValueError),
        (lambda: Tariff(price=Decimal("0.01"), connection_fee=Decimal("-1")), ValueError),
        (lambda: Tariff(price=Decimal("0.01"), increment_seconds=0), ValueError),
        (lambda: Tariff(price=Decimal("0.01"), min_seconds=-1), ValueError),
        (lambda: billable_seconds(10, minimum=0, increment=0), ValueError),
        (lambda: billable_seconds(10, minimum=0, increment=1, free=-1), ValueError),
        (lambda: usage_cost(0.01, 6), TypeError),
        (lambda: round_for_invoice(0.1, "USD"), TypeError),
    ],
)
def test_floats_negative_prices_and_impossible_notations_are_refused(make, error):
    with pytest.raises(error):
        make()


@pytest.mark.parametrize("module", [tariff_math, generation])
def test_tariffs_and_generation_never_touch_a_float(module):
    tree = ast.parse(Path(module.__file__).read_text())
    floats = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Constant) and isinstance(node.value, float))
        or (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "float")
    ]
    assert floats == []


# --- Invoices: the currency's minor unit, half up, on totals -----------------------------------


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        *[("USD", 2), ("EUR", 2), ("GBP", 2), ("XYZ", 2)],
        *[("JPY", 0), ("KRW", 0), ("XOF", 0), ("ISK", 0)],
        *[("BHD", 3), ("KWD", 3), ("TND", 3), ("OMR", 3), ("CLF", 4)],
    ],
)
def test_minor_units_follow_iso_4217(currency, places):
    assert minor_units(currency) == places


@pytest.mark.parametrize("currency", ["usd", "US", "EURO", "", None, 978])
def test_minor_units_refuse_what_is_not_a_currency_code(currency):
    with pytest.raises(ValueError, match="ISO 4217"):
        minor_units(currency)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.005", "USD", "1.01"),
        ("1.004999", "USD", "1.00"),
        ("0.000450", "EUR", "0.00"),
        ("0.450000", "EUR", "0.45"),
        ("123.5", "JPY", "124"),
        ("123.499999", "JPY", "123"),
        ("0.0005", "KWD", "0.001"),
        ("2.345649", "BHD", "2.346"),
        ("1.23455", "CLF", "1.2346"),
        ("-1.005", "USD", "-1.01"),  # a refund rounds like the charge it undoes
        (7, "USD", "7.00"),
    ],
)
def test_round_for_invoice_table(amount, currency, expected):
    rounded = round_for_invoice(amount, currency)
    assert rounded == Decimal(expected)
    assert rounded.as_tuple().exponent == -minor_units(currency)


def test_charges_are_kept_finer_than_any_invoice_rounds_them():
    # Two digits below the finest minor unit: a per-second charge of a cheap call
    # (0.0045/min over 6 s is 0.00045) is still there when the invoice adds it up.
    finest = max(minor_units(code) for code in ("USD", "JPY", "KWD", "CLF"))
    assert finest + 2 <= MONEY_PLACES
    thousand_calls = sum((call_cost(Tariff(Decimal("0.0045")), 6_000)[1] for _ in range(1000)), Decimal(0))
    assert round_for_invoice(thousand_calls, "USD") == Decimal("0.45")


@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12).map(lambda units: Decimal(units) * MICRO),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CLF"]),
)
def test_invoice_rounding_is_within_half_a_minor_unit_and_idempotent(amount, currency):
    rounded = round_for_invoice(amount, currency)
    unit = Decimal(1).scaleb(-minor_units(currency))
    assert abs(rounded - amount) <= unit / 2
    assert round_for_invoice(rounded, currency) == rounded
    if abs(rounded - amount) == unit / 2:
        assert abs(rounded) > abs(amount)  # half away from zero
