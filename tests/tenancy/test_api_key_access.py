"""API keys' access levels: a read key reads and is refused every write, whatever the endpoint;
customers issue and revoke keys for themselves only; a login's portal language."""

import pytest
from django.core.exceptions import ValidationError

from apps.core.errors import DomainError, NotAllowed
from apps.dids import services as did_services
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.tenancy import services
from apps.tenancy.models import ApiKey, Membership
from apps.tenancy.scope import Scope

SYSTEM = Scope.system()
READ_ONLY = "This API key can only read."


def key(*, scope: str, access: str, reseller=None, peer=None) -> str:
    _, token = services.create_api_key(
        actor=SYSTEM, name=f"{scope} {access}", scope=scope, reseller=reseller, peer=peer, access=access
    )
    return token


def peer_url(peer) -> str:
    return f"/api/v1/peers/{peer.pk}/"


def test_keys_issued_before_access_levels_still_write(cast):
    assert set(ApiKey.objects.values_list("access", flat=True)) == {ApiKey.Access.READ_WRITE}


def test_a_read_key_reads(api, cast):
    client = api(key(scope=ApiKey.Scope.RESELLER, access=ApiKey.Access.READ, reseller=cast.a.reseller))

    assert client.get("/api/v1/peers/").status_code == 200
    assert client.get(peer_url(cast.a.customer)).status_code == 200
    assert client.head(peer_url(cast.a.customer)).status_code == 200
    assert client.options(peer_url(cast.a.customer)).status_code == 200


def test_a_read_key_is_refused_every_write(api, cast):
    client = api(key(scope=ApiKey.Scope.RESELLER, access=ApiKey.Access.READ, reseller=cast.a.reseller))
    customer = cast.a.customer

    responses = [
        client.post("/api/v1/peers/", {"name": "Sneaky", "role": "customer"}, format="json"),
        client.patch(peer_url(customer), {"company": "Changed"}, format="json"),
        client.put(peer_url(customer), {"name": "Renamed", "role": "customer"}, format="json"),
        client.delete(peer_url(customer)),
    ]

    assert [response.status_code for response in responses] == [403] * 4
    assert all(response.json()["detail"] == READ_ONLY for response in responses)
    customer.refresh_from_db()
    assert (customer.name, customer.company) == ("Customer A", "")
    assert not Peer.objects.filter(name="Sneaky").exists()


def test_a_read_and_write_key_writes(api, cast):
    client = api(key(scope=ApiKey.Scope.RESELLER, access=ApiKey.Access.READ_WRITE, reseller=cast.a.reseller))

    response = client.patch(peer_url(cast.a.customer), {"company": "Changed"}, format="json")

    assert response.status_code == 200, response.content
    cast.a.customer.refresh_from_db()
    assert cast.a.customer.company == "Changed"


def test_a_customers_read_key_cannot_use_the_write_actions_customers_have(api, cast):
    account = peer_services.add_sip_account(
        cast.a.customer, actor=SYSTEM, username="a-pbx", domain="sip.example.net", password="sip-Pass-2024"
    )
    did = did_services.create_did(
        actor=SYSTEM, number="442079463333", customer=cast.a.customer, targets=[(account, None)]
    )
    url = f"/api/v1/dids/{did.pk}/set-targets/"
    read = api(key(scope=ApiKey.Scope.CUSTOMER, access=ApiKey.Access.READ, peer=cast.a.customer))
    write = api(key(scope=ApiKey.Scope.CUSTOMER, access=ApiKey.Access.READ_WRITE, peer=cast.a.customer))

    refused = read.post(url, {"targets": []}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == READ_ONLY
    assert did.targets.count() == 1
    assert read.get(f"/api/v1/dids/{did.pk}/").status_code == 200

    assert write.post(url, {"targets": []}, format="json").status_code == 200
    assert did.targets.count() == 0


def test_an_unknown_access_level_is_refused(cast):
    with pytest.raises(ValidationError):
        services.create_api_key(
            actor=SYSTEM, name="odd", scope=ApiKey.Scope.CUSTOMER, peer=cast.a.customer, access="admin"
        )


def test_a_customer_issues_and_revokes_its_own_keys(cast):
    actor = Scope.of_user(cast.a.customer_user)

    issued, token = services.create_api_key(
        actor=actor, name="CRM", scope=ApiKey.Scope.CUSTOMER, peer=cast.a.customer, access=ApiKey.Access.READ
    )

    assert (issued.peer_id, issued.access, issued.created_by) == (
        cast.a.customer.pk,
        ApiKey.Access.READ,
        cast.a.customer_user,
    )
    assert services.authenticate_api_key(token) == issued
    services.revoke_api_key(issued, actor=actor)
    assert services.authenticate_api_key(token) is None


@pytest.mark.parametrize("attempt", ["other customer", "reseller key", "operator key", "no peer"])
def test_a_customer_issues_no_key_but_its_own(cast, attempt):
    actor = Scope.of_user(cast.a.customer_user)
    kwargs = {
        "other customer": {"scope": ApiKey.Scope.CUSTOMER, "peer": cast.b.customer},
        "reseller key": {"scope": ApiKey.Scope.RESELLER, "reseller": cast.a.reseller},
        "operator key": {"scope": ApiKey.Scope.OPERATOR},
        "no peer": {"scope": ApiKey.Scope.CUSTOMER},
    }[attempt]

    with pytest.raises(NotAllowed):
        services.create_api_key(actor=actor, name="stolen", **kwargs)
    assert not ApiKey.objects.filter(name="stolen").exists()


def test_a_customer_cannot_revoke_someone_elses_key(cast):
    other = ApiKey.objects.get(name="B customer")

    for who in (cast.a.customer_user, cast.a.staff):
        with pytest.raises(NotAllowed):
            services.revoke_api_key(other, actor=Scope.of_user(who))
    other.refresh_from_db()
    assert other.revoked_at is None


def test_a_login_remembers_its_language(cast):
    membership = Membership.objects.get(user=cast.a.customer_user)

    services.set_login_language(membership, actor=Scope.of_user(cast.a.customer_user), language="es")

    assert Membership.objects.get(pk=membership.pk).language == "es"
    with pytest.raises(DomainError):
        services.set_login_language(membership, actor=SYSTEM, language="xx")
    with pytest.raises(NotAllowed):
        services.set_login_language(membership, actor=Scope.of_user(cast.b.staff), language="en")
    assert Membership.objects.get(pk=membership.pk).language == "es"


@pytest.mark.parametrize(
    ("posted", "stored"), [("read", "read"), ("read_write", "read_write"), (None, "read_write")]
)
def test_the_admin_issues_keys_with_an_access_level(cast, login, posted, stored):
    from django.urls import reverse

    data = {"name": "billing sync", "scope": "reseller"} | ({"access": posted} if posted else {})

    login(cast.a.staff).post(reverse("admin:tenancy_apikey_add"), data)

    assert ApiKey.objects.get(name="billing sync").access == stored
