"""The live pages (admin /admin/live/, portal Live calls) and the admin home, per member of the cast."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.cdr.models import Cdr
from apps.rates.models import PriceImport
from tests.factories import CdrFactory

pytestmark = pytest.mark.usefixtures("traffic")

A_ONLY = ["111A", "4915100000001", "Burst of Customer A"]
B_ONLY = ["221B", "4479000000009", "Burst of Customer B"]
OPERATOR_ONLY = ["331O", "3312345678"]


def who(cast, name):
    return {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[name]


def page(client, user, url):
    client.force_login(user)
    return client.get(url)


@pytest.mark.parametrize(
    "name, status, shown, hidden",
    [
        ("operator", 200, ["Burst of Customer A", "Burst of Customer B"], []),
        ("reseller_a", 200, ["Burst of Customer A"], B_ONLY + OPERATOR_ONLY),
        ("reseller_b", 200, ["Burst of Customer B"], A_ONLY + OPERATOR_ONLY),
        ("customer_a", 302, [], []),
        ("customer_b", 302, [], []),
    ],
)
def test_admin_live_dashboard_is_scoped(client, cast, name, status, shown, hidden):
    response = page(client, who(cast, name), reverse("live:dashboard"))
    assert response.status_code == status
    if status != 200:
        assert "/admin/login/" in response["Location"]
        return
    text = response.content.decode()
    assert 'data-socket="/ws/live/"' in text and "live/live.js" in text
    for value in shown:
        assert value in text, value
    for value in hidden:
        assert value not in text, value


def test_admin_live_dashboard_counts(client, cast):
    text = page(client, cast.operator, reverse("live:dashboard")).content.decode()
    assert '<strong data-live="concurrent">4</strong>' in text
    text = page(client, cast.a.staff, reverse("live:dashboard")).content.decode()
    assert '<strong data-live="concurrent">2</strong>' in text
    assert '<strong data-live="answered">1</strong>' in text


@pytest.mark.parametrize(
    "name, shown, hidden",
    [
        ("customer_a", ["111A", "112A", "4915100000001", "Burst of Customer A"], B_ONLY + OPERATOR_ONLY),
        ("customer_b", ["221B", "4479000000009", "Burst of Customer B"], A_ONLY + OPERATOR_ONLY),
    ],
)
def test_portal_live_calls_show_the_customers_own_calls_only(client, cast, traffic, name, shown, hidden):
    response = page(client, who(cast, name), reverse("portal:live"))
    assert response.status_code == 200
    text = response.content.decode()
    assert text.count('class="live-call"') == (2 if name == "customer_a" else 1)
    for value in shown:
        assert value in text, value
    for value in hidden:
        assert value not in text, value
    calls, _ = traffic
    for reservation in calls.values():
        assert reservation.call_id not in text
    assert cast.supplier.name not in text


@pytest.mark.parametrize("name", ["operator", "reseller_a", "reseller_b"])
def test_portal_live_calls_are_for_customers(client, cast, name):
    assert page(client, who(cast, name), reverse("portal:live")).status_code == 403


def test_portal_live_calls_need_a_login(client):
    response = client.get(reverse("portal:live"))
    assert response.status_code == 302 and "/portal/login/" in response["Location"]


def test_admin_home_is_the_dashboard_above_the_app_list(client, cast):
    # A node that beat long ago is stale; a rating error and an import not finished of each reseller.
    from apps.nodes.models import Node

    Node.objects.filter(pk=cast.node.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    for customer in (cast.a.customer, cast.b.customer):
        CdrFactory(
            customer=customer, node=cast.node, rating_state=Cdr.RatingState.ERROR, rating_error="no price"
        )
    PriceImport.objects.create(
        table=cast.a.sell_table, state=PriceImport.State.QUEUED, file_name="a-prices.csv"
    )

    text = page(client, cast.operator, reverse("admin:index")).content.decode()
    assert 'id="dashboard"' in text
    assert text.index('id="dashboard"') < text.index('class="app-')
    assert "Stale nodes" in text and cast.node.name in text
    assert 'id="rating-errors"' in text and ">2</a>" in text.split('id="rating-errors"')[1].split("</li>")[0]
    assert "a-prices.csv" in text
    assert reverse("check-routing") in text
    assert reverse("live:dashboard") in text
    assert reverse("admin:cluster_nodestatus_changelist") in text
    assert "Burst of Customer A" in text and "Burst of Customer B" in text
    assert 'class="app-' in text  # Django's app list is still there

    text = page(client, cast.b.staff, reverse("admin:index")).content.decode()
    assert 'id="dashboard"' in text
    assert ">1</a>" in text.split('id="rating-errors"')[1].split("</li>")[0]
    assert "a-prices.csv" not in text
    assert "Stale nodes" not in text
    assert reverse("admin:cluster_nodestatus_changelist") not in text
    assert "Burst of Customer A" not in text and "Burst of Customer B" in text
    for value in A_ONLY + OPERATOR_ONLY:
        assert value not in text


def test_admin_home_links_the_tools_each_may_use(client, cast):
    operator = page(client, cast.operator, reverse("admin:index")).content.decode()
    reseller = page(client, cast.a.staff, reverse("admin:index")).content.decode()

    for name in ("reports:traffic", "live:dashboard", "check-routing"):
        assert f'href="{reverse(name)}"' in operator and f'href="{reverse(name)}"' in reseller
    cluster = reverse("admin:cluster_nodestatus_changelist")
    assert f'href="{cluster}"' in operator and f'href="{cluster}"' not in reseller


def test_the_live_pages_read_a_bounded_number_of_queries(client, cast, django_assert_max_num_queries):
    from tests.live.conftest import reserve

    for _ in range(20):
        reserve(cast.a.customer, node=cast.node)
    client.force_login(cast.a.customer_user)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("portal:live")).status_code == 200
    client.force_login(cast.a.staff)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("live:dashboard")).status_code == 200
