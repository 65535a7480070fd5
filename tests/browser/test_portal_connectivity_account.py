"""A customer goes through Connectivity, Numbers and Account in a real browser."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.dids import services as did_services
from apps.opensips.models import Location
from apps.peers import services as peer_services
from apps.peers.models import SipAccount
from apps.peers.services import sip_digests
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

SYSTEM = Scope.system()


def test_customer_uses_connectivity_numbers_and_account(page, screenshot, cast):
    customer = cast.a.customer
    account = peer_services.add_sip_account(
        customer, actor=SYSTEM, username="a-pbx", domain="sip.example.net", password="old-Pass-2024"
    )
    peer_services.add_sip_account(
        cast.b.customer, actor=SYSTEM, username="b-pbx", domain="sip.example.net", password="old-Pass-2024"
    )
    peer_services.add_endpoint(customer, actor=SYSTEM, ip="192.0.2.10", description="Office PBX")
    peer_services.update_peer(customer, actor=SYSTEM, changes={"codecs": "PCMA,PCMU", "max_calls": 30})
    did_services.create_did(actor=SYSTEM, number="442079467777", customer=customer, targets=[(account, 20)])
    Location.objects.create(
        username="a-pbx",
        domain="sip.example.net",
        contact="sip:a-pbx@198.51.100.7:5062",
        user_agent="Yealink T46U",
        socket=f"udp:{cast.node.sip_address}:{cast.node.sip_port}",
        expires=int(timezone.now().timestamp()) + 3600,
    )

    page.goto("/portal/login/")
    page.get_by_role("link", name="Forgotten your password?").click()
    expect(page.get_by_role("heading", name="Forgotten password")).to_be_visible()
    screenshot("portal-password-reset")
    page.get_by_role("link", name="Back to sign in").click()
    page.get_by_label("Login name").fill("customer_a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))

    # Connectivity: the device, the node that took it, the sheet; a new SIP password.
    page.get_by_role("link", name="Connectivity", exact=True).click()
    sip = page.locator(f"#sip-{account.pk}")
    expect(sip.locator(".contact")).to_contain_text("Yealink T46U")
    expect(sip.locator(".contact .node")).to_have_text("node1")
    expect(page.locator("#addresses")).to_contain_text(cast.node.sip_address)
    expect(page.locator("#codecs")).to_have_text("PCMA, PCMU")
    expect(page.locator("#endpoints")).to_contain_text("Office PBX")
    expect(page.locator("body")).not_to_contain_text("b-pbx")
    screenshot("portal-connectivity")
    sip.get_by_text("Change the password").click()
    sip.get_by_label("New SIP password").fill("new-Pass-2025")
    sip.get_by_label("Repeat it").fill("new-Pass-2025")
    sip.get_by_role("button", name="Save the password").click()
    expect(page.locator(".messages")).to_contain_text("devices must sign in with the new one")
    assert (
        SipAccount.objects.get(pk=account.pk).ha1
        == sip_digests("a-pbx", "sip.example.net", "new-Pass-2025")[0]
    )

    # Numbers, from the Connectivity page.
    page.get_by_role("link", name="442079467777").click()
    expect(page.locator("#targets")).to_contain_text("a-pbx@sip.example.net")
    page.get_by_role("link", name="All numbers →").click()
    expect(page.locator("#numbers tr.did")).to_have_count(1)
    screenshot("portal-numbers")

    # Account: a read-only key, its secret shown once.
    page.get_by_role("link", name="Account", exact=True).click()
    page.get_by_label("Name").fill("CRM sync")
    page.get_by_label("Access").select_option("read")
    page.get_by_role("button", name="Create the key").click()
    secret = page.locator("#new-key-secret")
    expect(secret).to_have_text(re.compile(r"^ssk_"))
    token = secret.inner_text()
    assert ApiKey.objects.get(name="CRM sync").digest == ApiKey.digest_of(token)
    expect(page.locator("#keys")).to_contain_text("Read only")
    screenshot("portal-account-new-key")
    # Reloading the page that showed the secret posts the form again: no second key.
    page.reload()
    expect(page.locator("body")).to_contain_text("no other key was made")
    assert ApiKey.objects.filter(name="CRM sync").count() == 1
    page.get_by_role("link", name="Account", exact=True).click()
    expect(page.locator("#keys")).to_contain_text("CRM sync")
    expect(page.locator("#new-key-secret")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(token)

    # Revoking asks first: dismissed, the key stays; accepted, it is revoked.
    revoke = page.get_by_role("button", name="Revoke CRM sync")
    asked = []

    def answer(dialog, *, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    revoke.click()
    assert asked == ["Revoke the key CRM sync? Requests with it will be refused."]
    expect(revoke).to_be_visible()
    assert ApiKey.objects.get(name="CRM sync").revoked_at is None
    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    revoke.click()
    expect(page.locator("#keys tr", has_text="CRM sync")).to_contain_text("Revoked")
    assert ApiKey.objects.get(name="CRM sync").revoked_at is not None

    # Language: Español, then the page is served in it.
    page.get_by_label("Language of the portal").select_option("es")
    page.get_by_role("button", name="Use this language").click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    screenshot("portal-account-es")
