"""The portal's Usage page: the customer's own traffic only, charts, tables and exports
with no supplier side, for each of the cast."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.reports.rollups import local_zone
from tests.reports.conftest import write_traffic

URL = reverse("portal:usage")


@pytest.fixture
def traffic(cast):
    write_traffic(cast)
    return cast


def since():
    return (timezone.now().astimezone(local_zone()).date() - timedelta(days=2)).isoformat()


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_usage_is_in_the_menu_and_marked_current(traffic, client):
    client.force_login(traffic.a.customer_user)
    response = client.get(URL)
    assert response.status_code == 200
    assert response.context["nav"] == "usage"
    assert 'data-chart="usage-period-data"' in response.content.decode()


@pytest.mark.parametrize(
    ("who", "mine", "others"),
    [
        ("a", {"Germany", "France"}, {"Spain", "Italy"}),
        ("b", {"Spain"}, {"Germany", "France", "Italy"}),
    ],
)
def test_a_customer_sees_only_its_own_traffic_and_no_supplier_side(traffic, client, who, mine, others):
    client.force_login(getattr(traffic, who).customer_user)
    response = client.get(URL, {"since": since()})
    body = response.content.decode()
    assert {line.label for line in response.context["by_destination"].lines} == mine
    for name in others | {"Carrier X", "node1", "Margin", "Profit"}:
        assert name not in body
    header, *rows = csv_rows(client.get(URL, {"since": since(), "group_by": "destination", "format": "csv"}))
    assert header[:2] == ["Destination", "Currency"] and "Cost" not in header
    assert {row[0] for row in rows} == mine | {"Total"}
    # Naming someone else's customer, supplier or node changes nothing.
    again = client.get(
        URL, {"since": since(), "customer": traffic.operator_customer.pk, "supplier": traffic.supplier.pk}
    )
    assert {line.label for line in again.context["by_destination"].lines} == mine


def test_the_period_export_has_a_line_per_day_and_the_total(traffic, client):
    client.force_login(traffic.a.customer_user)
    header, *rows = csv_rows(client.get(URL, {"since": since(), "format": "csv"}))
    assert header[0] == "Period"
    *days, total = rows
    assert total[0] == "Total" and total[header.index("Attempts")] == "14"
    assert total[header.index("Revenue")] == "1.800000"
    assert len(days) == 1


def test_staff_and_the_anonymous_are_not_served(traffic, client):
    assert client.get(URL).status_code == 302
    for user in (traffic.operator, traffic.a.staff, traffic.b.staff):
        client.force_login(user)
        response = client.get(URL, {"format": "csv"})
        assert response.status_code == 403


def test_htmx_gets_the_results_alone(traffic, client):
    client.force_login(traffic.a.customer_user)
    response = client.get(URL, {"since": since(), "period": "hour"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "<html" not in body and 'id="usage-period-table"' in body
    assert response.context["by_period"].grain == "hour"
