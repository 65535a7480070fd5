"""The prefix index file alone: longest match in time, exact prices, and a naive reference."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.rates.prefix_index import IndexFormatError, Period, open_index, write_index
from apps.rates.tariffs import Tariff

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def build(tmp_path, items, name="index.idx"):
    path = tmp_path / name
    write_index(path, items, version=1)
    return open_index(path)


def period(price, start=T0, end=None, destination="", **terms):
    return Period(Tariff(Decimal(price), **terms), start, end, destination)


def test_the_longest_prefix_wins(tmp_path):
    index = build(
        tmp_path,
        [
            ("4", [period("0.5", destination="Zone 4")]),
            ("44", [period("0.02", destination="United Kingdom")]),
            ("447", [period("0.08", destination="United Kingdom Mobile")]),
            ("4479", [period("0.09", destination="United Kingdom Mobile O2")]),
        ],
    )
    at = T0 + DAY
    assert index.lookup("447700900123", at).price == Decimal("0.08")
    assert index.destination("447700900123", at) == "United Kingdom Mobile"
    assert index.lookup("447912345678", at).price == Decimal("0.09")
    assert index.lookup("442071234567", at).price == Decimal("0.02")
    assert index.destination("4912345", at) == "Zone 4"
    assert index.match("4479", at).prefix == "4479"  # the whole number is a prefix


def test_a_number_without_any_prefix_is_a_miss(tmp_path):
    index = build(tmp_path, [("44", [period("0.02")]), ("1", [period("0.01")])])
    assert index.lookup("33123456", T0) is None
    assert index.match("", T0) is None
    assert index.destination("0044", T0) is None


def test_an_empty_index_answers_nothing(tmp_path):
    index = build(tmp_path, [])
    assert len(index) == 0
    assert index.lookup("441234", T0) is None


def test_prices_in_force_follow_their_periods(tmp_path):
    change = T0 + 10 * DAY
    index = build(
        tmp_path,
        [("49", [period("0.02", T0, change, "Germany"), period("0.03", change, None, "Germany new")])],
    )
    assert index.lookup("4930123", T0 - timedelta(microseconds=1)) is None  # before the first price
    assert index.lookup("4930123", T0).price == Decimal("0.02")
    assert index.lookup("4930123", change - timedelta(microseconds=1)).price == Decimal("0.02")
    assert index.lookup("4930123", change).price == Decimal("0.03")
    assert index.destination("4930123", change) == "Germany new"
    assert index.match("4930123", T0).effective_to == change


def test_a_future_price_is_loaded_ahead_and_applies_from_its_start(tmp_path):
    start = T0 + 30 * DAY
    index = build(tmp_path, [("33", [period("0.01")]), ("336", [period("0.07", start)])])
    assert index.lookup("33612345678", start - DAY).price == Decimal("0.01")
    assert index.lookup("33612345678", start).price == Decimal("0.07")


def test_a_closed_code_stops_matching_at_its_close_time(tmp_path):
    close = T0 + 5 * DAY
    index = build(tmp_path, [("7", [period("0.04")]), ("79", [period("0.06", T0, close)])])
    assert index.match("79161234567", close - timedelta(microseconds=1)).prefix == "79"
    # From the close on, the shorter code that is still open answers.
    assert index.match("79161234567", close).prefix == "7"
    assert index.lookup("79161234567", close).price == Decimal("0.04")


def test_decimal_amounts_and_terms_round_trip_exactly(tmp_path):
    price, fee = Decimal("123456789.000001"), Decimal("0.000001")
    index = build(
        tmp_path,
        [("1", [period(price, connection_fee=fee, min_seconds=30, increment_seconds=6, free_seconds=3)])],
    )
    tariff = index.lookup("1212", T0)
    assert tariff == Tariff(price, fee, 30, 6, 3)
    assert (tariff.price, tariff.connection_fee) == (price, fee)
    assert str(tariff.price) == "123456789.000001"


def test_amounts_finer_than_the_money_precision_are_refused(tmp_path):
    with pytest.raises(ValueError, match="6 decimals"):
        write_index(tmp_path / "x.idx", [("1", [period("0.0000001")])])
    assert not (tmp_path / "x.idx").exists()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([("+44", [period("1")])], "digits"),
        ([("44", [period("1")]), ("44", [period("2")])], "twice"),
        ([("44", [period("1", T0, T0)])], "ends"),
        ([("44", [Period(Tariff(Decimal(1)), datetime(2026, 1, 1))])], "aware"),
    ],
)
def test_bad_input_is_refused_and_leaves_no_file(tmp_path, items, message):
    with pytest.raises(ValueError, match=message):
        write_index(tmp_path / "x.idx", items)
    assert list(tmp_path.iterdir()) == []


def test_a_rebuild_replaces_the_file_whole(tmp_path):
    path = tmp_path / "index.idx"
    write_index(path, [("44", [period("0.01")])], version=1)
    old = open_index(path)

    def items():
        # While the new index is being written, the path still holds the complete old one.
        with open_index(path) as during:
            assert during.version == 1
            assert during.lookup("441", T0).price == Decimal("0.01")
        yield "44", [period("0.02")]

    write_index(path, items(), version=2)
    assert [p.name for p in tmp_path.iterdir()] == ["index.idx"]  # no temporary left behind
    assert open_index(path).lookup("441", T0).price == Decimal("0.02")
    # A process that had the old file mapped keeps its answers until it re-opens.
    assert old.lookup("441", T0).price == Decimal("0.01")


def test_a_truncated_file_is_not_opened(tmp_path):
    path = tmp_path / "index.idx"
    write_index(path, [("44", [period("0.01")])])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 8])
    with pytest.raises(IndexFormatError, match="header says"):
        open_index(path)
    path.write_bytes(b"")
    with pytest.raises(IndexFormatError):
        open_index(path)


# The reference: every prefix of the number, longest first, first period containing `at`,
# newest start first among overlapping ones, exactly as the index promises.
def reference(table: dict[str, list[Period]], number: str, at: datetime):
    for length in range(len(number), 0, -1):
        periods = table.get(number[:length], [])
        for candidate in sorted(periods, key=lambda p: p.effective_from, reverse=True):
            if candidate.effective_from <= at and (
                candidate.effective_to is None or at < candidate.effective_to
            ):
                return number[:length], candidate
    return None


digits = st.text(alphabet="0123", min_size=1, max_size=5)
offsets = st.integers(min_value=-3, max_value=6).map(lambda days: T0 + days * DAY)
periods = st.builds(
    lambda price, start, length, destination: Period(
        Tariff(Decimal(price).scaleb(-4), min_seconds=30, increment_seconds=6),
        start,
        None if length is None else start + length * DAY,
        destination,
    ),
    st.integers(min_value=0, max_value=30),
    offsets,
    st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
    st.sampled_from(["", "A", "Ärztezentrum", "B mobile"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.dictionaries(digits, st.lists(periods, min_size=1, max_size=3), max_size=25),
    numbers=st.lists(st.text(alphabet="01234", max_size=7), min_size=1, max_size=20),
    moments=st.lists(offsets, min_size=1, max_size=3),
)
def test_the_index_answers_like_a_naive_scan(tmp_path, table, numbers, moments):
    index = build(tmp_path, table.items())
    assert len(index) == len(table)
    for number in numbers:
        for at in moments:
            expected = reference(table, number, at)
            found = index.match(number, at)
            if expected is None:
                assert found is None
            else:
                prefix, applying = expected
                assert (found.prefix, found.tariff, found.destination) == (
                    prefix,
                    applying.tariff,
                    applying.destination,
                )
                assert (found.effective_from, found.effective_to) == (
                    applying.effective_from,
                    applying.effective_to,
                )
