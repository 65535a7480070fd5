"""Endpoints, gateways and SIP accounts: written through the peers services, kept with their peer."""

import hashlib

import pytest

from apps.audit.models import AuditEntry
from apps.peers.models import Endpoint, Gateway, SipAccount
from tests.api.conftest import SIP_PASSWORD, ids


def test_a_reseller_adds_changes_and_removes_an_endpoint(api, cast):
    client = api(cast.a.staff_key)
    response = client.post(
        "/api/v1/endpoints/", {"peer": cast.a.customer.pk, "ip": "203.0.113.0", "mask": 24}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["cidr"] == "203.0.113.0/24"
    pk = response.json()["id"]
    assert AuditEntry.objects.filter(action="endpoint.created", object_id=str(pk)).exists()

    response = client.patch(f"/api/v1/endpoints/{pk}/", {"port": 5070, "transport": "tcp"}, format="json")
    assert response.status_code == 200, response.json()
    assert Endpoint.objects.values_list("port", "transport").get(pk=pk) == (5070, "tcp")

    assert client.delete(f"/api/v1/endpoints/{pk}/").status_code == 204
    assert not Endpoint.objects.filter(pk=pk).exists()
    assert AuditEntry.objects.filter(action="endpoint.deleted", object_id=str(pk)).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ip": "203.0.113.7", "mask": 24}, "mask"),
        ({"ip": "not-an-ip"}, "ip"),
        ({"ip": "203.0.113.7", "port": 70000}, "port"),
        ({"ip": "203.0.113.7", "transport": "sctp"}, "transport"),
    ],
)
def test_a_bad_endpoint_is_a_400_naming_the_field(api, cast, body, field):
    response = api(cast.a.staff_key).post(
        "/api/v1/endpoints/", {"peer": cast.a.customer.pk, **body}, format="json"
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Endpoint.objects.exists()


def test_a_suppliers_endpoint_is_refused_by_the_model(api, cast):
    response = api(cast.operator_key).post(
        "/api/v1/endpoints/", {"peer": cast.supplier.pk, "ip": "203.0.113.7"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"peer": ["IP authentication identifies customers; this peer is a supplier."]}


def test_a_child_cannot_move_to_another_peer(api, cast, world):
    response = api(cast.a.staff_key).patch(
        f"/api/v1/endpoints/{world.endpoint.pk}/", {"peer": cast.a.customer.pk}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["peer"]
    assert Endpoint.objects.get(pk=world.endpoint.pk).peer == world.peer


def test_the_operator_adds_a_gateway_to_a_supplier(api, cast):
    response = api(cast.operator_key).post(
        "/api/v1/gateways/",
        {
            "peer": cast.supplier.pk,
            "name": "primary",
            "host": "198.51.100.20",
            "transport": "tls",
            "priority": 1,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["uri"] == "sip:198.51.100.20:5060;transport=tls"
    assert Gateway.objects.get(pk=response.json()["id"]).peer == cast.supplier


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"port": 0}, "port"),
        ({"host": "bad host!"}, "host"),
        ({"priority": 40000}, "priority"),
        ({"prefix": "+1"}, "prefix"),
    ],
)
def test_a_bad_gateway_is_a_400_naming_the_field(api, cast, body, field):
    response = api(cast.operator_key).post(
        "/api/v1/gateways/",
        {"peer": cast.supplier.pk, "name": "gw", "host": "gw.example.com", **body},
        format="json",
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_a_resellers_key_cannot_reach_the_operators_supplier(api, cast):
    response = api(cast.a.staff_key).post(
        "/api/v1/gateways/", {"peer": cast.supplier.pk, "name": "gw", "host": "gw.example.com"}, format="json"
    )
    assert response.status_code == 400
    assert "does not exist" in response.json()["peer"][0]


def test_a_sip_account_takes_a_password_and_never_shows_digests(api, cast):
    client = api(cast.a.staff_key)
    body = {
        "peer": cast.a.customer.pk,
        "username": "office",
        "domain": "sip.example.com",
        "password": SIP_PASSWORD,
    }
    response = client.post("/api/v1/sip-accounts/", body, format="json")
    assert response.status_code == 201, response.json()
    account = SipAccount.objects.get(pk=response.json()["id"])
    assert account.ha1 == hashlib.md5(f"office:sip.example.com:{SIP_PASSWORD}".encode()).hexdigest()
    for shown in (response.json(), client.get(f"/api/v1/sip-accounts/{account.pk}/").json()):
        assert "password" not in shown
        assert not {key for key in shown if "ha1" in key}
        assert account.ha1 not in str(shown)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "short1"}, "password"),
        ({"password": "onlyletterslong"}, "password"),
        ({"password": None}, "password"),
        ({"username": "bad user"}, "username"),
        ({"domain": "-bad-"}, "domain"),
    ],
)
def test_a_bad_sip_account_is_a_400_naming_the_field(api, cast, body, field):
    base = {
        "peer": cast.a.customer.pk,
        "username": "office",
        "domain": "sip.example.com",
        "password": SIP_PASSWORD,
    }
    response = api(cast.a.staff_key).post("/api/v1/sip-accounts/", {**base, **body}, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not SipAccount.objects.filter(username="office").exists()


def test_a_sip_account_without_password_is_a_400(api, cast):
    body = {"peer": cast.a.customer.pk, "username": "office", "domain": "sip.example.com"}
    response = api(cast.a.staff_key).post("/api/v1/sip-accounts/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["password"]


def test_a_taken_sip_login_is_a_400(api, cast, world):
    body = {
        "peer": cast.a.customer.pk,
        "username": "a2-office",
        "domain": "sip.example.net",
        "password": SIP_PASSWORD,
    }
    response = api(cast.a.staff_key).post("/api/v1/sip-accounts/", body, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_set_password_replaces_the_digests(api, cast, world):
    before = world.sip_account.ha1
    url = f"/api/v1/sip-accounts/{world.sip_account.pk}/set-password/"
    response = api(cast.a.staff_key).post(url, {"password": "n3w-Secret-pw"}, format="json")
    assert response.status_code == 200, response.json()
    after = SipAccount.objects.get(pk=world.sip_account.pk).ha1
    assert after != before
    assert after == hashlib.md5(b"a2-office:sip.example.net:n3w-Secret-pw").hexdigest()
    assert api(cast.a.staff_key).post(url, {"password": "weak"}, format="json").status_code == 400
    assert api(cast.b.staff_key).post(url, {"password": "n3w-Secret-pw2"}, format="json").status_code == 404


def test_a_patch_cannot_set_the_password_or_the_login(api, cast, world):
    url = f"/api/v1/sip-accounts/{world.sip_account.pk}/"
    client = api(cast.a.staff_key)
    assert list(client.patch(url, {"password": "n3w-Secret-pw"}, format="json").json()) == ["password"]
    assert list(client.patch(url, {"username": "other"}, format="json").json()) == ["username"]
    response = client.patch(url, {"enabled": False}, format="json")
    assert response.status_code == 200
    assert SipAccount.objects.get(pk=world.sip_account.pk).enabled is False


def test_children_filter_by_peer(api, cast, world):
    client = api(cast.a.staff_key)
    assert ids(client.get("/api/v1/endpoints/", {"peer": world.peer.pk})) == {world.endpoint.pk}
    assert ids(client.get("/api/v1/endpoints/", {"peer": cast.a.customer.pk})) == set()
    # Naming another reseller's peer in a filter is refused like a missing one, revealing nothing.
    assert client.get("/api/v1/endpoints/", {"peer": cast.b.customer.pk}).status_code == 400
    assert client.get("/api/v1/endpoints/", {"peer": 999999}).status_code == 400
