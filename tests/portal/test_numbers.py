"""The Numbers pages in the sectioned portal: reached from the menu and from Connectivity,
scoped like every page (tests/dids/test_portal.py covers what they show)."""

import re

import pytest
from django.urls import reverse

from apps.dids import services as did_services
from apps.opensips.models import Location
from apps.peers import services as peer_services
from apps.tenancy.scope import Scope
from tests.conftest import Cast

SYSTEM = Scope.system()
NUMBERS = reverse("portal:numbers")


@pytest.fixture
def dids(cast: Cast):
    made = {}
    for label, tenant in (("a", cast.a), ("b", cast.b)):
        account = peer_services.add_sip_account(
            tenant.customer,
            actor=SYSTEM,
            username=f"{label}-desk",
            domain="sip.example.net",
            password="sip-Pass-2024",
        )
        made[label] = did_services.create_did(
            actor=SYSTEM,
            number=f"44207946{'5555' if label == 'a' else '6666'}",
            customer=tenant.customer,
            targets=[(account, None)],
        )
    return made


def test_the_menu_marks_numbers_and_the_number_page_leads_to_connectivity(client, cast, dids):
    client.force_login(cast.a.customer_user)

    listing = client.get(NUMBERS).content.decode()
    detail = client.get(reverse("portal:number", args=[dids["a"].pk])).content.decode()

    for body in (listing, detail):
        current = re.findall(r'<a href="([^"]+)" aria-current="page">', body)
        assert current == [NUMBERS]
    assert reverse("portal:connectivity") in detail


def test_the_numbers_pages_follow_the_chosen_language(client, cast, dids):
    client.force_login(cast.a.customer_user)
    client.post(reverse("portal:language"), {"language": "es"})

    for url in (NUMBERS, reverse("portal:number", args=[dids["a"].pk])):
        assert '<html lang="es">' in client.get(url).content.decode()


@pytest.mark.parametrize("who", ["operator", "staff_a", "staff_b", "customer_a", "customer_b"])
def test_scoping_matrix(client, cast, dids, who):
    user = {
        "operator": cast.operator,
        "staff_a": cast.a.staff,
        "staff_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[who]
    client.force_login(user)
    own = {"customer_a": "a", "customer_b": "b"}.get(who)

    listing = client.get(NUMBERS)
    pages = {
        label: client.get(reverse("portal:number", args=[did.pk])).status_code for label, did in dids.items()
    }

    if own is None:
        assert listing.status_code == 403
        assert pages == {"a": 403, "b": 403}
        assert dids["a"].number not in listing.content.decode()
        return
    other = "b" if own == "a" else "a"
    body = listing.content.decode()
    assert dids[own].number in body and dids[other].number not in body
    assert pages == {own: 200, other: 404}


def test_a_domainless_registration_shared_by_two_usernames_registers_neither(client, cast, dids):
    Location.objects.create(username="a-desk", domain="", contact="sip:a-desk@192.0.2.99", expires=0)
    client.force_login(cast.a.customer_user)
    assert "not registered" not in client.get(NUMBERS).content.decode()

    peer_services.add_sip_account(
        cast.b.customer, actor=SYSTEM, username="a-desk", domain="other.example.net", password="sip-Pass-2024"
    )
    assert "not registered" in client.get(NUMBERS).content.decode()
