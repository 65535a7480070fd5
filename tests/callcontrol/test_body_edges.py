"""Call control reads a body only for a caller that knows a node's secret, and reads it with the
API's nesting limit: a deep body is a 400 for a node and a 401 for anyone else, never a 500."""

import json

import pytest

from apps.billing.models import Reservation
from apps.callcontrol.endpoint import handle
from apps.core.api import MAX_JSON_DEPTH
from tests.callcontrol.test_endpoint import asgi

AUTHORIZE = "/call-control/v1/authorize"
RELEASE = "/call-control/v1/release"
DEEP = b"[" * 4000
TOO_DEEP = {"non_field_errors": f"The body is nested deeper than {MAX_JSON_DEPTH} levels."}


def post(client, path, data: bytes, authorization=None):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return client.post(path, data=data, content_type="application/json", **headers)


@pytest.mark.parametrize("path", [AUTHORIZE, RELEASE])
def test_a_body_nested_4000_deep_from_a_node_is_a_400(client, world, path):
    response = post(client, path, DEEP, f"Bearer {world.node.call_control_secret}")
    assert (response.status_code, response.json()) == (400, {"errors": TOO_DEEP})
    assert not Reservation.objects.exists()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic x"])
@pytest.mark.parametrize("data", [DEEP, b"{not json", json.dumps({"node": "node1"}).encode()])
def test_without_a_nodes_secret_the_body_is_not_read(client, world, authorization, data):
    response = post(client, AUTHORIZE, data, authorization)
    assert (response.status_code, response.json()) == (401, {"detail": "Unknown node or wrong secret."})


def test_the_asgi_path_answers_the_same(world):
    # smartswitch.asgi hands /call-control/ to endpoint.asgi_app, which runs this same `handle`.
    secret = f"Bearer {world.node.call_control_secret}"
    assert handle("authorize", DEEP, None) == (401, {"detail": "Unknown node or wrong secret."})
    assert handle("authorize", DEEP, secret) == (400, {"errors": TOO_DEEP})
    nested_in_a_field = json.dumps({"node": "node1", "call_id": [[[[]]]] * 1}).encode()
    assert handle("authorize", nested_in_a_field, secret)[0] == 400


def test_a_nodes_secret_speaks_only_for_that_node_once_the_body_is_read(client, world):
    body = json.dumps({"node": "node1", "call_id": "x@pbx", "callee": "4930123456", "source_ip": "1.2.3.4"})
    response = post(client, AUTHORIZE, body.encode(), f"Bearer {world.node2.call_control_secret}")
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["GET", "TRACE", "OPTIONS"])
def test_a_method_other_than_post_is_a_405_that_says_post(client, method):
    status, headers, payload = asgi(AUTHORIZE, method=method)
    assert (status, headers[b"allow"], payload) == (405, b"POST", {"detail": "Use POST."})
    assert "POST" in client.generic(method, AUTHORIZE)["Allow"]
