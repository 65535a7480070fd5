"""Full lists and changes, history at the right dates, crash recovery, tenancy, chunking."""

from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.errors import NotAllowed
from apps.rates.models import PriceImport, Rate, StagedRate
from apps.rates.rows import RateRow
from apps.rates.services import activation, imports, versions
from apps.tenancy.scope import Scope
from tests.factories import make_rate_table
from tests.rates.import_helpers import at, deck, price_at, snapshot

DEC = at("2026-12-01T00:00:00")
JAN = at("2027-01-01T00:00:00")


@pytest.fixture
def table(db):
    return make_rate_table("Carrier Z buy", purpose="buy")


def load(table, *rows, mode="full", start=DEC, **options):
    report = activation.import_price_file(
        table, deck(*rows), actor=Scope.system(), mode=mode, effective_from=start, **options
    )
    assert report.ok, report.errors
    return report


def test_a_price_change_keeps_history_for_cdrs_before_it(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "4477,UK Mobile,0.0200,0,30,6,0,,")
    load(table, "44,UK,0.0150,0,30,6,0,,", "4477,UK Mobile,0.0200,0,30,6,0,,", start=JAN)
    assert price_at(table, "441234567", at("2026-12-15T10:00:00")) == Decimal("0.0100")
    assert price_at(table, "441234567", at("2027-01-02T10:00:00")) == Decimal("0.0150")
    assert price_at(table, "4477123456", at("2027-01-02T10:00:00")) == Decimal("0.0200")


