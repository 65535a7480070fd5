"""/api/v1/registrations/: outbound registrations through the same service, operator-only like gateways."""

from apps.opensips.models import Registrant
from apps.peers.models import Peer, Registration
from tests.factories import make_peer

BODY = {"registrar": "sip:reg.carrier.example", "aor": "sip:4420@carrier.example", "username": "4420"}


def test_the_operator_registers_a_node_to_a_supplier_and_the_password_never_comes_back(api, cast):
    client = api(cast.operator_key)
    response = client.post(
        "/api/v1/registrations/",
        {**BODY, "peer": cast.supplier.pk, "node": cast.node.pk, "password": "s3cret"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert "password" not in response.json()
    assert Registrant.objects.get().password == "s3cret"
    pk = response.json()["id"]
    assert client.patch(f"/api/v1/registrations/{pk}/", {"expiry": 600}, format="json").status_code == 200
    assert Registrant.objects.get().expiry == 600
    assert client.delete(f"/api/v1/registrations/{pk}/").status_code == 204
    assert not Registrant.objects.exists()


def test_a_registration_without_its_node_in_dedicated_mode_is_a_400_naming_node(api, cast):
    response = api(cast.operator_key).post(
        "/api/v1/registrations/", {**BODY, "peer": cast.supplier.pk}, format="json"
    )
    assert response.status_code == 400
    assert "node" in response.json(), response.json()


def test_resellers_neither_see_nor_add_registrations(api, cast, system):
    from apps.peers import services

    services.add_registration(cast.supplier, actor=system, node=cast.node, **BODY)
    # Not even for a two-way peer of its own: registrations are the operator's.
    own = make_peer("Reseller A two-way", reseller=cast.a.reseller, role=Peer.Role.USER)
    for key in (cast.a.staff_key, cast.a.customer_key):
        client = api(key)
        assert client.get("/api/v1/registrations/").status_code == 403
        for peer in (cast.supplier, own):
            body = {**BODY, "peer": peer.pk, "node": cast.node.pk}
            assert client.post("/api/v1/registrations/", body, format="json").status_code == 403
    assert Registration.objects.count() == 1
