"""Sell price generation, by table and by property."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.rates.generation import (
    Rule,
    SkippedPrefix,
    Source,
    generate_sell_rates,
    rows_in_force,
    sell_price,
)
from apps.rates.rows import RateRow

D = Decimal


def row(prefix, price, destination="", fee="0", notation=(1, 1, 0)):
    minimum, increment, free = notation
    return RateRow(
        prefix=prefix,
        price=D(price),
        destination=destination,
        connection_fee=D(fee),
        min_seconds=minimum,
        increment_seconds=increment,
        free_seconds=free,
    )


# --- One price: margins and rounding ------------------------------------------------------------


@pytest.mark.parametrize(
    ("buy", "percent", "absolute", "minimum", "rounding", "expected"),
    [
        ("0.01", "10", None, None, 4, "0.0110"),
        ("0.01", "10", "0.002", None, 4, "0.0130"),  # percent and absolute add up
        ("0.01", None, "0.002", None, 4, "0.0120"),
        ("0.01", "10", None, "0.005", 4, "0.0150"),  # the floor wins
        ("0.01", "60", None, "0.005", 4, "0.0160"),  # the margin is above the floor
        ("0.01", "10", "0.001", "0.002", 4, "0.0120"),  # 0.012 either way
        ("0.012345", None, None, None, 4, "0.0124"),  # rounded up, never half-way down
        ("0.012341", None, None, None, 4, "0.0124"),
        ("0.012345", None, None, None, 6, "0.012345"),
        ("0.00001", None, None, None, 4, "0.0001"),
        ("0", "10", None, None, 4, "0"),  # a free destination stays free with percent alone
        ("0", "10", None, "0.001", 4, "0.0010"),
        ("0.1", "12.5", None, None, 4, "0.1125"),
        ("0.03", "33.333333", None, None, 5, "0.04000"),  # 0.03999999990 up
        ("1.2", None, None, None, 0, "2"),
        ("0.123456", "7", "0.0001", "0.01", 3, "0.134"),  # floor 0.133456 beats 0.132198
    ],
)
def test_sell_price_table(buy, percent, absolute, minimum, rounding, expected):
    def dec(value):
        return D(value) if value is not None else None

    price = sell_price(
        D(buy),
        margin_percent=dec(percent),
        margin_absolute=dec(absolute),
        minimum_margin=dec(minimum),
        rounding=rounding,
    )
    assert price == D(expected)
    assert price.as_tuple().exponent == -rounding


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rounding": 7}, ValueError),  # finer than the database keeps
        ({"rounding": -1}, ValueError),
        ({"margin_percent": D("-5")}, ValueError),
        ({"margin_absolute": D("-0.001")}, ValueError),
        ({"minimum_margin": D("-0.001")}, ValueError),
        ({"margin_percent": 10.0}, TypeError),
        ({"minimum_margin": "0.01"}, TypeError),
        ({"margin_absolute": D("NaN")}, ValueError),
    ],
)
def test_sell_price_refuses_bad_margins(options, error):
    with pytest.raises(error):
        sell_price(D("0.01"), **options)


margins = st.none() | st.integers(min_value=0, max_value=100_000).map(lambda units: D(units) / 10_000)
buy_prices = st.integers(min_value=0, max_value=10_000_000).map(lambda units: D(units) / 1_000_000)


@given(
    buy=buy_prices,
    percent=st.none() | st.integers(min_value=0, max_value=20_000).map(lambda units: D(units) / 100),
    absolute=margins,
    minimum=margins,
    rounding=st.integers(min_value=0, max_value=6),
)
def test_sell_price_is_the_documented_formula_rounded_up_never_below_the_floor(
    buy, percent, absolute, minimum, rounding
):
    price = sell_price(
        buy, margin_percent=percent, margin_absolute=absolute, minimum_margin=minimum, rounding=rounding
    )
    floor = Fraction(buy) + Fraction(minimum or 0)
    target = max(Fraction(buy) * (1 + Fraction(percent or 0) / 100) + Fraction(absolute or 0), floor)
    step = Fraction(1, 10**rounding)
    assert Fraction(price) >= floor
    assert Fraction(price) >= target
    assert Fraction(price) - target < step
    assert Fraction(price) % step == 0


@given(first=buy_prices, second=buy_prices, percent=margins, minimum=margins)
def test_a_dearer_buy_price_never_gives_a_cheaper_sell_price(first, second, percent, minimum):
    low, high = sorted((first, second))
    options = {"margin_percent": percent, "minimum_margin": minimum, "rounding": 4}
    assert sell_price(low, **options) <= sell_price(high, **options)


# --- A table from several suppliers ------------------------------------------------------------


SUPPLIERS = {
    "alpha": [
        row("44", "0.0100", "United Kingdom", notation=(1, 1, 0)),
        row("447", "0.0500", "United Kingdom Mobile", fee="0.01", notation=(30, 6, 0)),
        row("33", "0.0200", "France"),
    ],
    "beta": [
        row("44", "0.0090", "UK", fee="0.02", notation=(60, 60, 0)),
        row("447", "0.0400", "UK mobile", notation=(1, 1, 5)),
        row("49", "0.0300", "Germany"),
    ],
    "gamma": [
        row("447", "0.0450", "UK Mobile", fee="0.005", notation=(6, 6, 2)),
        row("33", "0.0180", "France fixed"),
    ],
}


def by_prefix(result):
    return {sell.prefix: sell for sell in result.rows}


def test_cheapest_takes_the_lowest_price_with_that_suppliers_terms():
    result = generate_sell_rates(SUPPLIERS, rule=Rule.CHEAPEST, margin_percent=D("10"))
    rows = by_prefix(result)
    assert list(rows) == ["33", "44", "447", "49"]
    assert rows["44"] == RateRow(
        prefix="44",
        price=D("0.0099"),
        destination="UK",
        connection_fee=D("0.02"),
        min_seconds=60,
        increment_seconds=60,
        free_seconds=0,
    )
    assert (rows["447"].price, rows["447"].destination) == (D("0.0440"), "UK mobile")
    assert (rows["447"].min_seconds, rows["447"].free_seconds) == (1, 5)
    assert (rows["33"].price, rows["33"].destination) == (D("0.0198"), "France fixed")
    assert result.sources["33"] == (Source("gamma", "33", D("0.0180")),)
    assert result.skipped == []


def test_cheapest_breaks_a_tie_on_the_lower_fee_then_the_name():
    tie = {
        "b": [row("1", "0.01", "b", fee="0")],
        "a": [row("1", "0.01", "a", fee="0.01")],
        "c": [row("1", "0.01", "c", fee="0")],
    }
    result = generate_sell_rates(tie, rule="cheapest")
    assert result.sources["1"][0].supplier == "b"
    assert result.rows[0].connection_fee == 0


def test_average_uses_the_n_cheapest_the_largest_fee_and_the_coarsest_billing():
    result = generate_sell_rates(
        SUPPLIERS, rule=Rule.AVERAGE_OF_N_CHEAPEST, n_cheapest=2, minimum_margin=D("0.001")
    )
    mobile = by_prefix(result)["447"]
    # beta 0.04 and gamma 0.045 (alpha's 0.05 is the third): mean 0.0425, +0.001 floor.
    assert mobile.price == D("0.0435")
    assert [source.supplier for source in result.sources["447"]] == ["beta", "gamma"]
    assert mobile.connection_fee == D("0.005")
    assert (mobile.min_seconds, mobile.increment_seconds, mobile.free_seconds) == (6, 6, 2)
    assert mobile.destination == "UK mobile"  # the cheapest of the two names it


def test_average_over_fewer_suppliers_than_n_uses_those_there_are():
    result = generate_sell_rates(SUPPLIERS, rule=Rule.AVERAGE_OF_N_CHEAPEST, n_cheapest=3)
    rows = by_prefix(result)
    assert rows["33"].price == D("0.0190")  # (0.018 + 0.020) / 2
    assert rows["49"].price == D("0.0300")  # beta alone
    assert rows["447"].price == D("0.0450")  # (0.04 + 0.045 + 0.05) / 3
    assert rows["447"].connection_fee == D("0.01")
    assert (rows["447"].min_seconds, rows["447"].increment_seconds, rows["447"].free_seconds) == (30, 6, 0)


def test_an_average_with_no_finite_decimal_is_still_rounded_up():
    thirds = {name: [row("1", price)] for name, price in (("a", "0.01"), ("b", "0.01"), ("c", "0.02"))}
    result = generate_sell_rates(thirds, rule=Rule.AVERAGE_OF_N_CHEAPEST, rounding=6)
    assert result.rows[0].price == D("0.013334")  # 0.0133333...


def test_named_supplier_ignores_the_others_and_reports_what_it_lacks():
    result = generate_sell_rates(
        SUPPLIERS, rule=Rule.NAMED_SUPPLIER, supplier="gamma", margin_absolute=D("0.005")
    )
    assert by_prefix(result) == {
        "33": row("33", "0.0230", "France fixed"),
        "447": row("447", "0.0500", "UK Mobile", fee="0.005", notation=(6, 6, 2)),
    }
    assert result.skipped == [
        SkippedPrefix("44", "supplier gamma has no price for it"),
        SkippedPrefix("49", "supplier gamma has no price for it"),
    ]
    cheaper_others = {name: rows for name, rows in SUPPLIERS.items() if name != "alpha"}
    cheaper_others["beta"] = [row(r.prefix, "0.000001") for r in SUPPLIERS["beta"]]
    again = generate_sell_rates(
        cheaper_others, rule=Rule.NAMED_SUPPLIER, supplier="gamma", margin_absolute=D("0.005")
    )
    assert again.rows == result.rows


def test_a_supplier_covers_a_longer_prefix_through_its_shorter_one():
    # delta has no 447 row: its 44 price is what it charges for UK mobiles too.
    decks = {
        "delta": [row("44", "0.0100", "United Kingdom")],
        "alpha": [row("447", "0.0500", "United Kingdom Mobile")],
    }
    result = generate_sell_rates(decks, rule=Rule.CHEAPEST)
    assert by_prefix(result)["447"] == row("447", "0.0100", "United Kingdom Mobile")
    assert result.sources["447"] == (Source("delta", "44", D("0.0100")),)
    named = generate_sell_rates(decks, rule=Rule.NAMED_SUPPLIER, supplier="delta")
    assert [(r.prefix, r.price) for r in named.rows] == [("44", D("0.0100")), ("447", D("0.0100"))]


def test_a_prefix_listed_twice_with_different_terms_is_skipped_not_guessed():
    decks = {
        "alpha": [row("44", "0.01"), row("44", "0.01"), row("33", "0.02"), row("33", "0.03")],
        "beta": [row("33", "0.05"), row("49", "0.04")],
    }
    result = generate_sell_rates(decks, rule=Rule.CHEAPEST)
    assert [r.prefix for r in result.rows] == ["44", "49"]  # an identical repeat is harmless
    assert result.skipped == [SkippedPrefix("33", "listed twice with different terms at alpha (33)")]
    named_beta = generate_sell_rates(decks, rule=Rule.NAMED_SUPPLIER, supplier="beta")
    assert [r.prefix for r in named_beta.rows] == ["33", "49"]  # alpha's doubt is not beta's


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rule": Rule.NAMED_SUPPLIER}, "needs a supplier"),
        ({"rule": Rule.NAMED_SUPPLIER, "supplier": "omega"}, "No rows were given"),
        ({"rule": Rule.CHEAPEST, "supplier": "alpha"}, "only named"),
        ({"rule": Rule.AVERAGE_OF_N_CHEAPEST, "n_cheapest": 0}, "at least one"),
        ({"rule": "dearest"}, "dearest"),
        ({"rule": Rule.CHEAPEST, "rounding": 8}, "decimals"),
    ],
)
def test_generation_refuses_options_that_make_no_sense(options, error):
    with pytest.raises(ValueError, match=error):
        generate_sell_rates(SUPPLIERS, **options)


def test_float_prices_in_supplier_rows_are_refused():
    with pytest.raises(TypeError, match="float"):
        generate_sell_rates({"a": [RateRow(prefix="1", price=0.01)]}, rule=Rule.CHEAPEST)


def test_only_rows_in_force_at_the_moment_are_kept():
    now = datetime(2025, 6, 1, tzinfo=UTC)
    day = timedelta(days=1)
    rows = [
        RateRow("1", D("0.01"), effective_from=now - 10 * day, effective_to=now),  # closed at now
        RateRow("1", D("0.02"), effective_from=now),  # starts at now
        RateRow("2", D("0.03"), effective_from=now + day),  # future
        RateRow("3", D("0.04")),  # not activated yet: takes the activation time
        RateRow("4", D("0.05"), effective_from=now - day, effective_to=now + day),
    ]
    assert [(r.prefix, r.price) for r in rows_in_force(rows, now)] == [
        ("1", D("0.02")),
        ("3", D("0.04")),
        ("4", D("0.05")),
    ]


# --- Properties over random decks --------------------------------------------------------------

PREFIXES = ["1", "12", "123", "1234", "44", "447", "4477", "49"]
deck_rows = st.builds(
    row,
    prefix=st.sampled_from(PREFIXES),
    price=st.integers(min_value=0, max_value=2_000_000).map(lambda units: str(D(units) / 1_000_000)),
    fee=st.integers(min_value=0, max_value=100).map(lambda units: str(D(units) / 1000)),
    notation=st.tuples(
        st.sampled_from([0, 1, 6, 30, 60]), st.sampled_from([1, 6, 60]), st.sampled_from([0, 5])
    ),
)
decks = st.dictionaries(
    st.sampled_from(["alpha", "beta", "gamma", "delta"]),
    # One row per prefix and supplier, as a table is at one moment.
    st.lists(deck_rows, max_size=len(PREFIXES), unique_by=lambda r: r.prefix),
    min_size=1,
)
options = st.fixed_dictionaries(
    {
        "margin_percent": margins,
        "margin_absolute": margins,
        "minimum_margin": margins,
        "rounding": st.integers(min_value=0, max_value=6),
    }
)


def offers(deck, prefix):
    """The oracle: each supplier's row for `prefix` by longest prefix, cheapest first."""
    found = []
    for name, rows in deck.items():
        matches = [r for r in rows if prefix.startswith(r.prefix)]
        if matches:
            found.append((name, max(matches, key=lambda r: len(r.prefix))))
    return sorted(found, key=lambda offer: (offer[1].price, offer[1].connection_fee, offer[0]))


