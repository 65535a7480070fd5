"""The admin's traffic report: what each of the cast sees, sorting, totals per currency,
and the export of exactly the table."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.reports import queries
from apps.reports.rollups import local_zone
from apps.tenancy.scope import Scope

URL = "/admin/reports/"


def today():
    return timezone.now().astimezone(local_zone()).date()


def page(client, **params):
    return client.get(URL, {"since": (today() - timedelta(days=2)).isoformat(), **params})


def exported(client, **params) -> list[list[str]]:
    response = page(client, format="csv", **params)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_report_is_the_reports_traffic_url():
    assert reverse("reports:traffic") == URL


def test_operator_sees_every_customer_with_cost_profit_and_suppliers(traffic, client):
    client.force_login(traffic.operator)
    rows = exported(client, group_by="customer")

    header, *lines = rows
    assert header[:3] == ["Customer", "Currency", "Cost currency"]
    assert {"Cost", "Profit", "Margin %"} <= set(header)
    names = {line[0] for line in lines}
    assert {"Customer A", "Customer B", "Direct Customer"} <= names
    a = next(line for line in lines if line[0] == "Customer A")
    assert a[header.index("Revenue")] == "1.800000"
    assert a[header.index("Cost")] == "0.700000"
    assert a[header.index("Profit")] == "1.100000"
    assert page(client, group_by="supplier").content.decode().count("Carrier X") >= 1


@pytest.mark.parametrize("who", ["a", "b"])
def test_a_reseller_sees_its_customers_only_without_the_supplier_side(traffic, client, who):
    tenant, other = (traffic.a, traffic.b) if who == "a" else (traffic.b, traffic.a)
    client.force_login(tenant.staff)

    for group_by in ("customer", "destination", "period", "supplier", "node"):
        response = page(client, group_by=group_by, supplier=traffic.supplier.pk, node=traffic.node.pk)
        body = response.content.decode()
        assert response.status_code == 200
        assert other.customer.name not in body
        assert "Direct Customer" not in body and "Italy" not in body
        assert "Carrier X" not in body and "Resellers&#x27; margin" not in body and "node1" not in body
    header, *lines = exported(client, group_by="customer")
    # Its cost is what it pays the operator, never what the operator pays suppliers: this
    # reseller has no account with the operator, so it is not known (tests/reports/test_margins.py).
    assert "Cost currency" not in header and "Resellers' margin" not in header
    customer_line = next(line for line in lines if line[0] == tenant.customer.name)
    assert customer_line[header.index("Cost")] == customer_line[header.index("Profit")] == ""
    assert [line[0] for line in lines if line[0] != "Total"] == [tenant.customer.name]


@pytest.mark.parametrize("who", ["a", "b"])
def test_customers_and_the_anonymous_get_no_admin_report(traffic, client, who):
    assert client.get(URL).status_code == 302  # to the admin's sign-in
    client.force_login(getattr(traffic, who).customer_user)
    assert client.get(URL).status_code in (302, 403)
    assert client.get(URL, {"format": "csv"}).status_code in (302, 403)


def test_money_is_totalled_per_currency_never_across(traffic, client):
    client.force_login(traffic.operator)
    header, *lines = exported(client, group_by="destination")
    totals = {(line[1], line[2]): line for line in lines if line[0] == "Total"}

    assert set(totals) == {("USD", "USD"), ("EUR", "USD")}
    revenue = header.index("Revenue")
    assert Decimal(totals["USD", "USD"][revenue]) == Decimal("4.80")  # A 1.80 + direct 3.00
    assert Decimal(totals["EUR", "USD"][revenue]) == Decimal("2.00")
    # EUR revenue less USD cost is no profit.
    assert totals["EUR", "USD"][header.index("Profit")] == ""
    assert totals["USD", "USD"][header.index("Attempts")] == "19"


def test_sorting_by_a_column_and_back(traffic, client):
    client.force_login(traffic.operator)
    by_minutes = [line[0] for line in exported(client, group_by="destination", sort="minutes", desc="1")]
    assert by_minutes[1:5] == ["Germany", "Italy", "Spain", "France"]
    ascending = [line[0] for line in exported(client, group_by="destination", sort="minutes")]
    assert ascending[1:5] == ["France", "Spain", "Italy", "Germany"]
    by_name = [line[0] for line in exported(client, group_by="destination", sort="label")]
    assert by_name[1:5] == ["France", "Germany", "Italy", "Spain"]


def test_the_page_shows_a_chart_and_the_table_with_its_totals(traffic, client):
    client.force_login(traffic.operator)
    response = page(client, group_by="destination")
    body = response.content.decode()
    assert 'data-chart="report-chart-data"' in body and 'id="report-chart-data"' in body
    assert response.context["chart"]["data"]["labels"][0] == "Germany"
    assert "4.80 USD" in body and "2.00 EUR" in body  # totals in minor units, per currency


def test_xlsx_export_has_the_same_table(traffic, client):
    import openpyxl

    client.force_login(traffic.operator)
    response = page(client, group_by="destination", format="xlsx")
    book = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    values = [list(row) for row in book.active.iter_rows(values_only=True)]
    assert values[0][0] == "Destination"
    assert len(values) == 1 + 4 + 2  # header, four destinations, two currency totals


def test_hours_come_from_the_hour_rollups_and_days_from_the_day_rollups(traffic):
    start, end = queries.local_days(today() - timedelta(days=1), today())
    day = queries.report(Scope.system(), queries.Query(start=start, end=end, group_by="destination"))
    hour = queries.report(
        Scope.system(), queries.Query(start=start, end=end, group_by="destination", period="hour")
    )
    odd = queries.report(
        Scope.system(),
        queries.Query(start=start + timedelta(hours=1), end=end, group_by="destination"),
    )
    assert (day.grain, hour.grain, odd.grain) == ("day", "hour", "hour")
    assert [(x.label, x.attempts) for x in day.lines] == [(x.label, x.attempts) for x in hour.lines]


def test_months_gather_the_days(traffic):
    start, end = queries.local_days(today() - timedelta(days=60), today())
    month = queries.report(
        Scope.system(), queries.Query(start=start, end=end, group_by="period", period="month")
    )
    assert [line.label for line in month.lines] == [f"{today():%Y-%m}"] * 2  # USD and EUR customers
    assert sum(line.attempts for line in month.lines) == 27


def test_a_range_ending_before_it_starts_is_refused(traffic, client):
    client.force_login(traffic.operator)
    response = client.get(
        URL, {"since": today().isoformat(), "until": (today() - timedelta(days=3)).isoformat()}
    )
    assert response.status_code == 200 and response.context["report"] is None
    assert "ends before it starts" in response.content.decode()


def test_one_currency_everywhere_is_summed_without_joining_the_accounts(cast):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.reports.conftest import write_traffic

    write_traffic(cast, b_currency="USD")
    start, end = queries.local_days(today() - timedelta(days=1), today())
    with CaptureQueriesContext(connection) as captured:
        result = queries.report(Scope.system(), queries.Query(start=start, end=end, group_by="destination"))
    assert not any("billing_account" in q["sql"] for q in captured.captured_queries)
    [total] = result.totals
    assert (total.currency, total.cost_currency, total.attempts) == ("USD", "USD", 27)
    assert total.sell == Decimal("6.80") and total.profit == Decimal("4.60")
    assert {line.label: line.attempts for line in result.lines} == {
        "Germany": 10,
        "Italy": 5,
        "Spain": 8,
        "France": 4,
    }


def test_shapes_without_a_customer_still_keep_currencies_apart(traffic):
    """The destination shape has no customer, yet EUR and USD revenue stay apart."""
    start, end = queries.local_days(today() - timedelta(days=1), today())
    query = queries.Query(start=start, end=end, group_by="period")
    assert queries.shape_for(Scope.system(), query) == "node"
    result = queries.report(Scope.system(), query)
    assert {(t.currency, t.cost_currency): t.sell for t in result.totals} == {
        ("USD", "USD"): Decimal("4.80"),
        ("EUR", "USD"): Decimal("2.00"),
    }
