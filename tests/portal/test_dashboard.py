"""The dashboard: a customer's own money and calls, in its currency and the site's time zone."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.billing import services as billing
from apps.cdr.models import Cdr
from apps.portal.views.calls import LATEST_CALLS
from apps.tenancy import services as tenancy_services
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory
from tests.portal.conftest import pay, rows

DASHBOARD = reverse("portal:dashboard")


def test_customer_sees_its_own_balance_and_account(client_a, cast):
    pay(cast.a.customer, "42.50", "a-1")
    pay(cast.b.customer, "99.99", "b-1")

    body = client_a.get(DASHBOARD).content.decode()

    assert '<p class="figure" id="balance">42.50 USD</p>' in body
    assert '<p class="figure" id="available">42.50 USD</p>' in body
    assert '<p class="figure" id="mode">Prepaid</p>' in body
    assert '<p class="figure" id="credit-limit">None</p>' in body
    assert "99.99" not in body
    assert "Customer B" not in body


def test_postpaid_customer_sees_credit_limit_and_available_funds(client, cast):
    user = tenancy_services.add_customer_login(
        cast.operator_customer, actor=Scope.system(), username="direct", password="An0ther-pass!"
    ).user
    billing.post_adjustment(
        cast.operator_customer.account, actor=Scope.system(), amount=Decimal("-20.25"), reason="test"
    )
    client.force_login(user)

    body = client.get(DASHBOARD).content.decode()

    assert '<p class="figure negative" id="balance">-20.25 USD</p>' in body
    assert '<p class="figure" id="available">79.75 USD</p>' in body
    assert '<p class="figure" id="credit-limit">100.00 USD</p>' in body
    assert '<p class="figure" id="mode">Postpaid</p>' in body


def test_low_balance_warning_appears_below_the_threshold(client_a, cast):
    account = cast.a.customer.account
    billing.update_account(account, actor=Scope.system(), changes={"low_balance_threshold": Decimal("5")})
    assert "Your balance is below 5.00 USD" in client_a.get(DASHBOARD).content.decode()

    pay(cast.a.customer, "10", "a-1")
    assert "Your balance is below" not in client_a.get(DASHBOARD).content.decode()


def test_customer_sees_only_its_own_calls(client, cast):
    CdrFactory.create_batch(3, customer=cast.a.customer, node=cast.node, callee="4915100000001")
    CdrFactory.create_batch(2, customer=cast.b.customer, node=cast.node, callee="4479000000002")
    CdrFactory(customer=cast.operator_customer, node=cast.node, callee="3312300000003")

    client.force_login(cast.a.customer_user)
    a_page = client.get(DASHBOARD)
    client.force_login(cast.b.customer_user)
    b_page = client.get(DASHBOARD)

    assert rows(a_page) == 3
    assert a_page.content.decode().count("4915100000001") == 3
    assert "4479000000002" not in a_page.content.decode()
    assert "3312300000003" not in a_page.content.decode()
    assert rows(b_page) == 2
    assert "4915100000001" not in b_page.content.decode()


def test_supplier_side_of_a_call_is_never_shown(client_a, cast):
    CdrFactory(
        customer=cast.a.customer,
        supplier=cast.supplier,
        node=cast.node,
        callee="4930123456",
        callee_out="0049930123456",
        sell_cost=Decimal("0.123400"),
        buy_cost=Decimal("0.987654"),
    )

    response = client_a.get(DASHBOARD)
    body = response.content.decode()

    # Not even loaded: a template cannot show what the query did not fetch.
    shown = response.context["page_obj"][0]
    assert {"buy_cost", "supplier_id", "gateway_id", "callee_out"} <= shown.get_deferred_fields()
    assert "0.1234 USD" in body
    assert "0.98765" not in body
    assert "Carrier X" not in body
    assert "0049930123456" not in body


def test_call_columns_are_formatted(client_a, cast):
    start = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    CdrFactory(
        customer=cast.a.customer,
        node=cast.node,
        caller="441110000",
        callee="442220000",
        created_at=start,
        duration_ms=3_725_400,
        sip_code=200,
        sell_cost=Decimal("1.5"),
    )
    CdrFactory(
        customer=cast.a.customer,
        node=cast.node,
        created_at=start - timedelta(minutes=1),
        answered_at=None,
        ended_at=None,
        duration_ms=0,
        sip_code=486,
        sip_reason="Busy Here",
        sell_cost=None,
        rating_state=Cdr.RatingState.UNRATED,
    )

    body = client_a.get(DASHBOARD).content.decode()

    assert '<td class="mono">441110000</td>' in body
    assert '<td class="mono">442220000</td>' in body
    assert '<td class="num">1:02:05</td>' in body
    assert '<td class="num">1.5000 USD</td>' in body
    assert 'title="Busy Here">486</span>' in body
    assert '<span class="muted">pending</span>' in body


def test_rated_call_without_a_price_shows_a_dash(client_a, cast):
    CdrFactory(customer=cast.a.customer, node=cast.node, sell_cost=None, rating_state=Cdr.RatingState.ERROR)

    body = client_a.get(DASHBOARD).content.decode()

    assert '<span class="muted">—</span>' in body
    assert "pending" not in body


def test_times_are_shown_in_the_site_time_zone(client_a, cast, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    CdrFactory(customer=cast.a.customer, node=cast.node, created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))

    body = client_a.get(DASHBOARD).content.decode()

    assert "2024-01-02 12:04:05" in body
    assert '<span class="tz">Asia/Tokyo</span>' in body


def test_the_overview_shows_the_newest_calls_and_links_to_all(client_a, cast):
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    for n in range(LATEST_CALLS + 5):
        CdrFactory(
            customer=cast.a.customer,
            node=cast.node,
            callee=f"49300000{n:04d}",
            created_at=now - timedelta(minutes=n),
        )

    page = client_a.get(DASHBOARD).content.decode()

    assert page.count('<tr class="cdr">') == LATEST_CALLS
    assert "493000000000" in page  # the newest
    assert f"49300000{LATEST_CALLS:04d}" not in page
    assert f'href="{reverse("portal:cdrs")}"' in page


def test_customer_without_calls_sees_an_empty_list(client_a):
    response = client_a.get(DASHBOARD)

    assert response.status_code == 200
    assert "No calls to show." in response.content.decode()


def test_dashboard_queries_do_not_grow_with_the_calls(client_a, cast):
    CdrFactory.create_batch(3, customer=cast.a.customer, node=cast.node, supplier=cast.supplier)
    with CaptureQueriesContext(connection) as few:
        assert client_a.get(DASHBOARD).status_code == 200

    CdrFactory.create_batch(40, customer=cast.a.customer, node=cast.node, supplier=cast.supplier)
    with CaptureQueriesContext(connection) as many:
        assert rows(client_a.get(DASHBOARD)) == LATEST_CALLS

    # session, user, membership, peer with its account, the latest calls (no COUNT)
    assert len(many) == len(few) == 5, "\n".join(q["sql"] for q in many.captured_queries)


def test_the_menu_links_every_section_and_marks_the_current_one(client_a):
    from apps.portal.nav import MENU

    page = client_a.get(DASHBOARD).content.decode()

    for _key, name, _label in MENU:
        assert f'href="{reverse(name)}"' in page
    assert f'<a href="{DASHBOARD}" aria-current="page">' in page
