"""Nodes are the operator's: resellers and customers get 403, even for reading."""

import pytest

from apps.audit.models import AuditEntry
from apps.nodes.models import Node


@pytest.mark.parametrize("key", ["a.staff_key", "a.customer_key", "b.staff_key"])
def test_nodes_are_operator_only(api, cast, key):
    tenant, attribute = key.split(".")
    client = api(getattr(getattr(cast, tenant), attribute))
    assert client.get("/api/v1/nodes/").status_code == 403
    assert client.get(f"/api/v1/nodes/{cast.node.pk}/").status_code == 403
    body = {"name": "node9", "management_address": "10.0.0.9", "sip_address": "198.51.100.9"}
    assert client.post("/api/v1/nodes/", body, format="json").status_code == 403
    assert (
        client.patch(f"/api/v1/nodes/{cast.node.pk}/", {"enabled": False}, format="json").status_code == 403
    )
    assert not Node.objects.filter(name="node9").exists()
    assert Node.objects.get(pk=cast.node.pk).enabled


def test_the_operator_adds_and_changes_nodes(api, cast):
    client = api(cast.operator_key)
    assert [row["name"] for row in client.get("/api/v1/nodes/").json()["results"]] == ["node1"]
    body = {"name": "node2", "management_address": "10.0.0.2", "sip_address": "198.51.100.2"}
    response = client.post("/api/v1/nodes/", body, format="json")
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    assert AuditEntry.objects.filter(action="node.created", object_id=str(pk)).exists()

    response = client.patch(f"/api/v1/nodes/{pk}/", {"enabled": False, "sip_port": 5070}, format="json")
    assert response.status_code == 200, response.json()
    assert Node.objects.values_list("enabled", "sip_port").get(pk=pk) == (False, 5070)
    assert client.delete(f"/api/v1/nodes/{pk}/").status_code == 405


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Node_2"}, "name"),
        ({"name": "node1"}, "name"),
        ({"sip_port": 0}, "sip_port"),
        ({"sip_address": "nowhere"}, "sip_address"),
    ],
)
def test_a_bad_node_is_a_400_naming_the_field(api, cast, body, field):
    base = {"name": "node2", "management_address": "10.0.0.2", "sip_address": "198.51.100.2"}
    response = api(cast.operator_key).post("/api/v1/nodes/", {**base, **body}, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert Node.objects.count() == 1


def test_two_nodes_cannot_share_a_sip_socket(api, cast):
    body = {"name": "node2", "management_address": "10.0.0.2", "sip_address": cast.node.sip_address}
    response = api(cast.operator_key).post("/api/v1/nodes/", body, format="json")
    assert response.status_code == 400
    # Its SIP port and its FreeSWITCH's port are both the first node's.
    assert {"sip_port", "media_port"} <= set(response.json()), response.json()
    assert Node.objects.count() == 1


def test_a_node_keeps_its_name(api, cast):
    response = api(cast.operator_key).patch(
        f"/api/v1/nodes/{cast.node.pk}/", {"name": "renamed"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["name"]
    assert Node.objects.get(pk=cast.node.pk).name == "node1"
