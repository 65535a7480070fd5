"""Reports in a real browser: the operator and reseller A change the report's grouping and
see its chart drawn and its table; customer A opens Usage and sees its charts."""

import re

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from tests.reports.conftest import write_traffic

pytestmark = pytest.mark.browser


def sign_in(page, live_server, user) -> None:
    """Sign `user` in by session cookie: the sign-in forms are the other modules' subject."""
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )


def drawn(page, canvas: str) -> None:
    expect(page.locator(f"{canvas}[data-drawn='yes']")).to_have_count(1)


def test_staff_group_the_report_and_a_customer_reads_its_usage(page, live_server, screenshot, cast):
    write_traffic(cast)

    sign_in(page, live_server, cast.operator)
    page.goto("/admin/reports/")
    drawn(page, "#report-chart")
    expect(page.locator("#report-table tfoot")).to_contain_text("Total")
    screenshot("reports-operator-period")
    page.locator("#id_group_by").select_option("destination")
    page.get_by_role("button", name="Show").click()
    drawn(page, "#report-chart")
    expect(page.locator("#report-table tbody tr")).to_have_count(4)
    expect(page.locator("#report-table thead")).to_contain_text("Margin %")
    screenshot("reports-operator-destination")
    page.locator("#report-table thead a", has_text="Minutes").click()  # most first
    expect(page.locator("#report-table tbody tr").first).to_contain_text("Germany")
    page.locator("#report-table thead a", has_text="Minutes").click()  # then least first
    expect(page.locator("#report-table tbody tr").first).to_contain_text("France")
    page.context.clear_cookies()

    sign_in(page, live_server, cast.a.staff)
    page.goto("/admin/reports/")
    drawn(page, "#report-chart")
    page.locator("#id_group_by").select_option("customer")
    page.get_by_role("button", name="Show").click()
    drawn(page, "#report-chart")
    rows = page.locator("#report-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Customer A")
    expect(page.locator("body")).not_to_contain_text("Customer B")
    # Its own margin, not the operator's: no resellers' margin, no supplier side.
    expect(page.locator("#report-table thead")).to_contain_text("Margin %")
    expect(page.locator("body")).not_to_contain_text("Resellers' margin")
    expect(page.locator("body")).not_to_contain_text("Carrier X")
    expect(page.locator("#id_group_by option[value='supplier']")).to_have_count(0)
    screenshot("reports-reseller-customer")
    page.context.clear_cookies()

    sign_in(page, live_server, cast.a.customer_user)
    page.goto("/portal/usage/")
    drawn(page, "#usage-period-chart")
    drawn(page, "#usage-destination-chart")
    expect(page.locator("#usage-destination-table tbody tr")).to_have_count(2)
    expect(page.locator("body")).not_to_contain_text("Spain")
    page.locator("#id_period").select_option("hour")
    page.get_by_role("button", name="Show").click()  # htmx swaps the results in
    drawn(page, "#usage-period-chart")
    expect(page).to_have_url(re.compile(r"period=hour"))
    screenshot("portal-usage")