def test_full_list_closes_absent_codes_at_its_start(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,")
    report = load(table, "44,UK,0.0100,0,30,6,0,,", start=JAN)
    assert report.diff["counts"]["closed"] == 1
    assert report.diff["counts"]["unchanged"] == 1
    assert price_at(table, "33123", at("2026-12-31T23:59:59")) == Decimal("0.0200")
    assert price_at(table, "33123", JAN) is None


def test_changes_only_touches_listed_codes(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,")
    report = load(table, "33,France,0.0180,0,30,6,0,,", mode="changes", start=JAN)
    assert report.diff["counts"]["decreased"] == 1 and report.diff["counts"]["closed"] == 0
    assert price_at(table, "44123", at("2027-02-01T00:00:00")) == Decimal("0.0100")
    assert price_at(table, "33123", at("2027-02-01T00:00:00")) == Decimal("0.0180")


def test_increase_sooner_than_the_notice_is_flagged(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", start=at("2026-01-01T00:00:00"))
    report = activation.import_price_file(
        table, deck("44,UK,0.0200,0,30,6,0,,"), actor=Scope.system(), mode="changes", dry_run=True
    )
    assert report.diff["counts"]["increased"] == 1
    assert report.notice["count"] == 1 and report.notice["samples"][0]["prefix"] == "44"


def test_margin_check_finds_sell_prices_below_the_new_buy_price(cast, table):
    activation.import_rows(
        cast.a.sell_table,
        [RateRow(prefix="44", price=Decimal("0.0150"))],
        mode="full",
        effective_from=DEC,
        actor=Scope.system(),
    )
    report = activation.import_price_file(
        table,
        deck("44,UK,0.0200,0,30,6,0,,"),
        actor=Scope.system(),
        mode="full",
        effective_from=JAN,
        dry_run=True,
    )
    assert report.margin["count"] == 1
    assert report.margin["samples"][0] == {
        "sell_table": "Retail A",
        "prefix": "44",
        "sell": "0.015",
        "buy": "0.02",
    }


def test_scheduled_rows_in_one_deck_take_over_at_their_date(table):
    load(table, "63918,PH Smart,0.1065,0,30,6,0,2026-12-01,", "63918,PH Smart,0.1170,0,30,6,0,2026-12-15,")
    assert price_at(table, "639181234", at("2026-12-10T00:00:00")) == Decimal("0.1065")
    assert price_at(table, "639181234", at("2026-12-20T00:00:00")) == Decimal("0.1170")


def test_reimporting_the_same_list_writes_nothing_new(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,")
    rows = Rate.objects.count()
    report = load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,", start=JAN)
    assert report.diff["counts"]["unchanged"] == 2
    assert Rate.objects.count() == rows


def test_activation_after_a_crash_cleans_up_and_finishes(table):
    load(table, *(f"44{n:02d},UK,0.0100,0,30,6,0,," for n in range(30)))
    before = snapshot(table)
    price_import = imports.stage_price_file(
        table,
        deck(*(f"44{n:02d},UK,0.0200,0,30,6,0,," for n in range(30))),
        actor=Scope.system(),
        mode="full",
        effective_from=JAN,
        chunk_size=10,
    )
    calls = {"n": 0}
    real = versions._activate_chunk

    def crash_on_second_chunk(params):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(params)

    with mock.patch.object(versions, "_activate_chunk", crash_on_second_chunk), pytest.raises(RuntimeError):
        activation.activate_price_import(price_import, actor=Scope.system(), chunk_size=10)
    table.refresh_from_db()
    assert snapshot(table) == before  # the first chunk is written but invisible
    assert Rate.objects.filter(table=table, version_from=table.live_version + 1).exists()
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.FAILED
    activation.activate_price_import(price_import, actor=Scope.system(), chunk_size=10, resume=True)
    assert price_at(table, "4401999", JAN) == Decimal("0.0200")
    assert price_at(table, "4401999", at("2026-12-31T00:00:00")) == Decimal("0.0100")
    assert Rate.objects.live().filter(table=table).count() == 60  # 30 closed copies + 30 new
    assert not StagedRate.objects.exists()


def test_activation_writes_in_bounded_chunks(table):
    price_import = imports.stage_price_file(
        table,
        deck(*(f"49{n:03d},DE,0.0100,0,30,6,0,," for n in range(35))),
        actor=Scope.system(),
        mode="changes",
        chunk_size=10,
    )
    with CaptureQueriesContext(connection) as queries:
        activation.activate_price_import(price_import, actor=Scope.system(), chunk_size=10)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT INTO rates_rate")]
    assert len(inserts) == 4  # 35 rows in chunks of 10, one transaction each
    switches = [
        q for q in queries.captured_queries if "live_version" in q["sql"] and q["sql"].startswith("UPDATE")
    ]
    assert len(switches) == 1


def test_reseller_imports_only_into_its_own_sell_tables(cast):
    staff = Scope.of_user(cast.a.staff)
    report = activation.import_rows(
        cast.a.sell_table,
        [RateRow(prefix="44", price=Decimal("0.02"))],
        mode="changes",
        effective_from=DEC,
        actor=staff,
    )
    assert report.ok and report.version == 1
    with pytest.raises(NotAllowed):
        activation.import_rows(
            cast.b.sell_table,
            [RateRow(prefix="44", price=Decimal("0.02"))],
            mode="changes",
            effective_from=DEC,
            actor=staff,
        )
    buy = cast.supplier.buy_rate_table
    with pytest.raises(NotAllowed):
        activation.import_price_file(buy, deck("44,UK,0.01,0,1,1,0,,"), actor=staff, mode="changes")
    assert not Rate.objects.filter(table__in=[cast.b.sell_table, buy]).exists()


def test_import_rows_reports_errors_with_row_numbers(table):
    report = activation.import_rows(
        table,
        [RateRow(prefix="44", price=Decimal("0.01")), RateRow(prefix="4x", price=Decimal("-1"), line=7)],
        mode="changes",
        effective_from=DEC,
        actor=Scope.system(),
    )
    assert not report.ok
    assert [e["message"] for e in report.errors] == [
        "line 7: prefix '4x' is not digits",
        "line 7: rate '-1' is negative",
    ]
    assert not Rate.objects.filter(table=table).exists()
