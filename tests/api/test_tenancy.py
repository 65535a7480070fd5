"""Someone else's objects are invisible: absent from lists, 404 in detail, untouchable.

The cast and reseller A's objects are built once for the module (rows_for_module), also for
the tests that only need the cast: each test's writes are rolled back after it, as before.
"""

import pytest

from apps.peers.models import Peer
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope
from tests.api.conftest import build_world, ids
from tests.conftest import module_crowd

ENDPOINTS = [
    "peers", "endpoints", "gateways", "sip-accounts", "accounts", "ledger-entries", "rate-tables",
    "rates", "cdrs",
]  # fmt: skip
# Endpoints where reseller staff may write (customers never may); the others are read only.
WRITABLE = {"peers", "endpoints", "gateways", "sip-accounts"}
DELETABLE = {"endpoints", "gateways", "sip-accounts"}
# A change each writable endpoint would accept from the owner, to try as a stranger.
CHANGES = {
    "peers": {"name": "Hijacked"},
    "endpoints": {"description": "hijacked"},
    "gateways": {"host": "evil.example.com"},
    "sip-accounts": {"enabled": False},
}
# Reseller B's staff and customer, and reseller A's own customer: none owns the world's objects.
STRANGERS = ["b.staff_key", "b.customer_key", "a.customer_key"]


crowd, cast, world = module_crowd(build_world)


def key_of(cast, path: str) -> str:
    tenant, attribute = path.split(".")
    return getattr(getattr(cast, tenant), attribute)


def url(prefix: str, pk: int | None = None) -> str:
    return f"/api/v1/{prefix}/" + (f"{pk}/" if pk else "")


@pytest.mark.parametrize("prefix", ENDPOINTS)
def test_owner_and_operator_see_the_object(api, cast, world, prefix):
    obj = world.object_for(prefix)
    for key in (cast.a.staff_key, cast.operator_key):
        assert obj.pk in ids(api(key).get(url(prefix), {"limit": 500}))
        assert api(key).get(url(prefix, obj.pk)).status_code == 200


@pytest.mark.parametrize("stranger", STRANGERS)
@pytest.mark.parametrize("prefix", ENDPOINTS)
def test_stranger_does_not_list_the_object(api, cast, world, prefix, stranger):
    assert world.object_for(prefix).pk not in ids(
        api(key_of(cast, stranger)).get(url(prefix), {"limit": 500})
    )


@pytest.mark.parametrize("stranger", STRANGERS)
@pytest.mark.parametrize("prefix", ENDPOINTS)
def test_stranger_gets_404_for_the_object(api, cast, world, prefix, stranger):
    response = api(key_of(cast, stranger)).get(url(prefix, world.object_for(prefix).pk))
    assert response.status_code == 404


def expected_write_status(prefix: str, stranger: str, *, delete: bool) -> int:
    if prefix not in WRITABLE:
        return 405
    # Customers are refused any write before the method or the object is looked at.
    if "customer" in stranger:
        return 403
    if delete and prefix not in DELETABLE:
        return 405
    # A reseller cannot find the object at all.
    return 404


@pytest.mark.parametrize("stranger", STRANGERS)
@pytest.mark.parametrize("prefix", ENDPOINTS)
def test_stranger_cannot_change_the_object(api, cast, world, prefix, stranger):
    obj = world.object_for(prefix)
    changes = CHANGES.get(prefix, {"description": "hijacked"})
    response = api(key_of(cast, stranger)).patch(url(prefix, obj.pk), changes, format="json")
    assert response.status_code == expected_write_status(prefix, stranger, delete=False)
    fresh = type(obj).objects.get(pk=obj.pk)
    for name, value in changes.items():
        assert getattr(fresh, name, None) != value


