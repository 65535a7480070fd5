"""The diff of a staged list against the live version: fast join, exact fallback, reuse at activation."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from apps.rates.models import PriceImport, Rate, RateTable, StagedRate
from apps.rates.services import activation, imports, pipeline
from apps.tenancy.scope import Scope
from tests.factories import make_rate_table
from tests.rates.import_helpers import at, deck, price_at

DEC = at("2026-12-01T00:00:00")
JAN = at("2027-01-01T00:00:00")


@pytest.fixture
def table(db):
    return make_rate_table("Carrier D buy", purpose="buy")


def load(table, *rows, mode="full", start=DEC):
    report = activation.import_price_file(
        table, deck(*rows), actor=Scope.system(), mode=mode, effective_from=start
    )
    assert report.ok, report.errors
    return report


def stage(table, *rows, mode="full", start=None) -> PriceImport:
    price_import = imports.stage_price_file(
        table, deck(*rows), actor=Scope.system(), mode=mode, effective_from=start
    )
    assert price_import.state == PriceImport.State.STAGED, price_import.report
    return price_import


def diff_columns(price_import) -> list[tuple]:
    return list(
        StagedRate.objects.filter(price_import=price_import)
        .order_by("line")
        .values_list("prefix", "current_id", "superseded", "unchanged")
    )


def both_ways(price_import, start) -> tuple[list, list]:
    """The staged diff as the fast join finds it and as the exact correlated lookups do."""
    version = RateTable.objects.get(pk=price_import.table_id).live_version
    pipeline.compare(price_import, version=version, start=start, chunk_size=2)
    fast = diff_columns(price_import)
    with mock.patch.object(pipeline, "_fast_sql", return_value=None):
        pipeline.compare(price_import, version=version, start=start, chunk_size=2)
    return fast, diff_columns(price_import)


def test_fast_join_and_exact_lookups_agree(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,", "49,DE,0.0300,0,30,6,0,,")
    load(table, "44,UK,0.0150,0,30,6,0,,", mode="changes", start=JAN)  # history + an open row
    price_import = stage(
        table,
        "44,UK,0.0150,0,30,6,0,,",  # unchanged against the open row
        "33,France,0.0250,0,30,6,0,,",  # increased
        "49,DE,0.0300,0,1,1,0,,",  # terms changed
        "39,Italy,0.0400,0,30,6,0,,",  # new
        start=at("2027-02-01T00:00:00"),
    )
    table.refresh_from_db()
    assert pipeline._single_candidates(
        {"t": table.pk, "v": table.live_version, "e": "2027-02-01 00:00:00", "i": price_import.pk}
    )
    fast, exact = both_ways(price_import, at("2027-02-01T00:00:00"))
    assert fast == exact
    assert [(prefix, bool(current), unchanged) for prefix, current, _, unchanged in fast] == [
        ("44", True, True),
        ("33", True, False),
        ("49", True, False),
        ("39", False, False),
    ]


def test_a_price_scheduled_ahead_takes_the_exact_path(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,")
    load(table, "44,UK,0.0300,0,30,6,0,2027-03-01,", mode="changes")  # a later price of 44
    price_import = stage(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,", start=JAN)
    table.refresh_from_db()
    params = {"t": table.pk, "v": table.live_version, "e": "2027-01-01 00:00:00", "i": price_import.pk}
    assert not pipeline._single_candidates(params)  # 44 has an open row and a later one
    fast, exact = both_ways(price_import, JAN)
    assert fast == exact
    assert [(prefix, superseded, unchanged) for prefix, _, superseded, unchanged in fast] == [
        ("44", True, False),
        ("33", False, True),
    ]


def test_an_unmoved_version_reuses_the_preview_comparison(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,")
    # Dated rows, no import date: the start is each row's own, not the activation time.
    price_import = stage(table, "44,UK,0.0150,0,30,6,0,2027-01-01,", "33,France,0.0200,0,30,6,0,2027-01-01,")
    with mock.patch.object(imports, "compare", wraps=imports.compare) as compare:
        activation.activate_price_import(price_import, actor=Scope.system())
    assert compare.call_count == 0
    price_import.refresh_from_db()
    assert price_import.report["diff"]["counts"]["increased"] == 1
    assert price_import.report["diff"]["counts"]["unchanged"] == 1
    assert price_at(table, "44123", JAN) == Decimal("0.0150")
    assert price_at(table, "44123", at("2026-12-31T00:00:00")) == Decimal("0.0100")


def test_a_live_version_moved_since_the_preview_forces_a_fresh_diff(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", "33,France,0.0200,0,30,6,0,,")
    price_import = stage(table, "44,UK,0.0150,0,30,6,0,,", mode="changes", start=JAN)
    assert price_import.report["diff"]["counts"]["increased"] == 1
    load(table, "44,UK,0.0150,0,30,6,0,,", mode="changes", start=JAN)  # someone else got there first
    rows = Rate.objects.count()
    with mock.patch.object(imports, "compare", wraps=imports.compare) as compare:
        activation.activate_price_import(price_import, actor=Scope.system())
    assert compare.call_count == 1
    price_import.refresh_from_db()
    assert price_import.report["diff"]["counts"]["unchanged"] == 1
    assert price_import.report["diff"]["counts"]["increased"] == 0
    assert Rate.objects.count() == rows  # nothing to write: the live price is already this one


def test_undated_rows_reuse_the_comparison_while_no_live_period_starts_or_ends(table):
    load(table, "44,UK,0.0100,0,30,6,0,,", start=at("2026-01-01T00:00:00"))
    price_import = stage(table, "44,UK,0.0150,0,30,6,0,,", mode="changes")
    with mock.patch.object(imports, "compare", wraps=imports.compare) as compare:
        activation.activate_price_import(price_import, actor=Scope.system())
    assert compare.call_count == 0
    price_import.refresh_from_db()
    assert price_import.report["diff"]["counts"]["increased"] == 1
    assert price_at(table, "44123", timezone.now() + timedelta(days=1)) == Decimal("0.0150")


def test_undated_rows_get_a_fresh_diff_when_a_live_period_ended_since_the_preview(table):
    now = timezone.now()
    load(table, f"44,UK,0.0100,0,30,6,0,2026-01-01,{(now + timedelta(hours=1)).isoformat()}", start=None)
    price_import = stage(table, "44,UK,0.0150,0,30,6,0,,", mode="changes")
    assert price_import.report["diff"]["counts"]["increased"] == 1
    later = now + timedelta(hours=2)  # the live price has ended by the activation
    with (
        mock.patch.object(imports.timezone, "now", return_value=later),
        mock.patch.object(imports, "compare", wraps=imports.compare) as compare,
    ):
        activation.activate_price_import(price_import, actor=Scope.system())
    assert compare.call_count == 1
    price_import.refresh_from_db()
    assert price_import.report["diff"]["counts"]["new"] == 1
    assert price_at(table, "44123", later + timedelta(minutes=1)) == Decimal("0.0150")
