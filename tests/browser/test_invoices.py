"""Invoices in a real browser: a customer downloads its own from the portal, a reseller's staff
issues one in the admin; each sees only its own."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_admin import sign_in_to_admin
from tests.conftest import PASSWORD
from tests.invoicing.conftest import keep_books

pytestmark = pytest.mark.browser


def test_a_customer_finds_its_invoices_and_downloads_one(page, screenshot, cast):
    mine, theirs = keep_books(cast.a.customer), keep_books(cast.b.customer)

    page.goto("/portal/login/")
    page.get_by_label("Login name").fill("customer_a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    page.get_by_role("link", name="Invoices", exact=True).click()

    rows = page.locator("#invoices tbody tr.invoice")
    expect(rows).to_have_count(2)
    expect(page.locator("#invoices")).to_contain_text(mine.issued.number)
    expect(page.locator("#invoices")).to_contain_text(f"Credit note for {mine.issued.number}")
    expect(page.locator("#invoices")).not_to_contain_text("Customer B")
    assert theirs.issued.pk != mine.issued.pk
    screenshot("portal-invoices")

    with page.expect_download() as download:
        page.locator("#invoices tr.invoice-invoice a.invoice-pdf").click()
    assert download.value.suggested_filename == f"{mine.issued.number}.pdf"


def test_reseller_staff_issue_a_draft_in_the_admin(page, screenshot, cast):
    mine, theirs = keep_books(cast.a.customer), keep_books(cast.b.customer)
    sign_in_to_admin(page, "staff_a", "/admin/invoicing/invoice/")

    results = page.locator("#result_list")
    expect(results).to_contain_text("Customer A")
    expect(results).not_to_contain_text("Customer B")
    expect(results.locator("tbody tr")).to_have_count(3)
    assert theirs.draft.pk != mine.draft.pk
    page.locator("#toggle-nav-sidebar").click()  # the list's columns, all of them
    expect(page.locator("#result_list a.invoice-pdf")).to_have_count(3)
    screenshot("admin-invoices-reseller-a")

    page.goto(f"/admin/invoicing/invoice/{mine.draft.pk}/change/")
    page.get_by_role("link", name="Issue", exact=True).click()
    page.get_by_role("button", name="Issue").click()
    expect(page.locator(".messagelist")).to_contain_text("Issued as INV-000002")
    screenshot("admin-invoice")
