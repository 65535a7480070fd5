"""The call list: every call of the customer, newest first, within a range of days."""

from datetime import UTC, datetime

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

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


def test_page_links_keep_the_date_range(client_a, cast):
    for _ in range(26):
        CdrFactory(customer=cast.a.customer, node=cast.node, created_at=datetime(2024, 2, 1, 12, tzinfo=UTC))

    first = client_a.get(CDRS, {"start": "2024-02-01"})
    second = client_a.get(CDRS, {"start": "2024-02-01", "page": 2})

    assert rows(first) == 25
    assert 'href="?start=2024-02-01&amp;page=2" rel="next"' in first.content.decode()
    assert rows(second) == 1


def test_call_list_queries_do_not_grow_with_the_calls(client_a, cast):
    CdrFactory.create_batch(2, customer=cast.a.customer, node=cast.node)
    with CaptureQueriesContext(connection) as few:
        client_a.get(CDRS, {"start": "2020-01-01"})

    CdrFactory.create_batch(40, customer=cast.a.customer, node=cast.node)
    with CaptureQueriesContext(connection) as many:
        assert rows(client_a.get(CDRS, {"start": "2020-01-01"})) == 25

    assert len(many) == len(few) == 6, "\n".join(q["sql"] for q in many.captured_queries)
