"""Peers through the API: created with an account and an audit entry, validated by the model."""

from decimal import Decimal

import pytest

from apps.audit.models import AuditEntry
from apps.billing.models import Account
from apps.peers.models import Peer
from apps.tenancy.models import ApiKey

PEERS = "/api/v1/peers/"


def create(client, **body):
    return client.post(PEERS, {"name": "New Co", "role": "customer", **body}, format="json")


def test_creating_a_peer_opens_its_account_and_writes_an_audit_entry(api, cast):
    response = create(
        api(cast.operator_key),
        reseller=cast.a.reseller.pk,
        sell_rate_table=cast.a.sell_table.pk,
        tech_prefix="0042",
        account={"mode": "postpaid", "credit_limit": "50.5", "currency": "USD"},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["reseller"] == cast.a.reseller.pk
    assert body["status"] == "active"
    assert "account" not in body
    peer = Peer.objects.get(pk=body["id"])
    account = Account.objects.get(peer=peer)
    assert (account.mode, str(account.credit_limit), account.currency) == ("postpaid", "50.500000", "USD")
    entry = AuditEntry.objects.get(action="peer.created", object_id=str(peer.pk))
    assert entry.actor_label == f"api-key:{ApiKey.objects.get(scope='operator').name}"
    assert entry.reseller_id == cast.a.reseller.pk


def test_a_reseller_key_creates_peers_for_its_own_reseller(api, cast):
    response = create(api(cast.a.staff_key))
    assert response.status_code == 201, response.json()
    assert Peer.objects.get(pk=response.json()["id"]).reseller == cast.a.reseller
    assert Account.objects.get(peer_id=response.json()["id"]).currency == "USD"


def test_a_reseller_key_cannot_create_for_another_reseller(api, cast):
    response = create(api(cast.a.staff_key), reseller=cast.b.reseller.pk)
    assert response.status_code == 400
    assert "does not exist" in response.json()["reseller"][0]
    assert not Peer.objects.filter(name="New Co").exists()


def test_a_customer_key_cannot_create_or_change_peers(api, cast):
    client = api(cast.a.customer_key)
    assert create(client).status_code == 403
    response = client.patch(f"{PEERS}{cast.a.customer.pk}/", {"max_calls": 1000}, format="json")
    assert response.status_code == 403
    assert Peer.objects.get(pk=cast.a.customer.pk).max_calls is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "boss"}, "role"),
        ({"tech_prefix": "12a"}, "tech_prefix"),
        ({"max_calls": "lots"}, "max_calls"),
        ({"max_calls": -1}, "max_calls"),
        ({"max_calls": 2**31}, "max_calls"),
        ({"enabled": "perhaps"}, "enabled"),
        ({"name": ""}, "name"),
        ({"nodes": "node1"}, "nodes"),
        ({"account": "postpaid"}, "account"),
        ({"account": {"currency": "euro"}}, "account"),
        ({"account": {"mode": "prepaid", "credit_limit": "10"}}, "credit_limit"),
        ({"sell_rate_table": 999999}, "sell_rate_table"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(api, cast, body, field):
    response = create(api(cast.a.staff_key), **body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Peer.objects.filter(name="New Co").exists()


def test_a_reseller_cannot_create_a_supplier(api, cast):
    response = create(api(cast.a.staff_key), role="supplier")
    assert response.status_code == 400
    assert response.json() == {
        "role": ["Suppliers belong to the operator; a reseller's peers are customers or users."]
    }


def test_a_price_list_of_another_reseller_is_refused(api, cast):
    response = create(api(cast.a.staff_key), sell_rate_table=cast.b.sell_table.pk)
    assert response.status_code == 400
    assert "does not exist" in response.json()["sell_rate_table"][0]
    # The operator sees every table, so the model's rule is what refuses it here.
    response = create(
        api(cast.operator_key), reseller=cast.a.reseller.pk, sell_rate_table=cast.b.sell_table.pk
    )
    assert response.status_code == 400
    assert response.json() == {"sell_rate_table": ["The price list must belong to the peer's owner."]}


def test_a_duplicate_name_is_a_400(api, cast):
    response = create(api(cast.a.staff_key), name="Customer A")
    assert response.status_code == 400
    assert response.json() == {"name": ["This owner already has a peer of that name."]}


@pytest.mark.parametrize(
    "body", ['[{"name": "New Co", "role": "customer"}]', '"New Co"', "42", "null", "true"]
)
def test_json_that_is_not_an_object_is_a_400(api, cast, body):
    response = api(cast.a.staff_key).post(PEERS, body, content_type="application/json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_malformed_json_is_a_400(api, cast):
    response = api(cast.a.staff_key).post(PEERS, '{"name": "New Co",', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_patch_changes_settings_through_the_service(api, cast):
    response = api(cast.a.staff_key).patch(
        f"{PEERS}{cast.a.customer.pk}/", {"max_calls": 30, "notes": "VIP"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["max_calls"] == 30
    peer = Peer.objects.get(pk=cast.a.customer.pk)
    assert (peer.max_calls, peer.notes) == (30, "VIP")
    entry = AuditEntry.objects.get(action="peer.changed", object_id=str(peer.pk))
    assert entry.data["changes"]["max_calls"] == [None, 30]


def test_a_reseller_sets_its_customers_maximum_price(api, cast):
    url = f"{PEERS}{cast.a.customer.pk}/"
    response = api(cast.a.staff_key).patch(url, {"max_price": "0.25"}, format="json")
    assert response.status_code == 200, response.json()
    assert Peer.objects.get(pk=cast.a.customer.pk).max_price == Decimal("0.25")
    assert api(cast.a.staff_key).patch(url, {"max_price": "-1"}, format="json").status_code == 400
    # Another reseller's staff cannot reach it.
    assert api(cast.b.staff_key).patch(url, {"max_price": "9"}, format="json").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "user"}, "role"),
        ({"reseller": None}, "reseller"),
        ({"account": {"mode": "postpaid"}}, "account"),
    ],
)
def test_patch_cannot_change_what_is_fixed_at_creation(api, cast, body, field):
    response = api(cast.operator_key).patch(f"{PEERS}{cast.a.customer.pk}/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_patch_may_repeat_a_fixed_value(api, cast):
    response = api(cast.a.staff_key).patch(
        f"{PEERS}{cast.a.customer.pk}/", {"role": "customer", "reseller": cast.a.reseller.pk}, format="json"
    )
    assert response.status_code == 200, response.json()


def test_put_is_not_offered(api, cast):
    response = api(cast.a.staff_key).put(f"{PEERS}{cast.a.customer.pk}/", {"name": "X"}, format="json")
    assert response.status_code == 405


def test_suspend_and_resume(api, cast):
    client = api(cast.a.staff_key)
    response = client.post(
        f"{PEERS}{cast.a.customer.pk}/suspend/", {"reason": "unpaid invoice"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["suspended_reason"]) == ("suspended", "unpaid invoice")
    assert Peer.objects.get(pk=cast.a.customer.pk).is_suspended
    assert AuditEntry.objects.filter(action="peer.suspended", object_id=str(cast.a.customer.pk)).exists()

    response = client.post(f"{PEERS}{cast.a.customer.pk}/resume/")
    assert response.status_code == 200
    assert response.json()["status"] == "active"
    assert not Peer.objects.get(pk=cast.a.customer.pk).is_suspended


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}])
def test_suspend_needs_a_reason(api, cast, body):
    response = api(cast.a.staff_key).post(f"{PEERS}{cast.a.customer.pk}/suspend/", body, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    assert not Peer.objects.get(pk=cast.a.customer.pk).is_suspended


@pytest.mark.parametrize(("key", "status"), [("b.staff_key", 404), ("a.customer_key", 403)])
def test_strangers_and_customers_cannot_suspend(api, cast, key, status):
    tenant, attribute = key.split(".")
    client = api(getattr(getattr(cast, tenant), attribute))
    response = client.post(f"{PEERS}{cast.a.customer.pk}/suspend/", {"reason": "x"}, format="json")
    assert response.status_code == status
    assert not Peer.objects.get(pk=cast.a.customer.pk).is_suspended


def test_the_operator_assigns_nodes_and_resellers_cannot(api, cast):
    url = f"{PEERS}{cast.a.customer.pk}/assign-nodes/"
    assert api(cast.a.staff_key).post(url, {"nodes": []}, format="json").status_code == 403
    response = api(cast.operator_key).post(url, {"nodes": [cast.node.pk]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["nodes"] == [cast.node.pk]
    assert list(cast.a.customer.nodes.all()) == [cast.node]


def test_a_reseller_cannot_name_a_node_when_creating(api, cast):
    response = create(api(cast.a.staff_key), nodes=[cast.node.pk])
    assert response.status_code == 400
    assert "does not exist" in response.json()["nodes"][0]


def test_filters(api, cast):
    client = api(cast.operator_key)
    names = lambda **params: {row["name"] for row in client.get(PEERS, params).json()["results"]}  # noqa: E731
    assert names(role="supplier") == {"Carrier X"}
    assert names(reseller=cast.b.reseller.pk) == {"Customer B"}
    assert names(operator_owned=True) == {"Carrier X", "Direct Customer"}
    assert names(name="customer a") == {"Customer A"}
    Peer.objects.filter(pk=cast.supplier.pk).update(suspended_at="2026-01-01T00:00:00Z")
    assert names(suspended=True) == {"Carrier X"}
    assert "Carrier X" not in names(suspended=False)
