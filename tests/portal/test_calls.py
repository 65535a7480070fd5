"""The Calls section: the customer's calls filtered, paged by keyset, exported; one call's page."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.portal.views.calls import price_per_minute
from tests.factories import CdrFactory
from tests.portal.conftest import rows

CDRS = reverse("portal:cdrs")


def make_days(cast):
    # 23:30 UTC on the 1st is already the 2nd in Paris (UTC+1 in January).
    for day, hour, callee in [(1, 10, "4911"), (1, 23, "4912"), (3, 9, "4913"), (5, 9, "4915")]:
        CdrFactory(
            customer=cast.a.customer,
            node=cast.node,
            callee=callee,
            created_at=datetime(2024, 1, day, hour, 30, tzinfo=UTC),
        )
    CdrFactory(
        customer=cast.b.customer,
        node=cast.node,
        callee="4499",
        created_at=datetime(2024, 1, 2, 12, 0, tzinfo=UTC),
    )


def callees(response) -> set[str]:
    return {cdr.callee for cdr in response.context["page_obj"]}


def body(response) -> str:
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body(response))))


# --- the list and its date range ---------------------------------------------------------


def test_call_list_shows_only_the_customers_calls(client_a, cast):
    make_days(cast)

    response = client_a.get(CDRS)

    assert response.status_code == 200
    assert callees(response) == {"4911", "4912", "4913", "4915"}
    assert rows(response) == 4
    assert "4499" not in response.content.decode()


def test_date_range_includes_both_days_in_the_site_time_zone(client_a, cast, settings):
    settings.TIME_ZONE = "Europe/Paris"
    make_days(cast)

    response = client_a.get(CDRS, {"start": "2024-01-02", "end": "2024-01-03"})

    assert callees(response) == {"4912", "4913"}
    assert rows(response) == 2


def test_open_ended_ranges(client_a, cast):
    make_days(cast)

    assert callees(client_a.get(CDRS, {"start": "2024-01-03"})) == {"4913", "4915"}
    assert callees(client_a.get(CDRS, {"end": "2024-01-01"})) == {"4911", "4912"}


def test_end_before_start_is_explained_and_lists_nothing(client_a, cast):
    make_days(cast)

    response = client_a.get(CDRS, {"start": "2024-01-05", "end": "2024-01-01"})

    assert response.status_code == 200
    assert "The end date is before the start date." in response.content.decode()
    assert rows(response) == 0


def test_bad_date_is_explained(client_a, cast):
    response = client_a.get(CDRS, {"start": "yesterday"})

    assert response.status_code == 200
    assert "From: Enter a valid date." in response.content.decode()


# --- the other filters -----------------------------------------------------------------------


@pytest.fixture
def varied(cast):
    """Calls of customer A that differ in one thing each, and one of B's that matches all."""
    base = datetime(2024, 4, 1, 12, tzinfo=UTC)
    made = {}
    for n, (name, fields) in enumerate(
        [
            ("de_mobile", {"callee": "4915112345", "destination": "Germany Mobile", "duration_ms": 95_000}),
            ("fr_fixed", {"callee": "33140000000", "destination": "France Fixed", "duration_ms": 30_000}),
            ("busy", {"callee": "4930111", "destination": "Germany Fixed", "sip_code": 486}),
            ("failed", {"callee": "4930222", "destination": "Germany Fixed", "sip_code": 503}),
            ("from_other", {"caller": "3312345", "callee": "4930333", "destination": "Germany Fixed"}),
        ]
    ):
        if fields.get("sip_code", 200) != 200:
            fields |= {"answered_at": None, "duration_ms": 0, "billable_seconds": 0, "sell_cost": None}
        made[name] = CdrFactory(
            customer=cast.a.customer, node=cast.node, created_at=base + timedelta(minutes=n), **fields
        )
    CdrFactory(
        customer=cast.b.customer,
        node=cast.node,
        callee="4915199999",
        destination="Germany Mobile",
        created_at=base,
        duration_ms=600_000,
    )
    return made


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"callee": "49151"}, {"de_mobile"}),
        ({"caller": "331"}, {"from_other"}),
        ({"destination": "germany mob"}, {"de_mobile"}),
        ({"status": "answered"}, {"de_mobile", "fr_fixed", "from_other"}),
        ({"status": "unanswered"}, {"busy"}),
        ({"status": "failed"}, {"failed"}),
        ({"sip_code": "503"}, {"failed"}),
        ({"min_duration": "60"}, {"de_mobile", "from_other"}),
        ({"destination": "Germany", "status": "answered", "min_duration": "61"}, {"de_mobile"}),
    ],
)
def test_each_filter_narrows_the_list_to_the_customers_matching_calls(client_a, varied, filters, expected):
    response = client_a.get(CDRS, filters)

    assert {cdr.pk for cdr in response.context["page_obj"]} == {varied[name].pk for name in expected}


