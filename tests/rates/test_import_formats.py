"""Import templates, XLSX, encodings, and the export that reads back what was imported."""

import io
from decimal import Decimal
from io import StringIO

import openpyxl
from django.core.management import call_command

from apps.rates.models import ImportTemplate
from apps.rates.services import activation
from apps.tenancy.scope import Scope
from tests.factories import make_rate_table
from tests.rates.import_helpers import BAD_PRICES, at, price_at

JAN = at("2027-01-01T00:00:00")


def test_a_template_maps_headers_decimal_commas_dates_increments_and_prefixes(db):
    table = make_rate_table("Carrier T buy", purpose="buy")
    template = ImportTemplate.objects.create(
        name="Carrier T",
        table=table,
        columns={
            "Code": "prefix",
            "Country": "destination",
            "Price": "rate",
            "Valid from": "effective_from",
            "Notes": "",
        },
        decimal_comma=True,
        date_format="%d/%m/%Y",
        increment_column="Billing",
        skip_lines=2,
        delimiter=";",
    )
    data = (
        "Carrier T price list\nGenerated 2026-11-20\n"
        "Code;Country;Price;Billing;Valid from;Notes\n"
        "+44 20;UK London;0,0027;30/6;01/01/2027;\n"
        "0033;France;0,0055;60/60/0;01/01/2027;promo\n"
    ).encode("latin-1")
    report = activation.import_price_file(table, data, actor=Scope.system(), template=template, mode="full")
    assert report.ok, report.errors
    rate = table.rates.live().get(prefix="4420")
    assert (rate.price, rate.min_seconds, rate.increment_seconds, rate.effective_from) == (
        Decimal("0.0027"),
        30,
        6,
        JAN,
    )
    assert price_at(table, "33123", JAN) == Decimal("0.0055")


def test_xlsx_decks_import_like_csv(db):
    table = make_rate_table("Carrier X2 buy", purpose="buy")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["prefix", "destination", "rate", "effective_from"])
    sheet.append([44, "UK", 0.0036, JAN.replace(tzinfo=None)])
    sheet.append(["33", "France", 0.00001, JAN.replace(tzinfo=None)])
    sheet.append(["3x", "Bad", 0.1, None])
    buffer = io.BytesIO()
    book.save(buffer)
    report = activation.import_price_file(
        table, buffer.getvalue(), actor=Scope.system(), filename="deck.xlsx", mode="full"
    )
    assert [e["message"] for e in report.errors] == ["line 4: prefix '3x' is not digits"]
    report = activation.import_price_file(
        table, buffer.getvalue(), actor=Scope.system(), filename="deck.xlsx", mode="full", skip_invalid=True
    )
    assert price_at(table, "33", JAN) == Decimal("0.00001")
    assert price_at(table, "44", JAN) == Decimal("0.0036")


def test_export_writes_what_is_in_force_in_the_import_columns(db):
    make_rate_table("Export buy", purpose="buy")
    path = BAD_PRICES.parent / "sample_prices" / "cobalt_networks_2026-12.csv"
    call_command("import_prices", "Export buy", str(path), "--mode", "full", stdout=StringIO())
    out = StringIO()
    call_command("export_prices", "Export buy", "--at", "2026-12-20T00:00:00", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("prefix,destination,rate")
    assert any(line.startswith("63918,") and ",0.117000," in line for line in lines)
