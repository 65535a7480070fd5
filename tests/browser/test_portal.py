"""A customer uses the portal in a real browser."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from apps.billing import services as billing
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD
from tests.factories import CdrFactory

pytestmark = pytest.mark.browser


def test_customer_signs_in_and_sees_balance_and_calls(page, screenshot, cast):
    billing.post_payment(
        cast.a.customer.account, actor=Scope.system(), amount=Decimal("42.5"), reference="p1"
    )
    billing.post_payment(cast.b.customer.account, actor=Scope.system(), amount=Decimal("77"), reference="p2")
    CdrFactory.create_batch(3, customer=cast.a.customer, node=cast.node, callee="4915100000001")
    CdrFactory(
        customer=cast.a.customer,
        node=cast.node,
        callee="4930999",
        sip_code=486,
        sip_reason="Busy Here",
        answered_at=None,
        ended_at=None,
        duration_ms=0,
        sell_cost=None,
    )
    CdrFactory.create_batch(2, customer=cast.b.customer, node=cast.node, callee="4479000000002")

    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/portal/login/\?next=/portal/$"))
    screenshot("portal-login")
    page.get_by_label("Login name").fill("customer_a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.get_by_role("heading", name="Customer A")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("42.50 USD")
    expect(page.locator("#mode")).to_have_text("Prepaid")
    rows = page.locator("#cdrs tbody tr.cdr")
    expect(rows).to_have_count(4)
    expect(rows.filter(has_text="4915100000001")).to_have_count(3)
    expect(rows.filter(has_text="4930999")).to_contain_text("486")
    expect(page.locator("body")).not_to_contain_text("4479000000002")
    expect(page.locator("body")).not_to_contain_text("77.00")
    # The stylesheet was served and applied (the top bar is dark, not the browser's default).
    topbar = page.locator(".topbar").evaluate("el => getComputedStyle(el).backgroundColor")
    assert topbar == "rgb(23, 32, 44)"
    screenshot("portal-dashboard")

    page.get_by_role("link", name="Calls", exact=True).click()
    page.get_by_label("From").fill("2000-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/portal/calls/\?start=2000-01-01&end=&"))
    expect(page.locator("#cdrs tbody tr.cdr")).to_have_count(4)
    screenshot("portal-calls")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/portal/login/$"))
    expect(page.get_by_text("You have signed out.")).to_be_visible()


def test_staff_is_shown_the_way_to_the_admin(page, screenshot, cast):
    page.goto("/portal/login/")
    page.get_by_label("Login name").fill("staff_a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("This portal is for customers")
    expect(page.get_by_role("link", name="Go to the administration site")).to_have_attribute(
        "href", "/admin/"
    )
    screenshot("portal-staff-refused")
