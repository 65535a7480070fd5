"""Every malformed file gets its precise error with the line, and the table stays as it was."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.rates.models import PriceImport, StagedRate
from apps.rates.services import activation
from tests.factories import make_rate_table
from tests.rates.import_helpers import BAD_PRICES, corpus, deck, sample_price_list, snapshot

CORPUS = corpus()


def test_the_corpus_lists_every_file():
    assert sorted(name for name, _ in CORPUS) == sorted(path.name for path in BAD_PRICES.glob("*.csv"))


@pytest.fixture
def table(db, system):
    table = make_rate_table("Carrier Y buy", purpose="buy")
    activation.import_price_file(
        table,
        deck("44,United Kingdom,0.0050,0,30,6,0,,", "33,France,0.0060,0,30,6,0,,"),
        actor=system,
        mode="full",
    )
    return table


@pytest.mark.parametrize(("name", "expected"), CORPUS)
def test_service_reports_the_error_and_writes_nothing(table, system, name, expected):
    before = snapshot(table)
    report = activation.import_price_file(
        table, (BAD_PRICES / name).read_bytes(), actor=system, filename=name, mode="full"
    )
    assert not report.ok
    assert any(error["message"].startswith(expected) for error in report.errors), report.errors
    assert snapshot(table) == before
    assert PriceImport.objects.filter(table=table).latest("created_at").state == PriceImport.State.INVALID
    assert not StagedRate.objects.exists()


@pytest.mark.parametrize(("name", "expected"), CORPUS)
def test_cli_prints_the_error_and_fails(table, name, expected):
    before = snapshot(table)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_prices", str(table.pk), str(BAD_PRICES / name), "--mode", "full", stdout=out)
    assert expected in out.getvalue()
    assert snapshot(table) == before


def test_skip_invalid_imports_the_rest_and_lists_the_rejected_rows(table, system):
    report = activation.import_price_file(
        table,
        (BAD_PRICES / "negative_rate.csv").read_bytes(),
        actor=system,
        mode="changes",
        skip_invalid=True,
    )
    assert report.rows_valid == 3 and report.rows_rejected == 1
    assert report.errors[0]["message"] == "line 5: rate '-0.01' is negative"
    prices = {prefix: price for prefix, price, _, _ in snapshot(table) if prefix in ("34", "49")}
    assert prices == {"49": Decimal("0.004700")}


def test_dry_run_previews_and_writes_nothing(table, tmp_path):
    before = snapshot(table)
    out = StringIO()
    path = tmp_path / "cobalt_networks.csv"
    path.write_bytes(sample_price_list())
    call_command("import_prices", str(table.pk), str(path), "--dry-run", "--mode", "full", stdout=out)
    preview = out.getvalue()
    assert "dry run" in preview
    assert "Changes: new 38, increased 0, decreased 2, terms_changed 0, unchanged 0, scheduled 1" in preview
    assert snapshot(table) == before
