"""The Prices section: the customer's sell prices in force, search, download, scheduled changes."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.peers.models import Peer
from apps.rates import services as rate_services
from apps.rates.exports import price_chunks
from apps.rates.models import Rate
from apps.tenancy.scope import Scope

PRICES = reverse("portal:prices")


def add(table, prefix, destination, price, *, start, end=None, fee="0"):
    rate_services.add_rates(
        table,
        [
            Rate(
                prefix=prefix,
                destination=destination,
                price=Decimal(price),
                connection_fee=Decimal(fee),
                effective_from=start,
                effective_to=end,
            )
        ],
        actor=Scope.system(),
    )


@pytest.fixture
def lists(cast):
    now = timezone.now()
    past, future = now - timedelta(days=30), now + timedelta(days=7)
    a, b = cast.a.sell_table, cast.b.sell_table
    add(a, "4915", "Germany Mobile", "0.0125", start=past, fee="0.01")
    add(a, "4930", "Germany Berlin", "0.004", start=past)
    add(a, "4930", "Germany Berlin", "0.005", start=future)  # a rise next week
    add(a, "33", "France", "0.02", start=past, end=now - timedelta(days=1))  # ended
    add(a, "34", "Spain", "0.03", start=future)  # new next week
    add(b, "4915", "Germany Mobile", "0.0999", start=past)
    return now + timedelta(days=7)


def prefixes(response) -> list[str]:
    return [rate.prefix for rate in response.context["page_obj"]]


def test_prices_in_force_only_of_the_customers_own_list(client_a, lists):
    response = client_a.get(PRICES)
    page = response.content.decode()

    assert prefixes(response) == ["4915", "4930"]
    assert "0.0125 USD" in page and "0.0040 USD" in page  # prices keep at least four places
    assert "0.0999" not in page and "France" not in page


@pytest.mark.parametrize(
    ("q", "expected"), [("4915", ["4915"]), ("+49", ["4915", "4930"]), ("berlin", ["4930"])]
)
def test_search_by_prefix_or_destination(client_a, lists, q, expected):
    assert prefixes(client_a.get(PRICES, {"q": q})) == expected


def test_scheduled_changes_show_old_and_new_price_and_the_date(client_a, lists):
    response = client_a.get(PRICES)
    scheduled = response.context["scheduled"]

    # Same start: by prefix. Spain is new (no price now), Berlin rises.
    assert [(r.prefix, r.old_price, r.price) for r in scheduled] == [
        ("34", None, Decimal("0.03")),
        ("4930", Decimal("0.004"), Decimal("0.005")),
    ]
    page = response.content.decode()
    assert 'class="num scheduled-up">0.0050 USD' in page
    assert lists.strftime("%Y-%m-%d") in page


def test_pages_of_prices(client_a, cast, lists):
    past = timezone.now() - timedelta(days=1)
    rate_services.add_rates(
        cast.a.sell_table,
        [
            Rate(prefix=f"77{n:03d}", destination="Kazakhstan", price=Decimal("0.1"), effective_from=past)
            for n in range(60)
        ],
        actor=Scope.system(),
    )

    first = client_a.get(PRICES, {"q": "77"})
    second = client_a.get(PRICES, {"q": "77", "page": 2})

    assert len(prefixes(first)) == 50 and len(prefixes(second)) == 10
    assert 'href="?q=77&amp;page=2"' in first.content.decode()


def test_csv_download_holds_the_searched_prices_in_the_import_columns(client_a, lists):
    response = client_a.get(PRICES, {"q": "49", "format": "csv"})
    header, *lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert header[:3] == ["prefix", "destination", "rate"]
    assert [line[:4] for line in lines] == [
        ["4915", "Germany Mobile", "0.012500", "0.010000"],
        ["4930", "Germany Berlin", "0.004000", "0.000000"],
    ]


def test_xlsx_download_opens(client_a, lists):
    response = client_a.get(PRICES, {"format": "xlsx"})
    rows = list(openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active.values)

    assert rows[0][0] == "prefix"
    assert [row[0] for row in rows[1:]] == ["4915", "4930"]


def test_price_chunks_walk_by_prefix_in_short_reads(cast, lists, django_assert_num_queries):
    rates = Rate.objects.filter(table=cast.a.sell_table)

    with django_assert_num_queries(4):  # 2 + 2 + 1, then an empty read
        chunks = list(price_chunks(rates, size=2))

    assert [[row[0] for row in chunk] for chunk in chunks] == [["33", "34"], ["4915", "4930"], ["4930"]]


def test_a_customer_without_a_price_list_reads_a_sentence(client_a, cast):
    Peer.objects.filter(pk=cast.a.customer.pk).update(sell_rate_table=None)

    response = client_a.get(PRICES)

    assert response.status_code == 200
    assert "No price list is assigned to you yet" in response.content.decode()
    assert client_a.get(PRICES, {"format": "csv"}).status_code == 200


@pytest.mark.parametrize("who", ["operator", "reseller_a", "reseller_b", "customer_a", "customer_b"])
def test_scoping_matrix_prices_and_download(client, cast, lists, who):
    user = {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[who]
    client.force_login(user)

    page = client.get(PRICES)
    download = client.get(PRICES, {"format": "csv"})

    if who.startswith("customer"):
        own, other = ("0.0125", "0.0999") if who == "customer_a" else ("0.0999", "0.0125")
        text = b"".join(download.streaming_content).decode()
        assert own in page.content.decode() and other not in page.content.decode()
        assert own in text and other not in text
    else:
        assert page.status_code == download.status_code == 403


def test_prices_page_queries_do_not_grow_with_the_rates(client_a, cast, lists):
    with CaptureQueriesContext(connection) as few:
        client_a.get(PRICES)
    past = timezone.now() - timedelta(days=1)
    rate_services.add_rates(
        cast.a.sell_table,
        [
            Rate(prefix=f"88{n:02d}", destination="X", price=Decimal("0.1"), effective_from=past)
            for n in range(40)
        ]
        + [
            Rate(
                prefix=f"88{n:02d}",
                destination="X",
                price=Decimal("0.2"),
                effective_from=past + timedelta(days=9),
            )
            for n in range(40)
        ],
        actor=Scope.system(),
    )

    with CaptureQueriesContext(connection) as many:
        response = client_a.get(PRICES)

    assert len(response.context["scheduled"]) == 42
    assert len(many) == len(few), "\n".join(q["sql"] for q in many.captured_queries)
