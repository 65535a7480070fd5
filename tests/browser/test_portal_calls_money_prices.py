"""A customer goes through Calls (filtered, one call), Money and Prices in a real browser."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.billing import services as billing
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD
from tests.factories import CdrFactory

pytestmark = pytest.mark.browser


def test_customer_filters_calls_opens_one_and_sees_money_and_prices(page, screenshot, cast):
    now = timezone.now()
    a = cast.a.customer
    billing.post_payment(a.account, actor=Scope.system(), amount=Decimal("25"), reference="bank-7")
    for n in range(3):
        cdr = CdrFactory(
            customer=a,
            node=cast.node,
            callee=f"491511111{n}",
            destination="Germany Mobile",
            created_at=now - timedelta(hours=n + 1),
            billable_seconds=120,
            sell_cost=Decimal("0.05"),
        )
        billing.post(
            [
                billing.Posting(
                    a.account.pk, "charge", Decimal("-0.05"), f"cdr:{cdr.pk}", cdr.pk, "Call", cdr.created_at
                )
            ]
        )
    CdrFactory(
        customer=a,
        node=cast.node,
        callee="3314000",
        destination="France",
        created_at=now - timedelta(hours=5),
    )
    CdrFactory(customer=cast.b.customer, node=cast.node, callee="4915199999")
    rate_services.add_rates(
        cast.a.sell_table,
        [
            Rate(
                prefix="4915",
                destination="Germany Mobile",
                price=Decimal("0.025"),
                effective_from=now - timedelta(days=9),
            ),
            Rate(
                prefix="4915",
                destination="Germany Mobile",
                price=Decimal("0.03"),
                effective_from=now + timedelta(days=7),
            ),
        ],
        actor=Scope.system(),
    )

    page.goto("/portal/login/")
    page.get_by_label("Login name").fill("customer_a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))

    # Calls, filtered by the callee's beginning.
    page.get_by_role("link", name="Calls", exact=True).click()
    page.get_by_label("Callee").fill("49151")
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Show").click()
    rows = page.locator("#cdrs tbody tr.cdr")
    expect(rows).to_have_count(3)
    # htmx swapped the calls panel in place and put the filters in the address bar.
    expect(page).to_have_url(re.compile(r"/portal/calls/\?.*callee=49151"))
    assert page.evaluate("window.notReloaded") is True
    expect(rows.first).to_contain_text("Germany Mobile")
    expect(rows.first.locator(".per-minute")).to_have_text("0.0250 USD")
    expect(page.locator("#export-csv")).to_have_attribute("href", re.compile(r"callee=49151.*format=csv"))
    expect(page.locator("body")).not_to_contain_text("4915199999")
    screenshot("portal-calls-filtered")

    rows.first.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"/portal/calls/\d+/$"))
    expect(page.locator("#destination")).to_have_text("Germany Mobile")
    expect(page.locator("#per-minute")).to_contain_text("0.0250 USD per billed minute")
    screenshot("portal-call")

    # Money: balance, charges summed per day, then listed one by one.
    page.get_by_role("link", name="Money", exact=True).click()
    expect(page.locator("#balance")).to_have_text("24.85 USD")
    expect(page.locator("#days-total")).to_have_text("-0.15 USD")
    expect(page.locator("#entries")).to_contain_text("bank-7")
    screenshot("portal-money")
    page.get_by_label("List call charges one by one").check()
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#entries tr.entry-charge")).to_have_count(3)

    # Prices in force, searched, with next week's change.
    page.get_by_role("link", name="Prices", exact=True).click()
    expect(page.locator("#scheduled")).to_contain_text("0.0300 USD")
    page.get_by_label("Prefix or destination").fill("germany")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#prices tr.rate")).to_have_count(1)
    expect(page.locator("#prices")).to_contain_text("0.0250 USD")
    screenshot("portal-prices")
