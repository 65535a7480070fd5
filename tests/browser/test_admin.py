"""A reseller's staff uses the admin in a real browser and sees only its own customers."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def sign_in_to_admin(page, username: str, next_url: str) -> None:
    page.goto(f"/admin/login/?next={next_url}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(next_url) + "$"))


def test_reseller_staff_sees_only_its_customers_in_the_peer_list(page, screenshot, cast):
    sign_in_to_admin(page, "staff_a", "/admin/peers/peer/")

    results = page.locator("#result_list")
    expect(results).to_contain_text("Customer A")
    expect(results).not_to_contain_text("Customer B")
    expect(results).not_to_contain_text("Direct Customer")
    expect(results).not_to_contain_text("Carrier X")
    screenshot("admin-peers-reseller-a")


def test_staff_signed_in_to_the_admin_is_turned_away_from_the_portal(page, screenshot, cast):
    sign_in_to_admin(page, "staff_a", "/admin/")

    response = page.goto("/portal/")

    assert response.status == 403
    expect(page.get_by_role("heading", name="This portal is for customers")).to_be_visible()
    expect(page.get_by_role("link", name="Go to the administration site")).to_have_attribute(
        "href", "/admin/"
    )
    expect(page.locator("main")).not_to_contain_text("Customer A")
    screenshot("portal-customers-only")