def test_filters_refuse_what_cannot_match_and_say_why(client_a, varied):
    response = client_a.get(CDRS, {"sip_code": "99", "min_duration": "-1"})
    page = response.content.decode()

    assert rows(response) == 0
    assert "SIP code: Ensure this value is greater than or equal to 100." in page
    assert "Min. duration (s): Ensure this value is greater than or equal to 0." in page


def test_a_caller_that_is_not_a_number_can_be_found(client_a, cast):
    CdrFactory(customer=cast.a.customer, node=cast.node, caller="anonymous")
    CdrFactory(customer=cast.a.customer, node=cast.node, caller="441234")

    assert [c.caller for c in client_a.get(CDRS, {"caller": "anon"}).context["page_obj"]] == ["anonymous"]


def test_list_shows_destination_and_price_per_minute(client_a, cast):
    CdrFactory(
        customer=cast.a.customer,
        node=cast.node,
        destination="Spain Mobile",
        billable_seconds=90,
        sell_cost=Decimal("0.045000"),
    )

    page = client_a.get(CDRS).content.decode()

    assert "Spain Mobile" in page
    assert "0.0300 USD" in page  # 0.045 for 90 s billed is 0.03 a minute
    assert "0.0450 USD" in page


@pytest.mark.parametrize(
    ("cost", "billed", "expected"),
    [("0.045", 90, Decimal("0.03")), ("0.01", 7, Decimal("0.085714")), (None, 60, None), ("0.1", 0, None)],
)
def test_price_per_minute_is_the_cost_over_the_billed_minutes(cost, billed, expected):
    assert price_per_minute(cost and Decimal(cost), billed) == expected


# --- pages by keyset -------------------------------------------------------------------------


def test_pages_go_older_and_newer_keeping_the_filters(client_a, cast):
    moment = datetime(2024, 2, 1, 12, tzinfo=UTC)
    # 30 calls, three sharing one instant: the pk breaks the tie, none is lost or repeated.
    made = [
        CdrFactory(customer=cast.a.customer, node=cast.node, created_at=moment - timedelta(minutes=max(n, 2)))
        for n in range(30)
    ]
    newest_first = sorted(made, key=lambda c: (c.created_at, c.pk), reverse=True)

    first = client_a.get(CDRS, {"start": "2024-01-01"})
    older = first.context["page_obj"].older
    assert f'href="?start=2024-01-01&amp;after={older}" rel="next"' in first.content.decode()
    second = client_a.get(CDRS, {"start": "2024-01-01", "after": older})
    back = client_a.get(CDRS, {"start": "2024-01-01", "before": second.context["page_obj"].newer})

    assert [c.pk for c in first.context["page_obj"]] == [c.pk for c in newest_first[:25]]
    assert [c.pk for c in second.context["page_obj"]] == [c.pk for c in newest_first[25:]]
    assert second.context["page_obj"].older is None
    assert [c.pk for c in back.context["page_obj"]] == [c.pk for c in newest_first[:25]]
    assert first.context["page_obj"].newer is None


def test_newer_pages_in_the_middle_are_full_pages(client_a, cast):
    moment = datetime(2024, 2, 1, 12, tzinfo=UTC)
    made = [
        CdrFactory(customer=cast.a.customer, node=cast.node, created_at=moment - timedelta(minutes=n))
        for n in range(60)
    ]
    third = client_a.get(
        CDRS,
        {
            "after": client_a.get(CDRS, {"after": client_a.get(CDRS).context["page_obj"].older})
            .context["page_obj"]
            .older
        },
    )
    back = client_a.get(CDRS, {"before": third.context["page_obj"].newer})

    assert [c.pk for c in third.context["page_obj"]] == [c.pk for c in made[50:]]
    assert [c.pk for c in back.context["page_obj"]] == [c.pk for c in made[25:50]]
    assert back.context["page_obj"].newer and back.context["page_obj"].older


def test_a_junk_cursor_shows_the_newest_page(client_a, cast):
    make_days(cast)

    assert rows(client_a.get(CDRS, {"after": "yesterday"})) == 4


def test_call_list_queries_do_not_grow_with_the_calls_and_count_nothing(client_a, cast):
    CdrFactory.create_batch(2, customer=cast.a.customer, node=cast.node)
    with CaptureQueriesContext(connection) as few:
        client_a.get(CDRS, {"start": "2020-01-01"})

    CdrFactory.create_batch(40, customer=cast.a.customer, node=cast.node)
    with CaptureQueriesContext(connection) as many:
        assert rows(client_a.get(CDRS, {"start": "2020-01-01", "callee": "3"})) == 25

    sql = "\n".join(q["sql"] for q in many.captured_queries)
    assert len(many) == len(few), sql
    assert "COUNT(" not in sql.upper()


def test_the_supplier_side_is_not_loaded(client_a, cast):
    CdrFactory(customer=cast.a.customer, supplier=cast.supplier, node=cast.node, callee_out="0049930")

    response = client_a.get(CDRS)

    shown = response.context["page_obj"][0]
    assert {"buy_cost", "supplier_id", "gateway_id", "callee_out"} <= shown.get_deferred_fields()
    assert "Carrier X" not in response.content.decode()