@pytest.mark.parametrize("stranger", STRANGERS)
@pytest.mark.parametrize("prefix", ENDPOINTS)
def test_stranger_cannot_delete_the_object(api, cast, world, prefix, stranger):
    obj = world.object_for(prefix)
    response = api(key_of(cast, stranger)).delete(url(prefix, obj.pk))
    assert response.status_code == expected_write_status(prefix, stranger, delete=True)
    assert type(obj).objects.filter(pk=obj.pk).exists()


@pytest.mark.parametrize("prefix", ["endpoints", "gateways", "sip-accounts"])
def test_reseller_cannot_add_to_another_resellers_peer(api, cast, world, prefix):
    body = {
        "endpoints": {"peer": world.peer.pk, "ip": "198.51.100.7"},
        "gateways": {"peer": world.user_peer.pk, "name": "gw", "host": "gw.example.com"},
        "sip-accounts": {
            "peer": world.peer.pk,
            "username": "x1",
            "domain": "d.example",
            "password": "abc-12345-x",
        },
    }[prefix]
    response = api(cast.b.staff_key).post(url(prefix), body, format="json")
    assert response.status_code == 400
    assert "does not exist" in response.json()["peer"][0]
    owner = world.user_peer if prefix == "gateways" else world.peer
    assert getattr(owner, prefix.replace("-", "_")).count() == 1


def test_reseller_key_lists_only_its_own_peers(api, cast, world):
    names = {row["name"] for row in api(cast.a.staff_key).get("/api/v1/peers/").json()["results"]}
    assert names == {"Customer A", "Customer A2", "Trunk A3"}
    names = {row["name"] for row in api(cast.b.staff_key).get("/api/v1/peers/").json()["results"]}
    assert names == {"Customer B"}


def test_customer_key_sees_only_its_own_peer_account_and_price_list(api, cast, world):
    client = api(cast.a.customer_key)
    assert ids(client.get("/api/v1/peers/")) == {cast.a.customer.pk}
    assert ids(client.get("/api/v1/accounts/")) == {cast.a.customer.account.pk}
    assert ids(client.get("/api/v1/rate-tables/")) == {cast.a.sell_table.pk}


def test_operator_key_sees_every_peer(api, cast, world):
    response = api(cast.operator_key).get("/api/v1/peers/")
    assert response.json()["count"] == Peer.objects.count() == 6


@pytest.mark.parametrize("prefix", [*ENDPOINTS, "nodes"])
def test_no_key_is_401(api, cast, prefix):
    response = api().get(url(prefix))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_revoked_key_is_401(api, cast):
    key = ApiKey.objects.get(name="A staff")
    assert api(cast.a.staff_key).get("/api/v1/peers/").status_code == 200
    tenancy_services.revoke_api_key(key, actor=Scope.system())
    response = api(cast.a.staff_key).get("/api/v1/peers/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Unknown or revoked API key."}


@pytest.mark.parametrize("header", ["Bearer", "Bearer ssk_nope", "Bearer not-a-key", "Bearer a b"])
def test_malformed_or_unknown_key_is_401(api, cast, header):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/peers/").status_code == 401


def test_session_login_is_scoped_like_a_key(api, cast, world):
    client = api()
    client.force_login(cast.b.staff)
    assert {row["name"] for row in client.get("/api/v1/peers/").json()["results"]} == {"Customer B"}


def test_login_without_a_tenant_is_403(api, cast, django_user_model):
    client = api()
    client.force_login(django_user_model.objects.create_user("nobody", password="x-Long-pass-1"))
    assert client.get("/api/v1/peers/").status_code == 403


@pytest.mark.parametrize(
    "prefix", ["", "peers/", "endpoints/", "gateways/", "sip-accounts/", "cdrs/", "rates/"]
)
def test_browsable_forms_offer_only_the_scopes_objects(api, cast, world, prefix):
    client = api()
    client.force_login(cast.b.staff)
    response = client.get(f"/api/v1/{prefix}", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Customer B" in page or prefix in ("", "rates/", "gateways/")
    for hidden in ("Customer A", "Trunk A3", "Carrier X", "Direct Customer", "Retail A2"):
        assert hidden not in page