@settings(max_examples=150)
@given(deck=decks, margin=options, n=st.integers(min_value=1, max_value=4), data=st.data())
def test_every_rule_prices_above_its_own_buy_price_plus_the_minimum_margin(deck, margin, n, data):
    rule = data.draw(st.sampled_from(list(Rule)))
    named = data.draw(st.sampled_from(sorted(deck))) if rule is Rule.NAMED_SUPPLIER else None
    result = generate_sell_rates(deck, rule=rule, n_cheapest=n, supplier=named, **margin)
    listed = {r.prefix for rows in deck.values() for r in rows}
    assert [r.prefix for r in result.rows] == sorted(r.prefix for r in result.rows)
    assert {r.prefix for r in result.rows} | {s.prefix for s in result.skipped} == listed
    assert not {r.prefix for r in result.rows} & {s.prefix for s in result.skipped}
    for sell in result.rows:
        candidates = offers(deck, sell.prefix)
        if rule is Rule.CHEAPEST:
            chosen = candidates[:1]
            assert chosen[0][1].price == min(r.price for _name, r in candidates)
        elif rule is Rule.AVERAGE_OF_N_CHEAPEST:
            chosen = candidates[:n]
        else:
            chosen = [offer for offer in candidates if offer[0] == named]
        assert [s.supplier for s in result.sources[sell.prefix]] == [name for name, _row in chosen]
        base = sum(Fraction(r.price) for _name, r in chosen) / len(chosen)
        floor = base + Fraction(margin["minimum_margin"] or 0)
        assert Fraction(sell.price) >= floor
        assert Fraction(sell.price) >= base
        assert sell.price.as_tuple().exponent >= -margin["rounding"]
        markup = 1 + Fraction(margin["margin_percent"] or 0) / 100
        target = max(base * markup + Fraction(margin["margin_absolute"] or 0), floor)
        assert 0 <= Fraction(sell.price) - target < Fraction(1, 10 ** margin["rounding"])
        rows = [r for _name, r in chosen]
        assert sell.connection_fee == max(r.connection_fee for r in rows)
        assert sell.min_seconds == max(r.min_seconds for r in rows)
        assert sell.increment_seconds == max(r.increment_seconds for r in rows)
        assert sell.free_seconds == min(r.free_seconds for r in rows)
    for skipped in result.skipped:
        assert rule is Rule.NAMED_SUPPLIER
        assert not [offer for offer in offers(deck, skipped.prefix) if offer[0] == named]