# --- export ----------------------------------------------------------------------------------


def test_csv_export_holds_the_filtered_calls_with_prices(client_a, varied):
    response = client_a.get(CDRS, {"destination": "Germany", "status": "answered", "format": "csv"})

    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="calls-' in response["Content-Disposition"]
    header, *lines = csv_rows(response)
    assert header[:4] == ["Start", "Caller", "Callee", "Destination"]
    assert "Price per minute" in header
    assert sorted(line[2] for line in lines) == ["4915112345", "4930333"]
    mobile = next(line for line in lines if line[2] == "4915112345")
    assert mobile[3] == "Germany Mobile"
    assert mobile[4] == "95"  # seconds
    assert mobile[header.index("Cost")] == "0.012000"
    assert mobile[header.index("Price per minute")] == "0.012000"
    assert mobile[-1] == "USD"


def test_xlsx_export_opens_with_the_same_rows(client_a, varied):
    response = client_a.get(CDRS, {"callee": "4930", "format": "xlsx"})

    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:3] == ("Start", "Caller", "Callee")
    assert sorted(row[2] for row in values[1:]) == ["4930111", "4930222", "4930333"]


def test_export_reads_the_calls_in_chunks_not_all_at_once(client_a, cast, monkeypatch):
    monkeypatch.setattr("apps.portal.views.calls.EXPORT_CHUNK", 4)
    CdrFactory.create_batch(10, customer=cast.a.customer, node=cast.node)

    with CaptureQueriesContext(connection) as queries:
        lines = csv_rows(client_a.get(CDRS, {"format": "csv"}))

    # "cdr_cdr" on SQLite and PostgreSQL, `cdr_cdr` on MariaDB.
    reads = [q["sql"] for q in queries.captured_queries if re.search(r"FROM [`\"]cdr_cdr[`\"]", q["sql"])]
    assert len(lines) == 11
    assert len(reads) == 4  # 4 + 4 + 2, then an empty chunk ends it
    assert all("LIMIT 4" in sql for sql in reads)


def test_an_export_with_bad_filters_is_not_made(client_a, varied):
    response = client_a.get(CDRS, {"sip_code": "abc", "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


# --- one call and its legs ---------------------------------------------------------------------


def test_call_page_shows_the_customers_legs_of_the_call_only(client_a, cast):
    moment = datetime(2024, 5, 1, 9, tzinfo=UTC)
    first = CdrFactory(
        customer=cast.a.customer, node=cast.node, call_id="x@y", created_at=moment, sip_code=503,
        answered_at=None, duration_ms=0, billable_seconds=0, sell_cost=None,
    )  # fmt: skip
    second = CdrFactory(
        customer=cast.a.customer, node=cast.node, call_id="x@y", created_at=moment + timedelta(seconds=2),
        destination="Italy", billable_seconds=120, sell_cost=Decimal("0.5"),
    )  # fmt: skip
    CdrFactory(customer=cast.b.customer, node=cast.node, call_id="x@y", callee="4400000", created_at=moment)

    response = client_a.get(reverse("portal:call", args=[second.pk]))
    page = response.content.decode()

    assert [leg.pk for leg in response.context["legs"]] == [first.pk, second.pk]
    assert "4400000" not in page
    assert "Italy" in page
    assert "0.2500 USD per billed minute" in page


def test_a_call_alone_shows_no_legs(client_a, cast):
    cdr = CdrFactory(customer=cast.a.customer, node=cast.node)

    assert client_a.get(reverse("portal:call", args=[cdr.pk])).context["legs"] == []


# --- scoping matrix ------------------------------------------------------------------------


def _who(cast, name):
    return {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[name]


@pytest.mark.parametrize("who", ["operator", "reseller_a", "reseller_b", "customer_a", "customer_b"])
def test_scoping_matrix_calls_list_detail_and_export(client, cast, who):
    mine = CdrFactory(customer=cast.a.customer, node=cast.node, callee="491111")
    theirs = CdrFactory(customer=cast.b.customer, node=cast.node, callee="492222")
    client.force_login(_who(cast, who))

    listing = client.get(CDRS)
    export = client.get(CDRS, {"format": "csv"})
    detail_a = client.get(reverse("portal:call", args=[mine.pk]))
    detail_b = client.get(reverse("portal:call", args=[theirs.pk]))

    if who.startswith("customer"):
        own, other = (mine, theirs) if who == "customer_a" else (theirs, mine)
        page = listing.content.decode()
        assert own.callee in page and other.callee not in page
        exported = body(export)
        assert own.callee in exported and other.callee not in exported
        own_detail, other_detail = (detail_a, detail_b) if who == "customer_a" else (detail_b, detail_a)
        assert own_detail.status_code == 200
        assert other_detail.status_code == 404
    else:
        # Staff are sent to the admin: the portal shows them nobody's calls.
        for response in (listing, export, detail_a, detail_b):
            assert response.status_code == 403
            assert "491111" not in response.content.decode()
