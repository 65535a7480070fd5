"""Admin exports: the CDR list as filtered (CSV/XLSX, streamed) and a rate table's prices in
force, each only what the login may see."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.urls import reverse
from django.utils import timezone

from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory

CDR_CSV = reverse("admin:cdr_cdr_export", args=["csv"])
CDR_XLSX = reverse("admin:cdr_cdr_export", args=["xlsx"])


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    return list(csv.reader(io.StringIO(content(response).decode())))


@pytest.fixture
def calls(cast):
    moment = timezone.now() - timedelta(hours=1)
    a = CdrFactory(
        customer=cast.a.customer,
        supplier=cast.supplier,
        node=cast.node,
        caller="111",
        callee="4911",
        callee_out="00494911",
        buy_cost=Decimal("0.007"),
        created_at=moment,
    )
    b = CdrFactory(
        customer=cast.b.customer, supplier=cast.supplier, node=cast.node, caller="222", callee="4922"
    )
    op = CdrFactory(customer=cast.operator_customer, node=cast.node, caller="333", callee="4933")
    return a, b, op


def test_the_cdr_list_links_to_its_exports_with_its_filters(cast, login, calls):
    page = login(cast.operator).get(reverse("admin:cdr_cdr_changelist"), {"q": "4911"}).content.decode()

    assert f"{CDR_CSV}?q=4911" in page
    assert f"{CDR_XLSX}?q=4911" in page


def test_the_operator_exports_every_call_with_the_supplier_leg(cast, login, calls):
    header, *rows = csv_rows(login(cast.operator).get(CDR_CSV))

    assert {row[header.index("callee")] for row in rows} == {"4911", "4922", "4933"}
    assert "buy cost" in header and "supplier" in header
    mine = next(row for row in rows if row[header.index("callee")] == "4911")
    assert mine[header.index("number sent")] == "00494911"
    assert mine[header.index("buy cost")] == "0.007000"
    assert mine[header.index("customer")] == "Customer A"


def test_the_export_follows_the_lists_filters_and_search(cast, login, calls):
    client = login(cast.operator)

    searched = csv_rows(client.get(CDR_CSV, {"q": "4922"}))
    by_customer = csv_rows(client.get(CDR_CSV, {"customer__id__exact": cast.operator_customer.pk}))

    assert [row[3] for row in searched[1:]] == ["4922"]
    assert [row[3] for row in by_customer[1:]] == ["4933"]
    assert client.get(CDR_CSV, {"created_at__year": "x"}).status_code == 302  # bad lookup: back to the list


def test_the_xlsx_export_opens_with_the_same_rows(cast, login, calls):
    response = login(cast.a.staff).get(CDR_XLSX)
    rows = list(openpyxl.load_workbook(io.BytesIO(content(response))).active.values)

    assert rows[0][:4] == ("start", "customer", "caller", "callee")
    assert [row[3] for row in rows[1:]] == ["4911"]


def test_an_unknown_format_is_not_found(cast, login):
    assert login(cast.operator).get(reverse("admin:cdr_cdr_export", args=["pdf"])).status_code == 404


@pytest.mark.parametrize("who", ["operator", "reseller_a", "reseller_b", "customer_a", "customer_b"])
def test_scoping_matrix_cdr_export(cast, login, client, calls, who):
    users = {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }
    if who.startswith("customer"):
        client.force_login(users[who])
        response = client.get(CDR_CSV)
        assert response.status_code in (302, 403)
        assert b"4911" not in content(response)
        return
    header, *rows = csv_rows(login(users[who]).get(CDR_CSV))
    callees = {row[header.index("callee")] for row in rows}
    expected = {"operator": {"4911", "4922", "4933"}, "reseller_a": {"4911"}, "reseller_b": {"4922"}}[who]
    assert callees == expected
    if who != "operator":
        assert "buy cost" not in header and "supplier" not in header and "node" not in header
        assert "00494911" not in content(login(users[who]).get(CDR_CSV)).decode()


def test_the_rating_error_list_exports_too(cast, login):
    CdrFactory(
        customer=cast.a.customer,
        node=cast.node,
        callee="4977",
        rating_state="error",
        rating_error="No sell rate",
    )

    rows = csv_rows(login(cast.a.staff).get(reverse("admin:cdr_ratingerror_export", args=["csv"])))

    assert [row[3] for row in rows[1:]] == ["4977"]


# --- rate tables ---------------------------------------------------------------------------


@pytest.fixture
def priced(cast):
    now = timezone.now()
    for table, price in ((cast.a.sell_table, "0.0125"), (cast.b.sell_table, "0.0999")):
        rate_services.add_rates(
            table,
            [
                Rate(
                    prefix="4915",
                    destination="Germany Mobile",
                    price=Decimal(price),
                    effective_from=now - timedelta(days=3),
                ),
                Rate(
                    prefix="4916",
                    destination="Later",
                    price=Decimal("1"),
                    effective_from=now + timedelta(days=3),
                ),
            ],
            actor=Scope.system(),
        )


def table_export(table, fmt="csv") -> str:
    return reverse("admin:rates_ratetable_export", args=[table.pk, fmt])


def test_a_rate_table_page_links_to_its_exports(cast, login, priced):
    page = login(cast.a.staff).get(reverse("admin:rates_ratetable_change", args=[cast.a.sell_table.pk]))

    assert table_export(cast.a.sell_table) in page.content.decode()
    assert table_export(cast.a.sell_table, "xlsx") in page.content.decode()


def test_a_rate_table_exports_its_prices_in_force_in_the_import_columns(cast, login, priced):
    header, *rows = csv_rows(login(cast.a.staff).get(table_export(cast.a.sell_table)))
    book = openpyxl.load_workbook(
        io.BytesIO(content(login(cast.a.staff).get(table_export(cast.a.sell_table, "xlsx"))))
    )

    assert header[:3] == ["prefix", "destination", "rate"]
    assert [row[:3] for row in rows] == [["4915", "Germany Mobile", "0.012500"]]  # not next week's
    assert [row[0] for row in list(book.active.values)[1:]] == ["4915"]


@pytest.mark.parametrize("who", ["operator", "reseller_a", "reseller_b", "customer_a", "customer_b"])
def test_scoping_matrix_rate_table_export(cast, login, client, priced, who):
    users = {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }
    if who.startswith("customer"):
        client.force_login(users[who])
        response = client.get(table_export(cast.a.sell_table))
        assert response.status_code in (302, 403)
        assert b"0.0125" not in content(response)
        return
    client = login(users[who])
    a_table = client.get(table_export(cast.a.sell_table))
    if who == "reseller_b":
        assert a_table.status_code == 404
        assert csv_rows(client.get(table_export(cast.b.sell_table)))[1][2] == "0.099900"
    else:
        assert csv_rows(a_table)[1][2] == "0.012500"