@given(deck=decks, margin=options, data=st.data())
def test_named_supplier_output_does_not_depend_on_the_other_suppliers_prices(deck, margin, data):
    named = data.draw(st.sampled_from(sorted(deck)))
    repriced = {
        name: rows if name == named else [row(r.prefix, str(r.price * 3 + D("0.5"))) for r in rows]
        for name, rows in deck.items()
    }
    first = generate_sell_rates(deck, rule=Rule.NAMED_SUPPLIER, supplier=named, **margin)
    second = generate_sell_rates(repriced, rule=Rule.NAMED_SUPPLIER, supplier=named, **margin)
    prices = [(r.prefix, r.price, r.connection_fee, r.min_seconds) for r in first.rows]
    assert prices == [(r.prefix, r.price, r.connection_fee, r.min_seconds) for r in second.rows]


@given(deck=decks, margin=options)
def test_cheapest_is_never_dearer_than_the_average_or_any_named_supplier(deck, margin):
    cheapest = by_prefix(generate_sell_rates(deck, rule=Rule.CHEAPEST, **margin))
    average = by_prefix(generate_sell_rates(deck, rule=Rule.AVERAGE_OF_N_CHEAPEST, **margin))
    assert cheapest.keys() == average.keys()
    for prefix, sell in cheapest.items():
        assert sell.price <= average[prefix].price
    for name in deck:
        for sell in generate_sell_rates(deck, rule=Rule.NAMED_SUPPLIER, supplier=name, **margin).rows:
            assert cheapest[sell.prefix].price <= sell.price


def test_rounding_up_matters_where_half_up_would_cross_the_floor():
    # 0.01234 + 0.0001 minimum = 0.01244: to four places half up is 0.0124, below the floor.
    result = generate_sell_rates(
        {"a": [row("1", "0.01234")]}, rule=Rule.CHEAPEST, minimum_margin=D("0.0001"), rounding=4
    )
    assert result.rows[0].price == D("0.0125")
