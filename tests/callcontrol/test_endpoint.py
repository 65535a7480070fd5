"""POST /call-control/v1/authorize and /release, through Django (the DRF views) and through
the raw ASGI application OpenSIPS talks to in production."""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db import connections

from apps.billing.models import Account, Reservation
from apps.callcontrol import endpoint
from apps.peers import services as peer_services
from apps.peers.models import Peer
from tests.factories import NodeFactory
from tests.switching import BERLIN, CALLER, CUSTOMER_IP, SYSTEM, cluster

AUTHORIZE = "/call-control/v1/authorize"
RELEASE = "/call-control/v1/release"


def bearer(node) -> str:
    return f"Bearer {node.call_control_secret}"


def body(world, **fields) -> dict:
    values = {
        "call_id": "a84b4c76e66710@pc33",
        "node": world.node.name,
        "source_ip": CUSTOMER_IP,
        "source_port": 5060,
        "transport": "udp",
        "caller": CALLER,
        "callee": BERLIN,
    }
    values.update(fields)
    return {name: value for name, value in values.items() if value is not ...}


def post(client, path, payload, authorization=None):
    data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return client.post(path, data=data, content_type="application/json", **headers)


def reserved(peer) -> Decimal:
    return Account.objects.get(peer=peer).reserved


# --- Through Django --------------------------------------------------------------------------


def test_authorize_answers_a_routed_call_with_every_field(client, world):
    Peer.objects.filter(pk=world.customer.pk).update(max_calls=10, max_cps=2)
    response = post(client, AUTHORIZE, body(world), bearer(world.node))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    held = Reservation.objects.get()
    node = world.node
    routes = [
        {
            "route_id": world.routes[name].pk,
            "supplier_id": world.suppliers[name].pk,
            "gateway_id": world.gateways[name].pk,
            "uri": f"sip:{host}:5060",
            "caller": CALLER,
            "callee": BERLIN,
            "setup_timeout": None,
            "max_calls": None,
            "stop_hunting": False,
            "aor": None,
            "ring": None,
            "record": False,
            "codecs": None,
            "codecs_re": None,
            "leg": f"[leg_timeout=60,sip_h_X-SS-Route={world.suppliers[name].pk}:{world.gateways[name].pk}:"
            f"{BERLIN}]sofia/smartswitch/{BERLIN}@{host}:5060;fs_path=sip:{node.sip_address}:{node.sip_port}",
        }
        for name, host in (
            ("Bravo", "192.0.2.2"),
            ("Delta", "192.0.2.4"),
            ("Alpha", "192.0.2.1"),
            ("Charlie", "192.0.2.3"),
        )
    ]
    assert answer == {
        "action": "route",
        "code": 200,
        "reason": "OK",
        "call_id": "a84b4c76e66710@pc33",
        "peer_id": world.customer.pk,
        "max_duration": 7200,
        "reservation": held.pk,
        "caller": CALLER,
        "callee": BERLIN,
        "destination": "Germany",
        "kind": "off-net",
        "routes": routes,
        "redirect": None,
        "record": False,
        "recording": None,
        "capture": False,
        "announce": None,
        "limits": {"max_calls": 10, "cps": 2, "cps_node": 1},
    }
    assert (held.call_id, held.amount, held.node_id) == (
        "a84b4c76e66710@pc33",
        Decimal("2.40"),
        world.node.pk,
    )
    assert reserved(world.customer) == Decimal("2.40")


def test_a_refused_call_is_http_200_carrying_the_sip_code(client, world):
    response = post(client, AUTHORIZE, body(world, source_ip="192.0.2.200"), bearer(world.node))
    assert response.status_code == 200
    answer = response.json()
    assert (answer["action"], answer["code"], answer["reason"], answer["peer_id"]) == (
        "reject",
        403,
        "Unknown peer",
        None,
    )
    assert (answer["routes"], answer["max_duration"], answer["reservation"]) == ([], 0, None)
    assert not Reservation.objects.exists()


def test_a_redirect_answer_names_the_contact(client, world):
    cluster(redirect_to_assigned_node=True)
    world.customer.nodes.set([world.node2])
    answer = post(client, AUTHORIZE, body(world), bearer(world.node)).json()
    assert (answer["action"], answer["code"], answer["redirect"]) == (
        "redirect",
        302,
        f"sip:{BERLIN}@{world.node2.sip_address}:5060",
    )


def test_peer_id_and_port_may_come_as_numeric_strings_and_auth_user_identifies(client, world):
    answer = post(
        client,
        AUTHORIZE,
        body(world, source_ip=None, peer_id=str(world.customer.pk), source_port="5060"),
        bearer(world.node),
    ).json()
    assert (answer["action"], answer["peer_id"]) == ("route", world.customer.pk)


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        (b"{not json", {"non_field_errors": "The body is not JSON."}),
        (b"\xff\xfe\x00", {"non_field_errors": "The body is not JSON."}),
        (b"", {"non_field_errors": "The body is not JSON."}),
        ([], {"non_field_errors": "Send a JSON object."}),
        ({"callee": ...}, {"callee": "This field is required."}),
        ({"callee": ""}, {"callee": "This field is required."}),
        ({"callee": 4930123456}, {"callee": "Must be a string."}),
        ({"callee": "4" * 65}, {"callee": "At most 64 characters."}),
        ({"call_id": 123}, {"call_id": "Must be a string."}),
        ({"call_id": ...}, {"call_id": "This field is required."}),
        ({"node": ...}, {"node": "This field is required."}),
        ({"node": "n" * 32}, {"node": "At most 31 characters."}),
        ({"caller": ["1"]}, {"caller": "Must be a string."}),
        ({"source_ip": "999.0.0.1"}, {"source_ip": "Not an IP address."}),
        ({"source_ip": "198.51.100.10/32"}, {"source_ip": "Not an IP address."}),
        ({"source_ip": 3325256714}, {"source_ip": "Must be a string."}),
        (
            {"source_ip": ..., "peer_id": None, "auth_user": ""},
            {"source_ip": "Give source_ip, peer_id or auth_user to identify the caller."},
        ),
        ({"peer_id": "twelve"}, {"peer_id": "Must be an integer or null."}),
        ({"peer_id": True}, {"peer_id": "Must be an integer or null."}),
        ({"peer_id": 1.5}, {"peer_id": "Must be an integer or null."}),
        ({"source_port": "5060a"}, {"source_port": "Must be an integer or null."}),
        ({"transport": "websocket"}, {"transport": "At most 4 characters."}),
    ],
)
def test_a_malformed_authorize_body_is_400_naming_the_field(client, world, payload, errors):
    if isinstance(payload, dict):
        payload = body(world, **payload)
    response = post(client, AUTHORIZE, payload, bearer(world.node))
    assert response.status_code == 400
    assert response.json() == {"errors": errors}
    assert not Reservation.objects.exists()


def test_a_callee_with_non_digits_cannot_slip_past_a_blocklist(client, world):
    peer_services.add_blocklist_entries(
        peer_services.create_blocklist(actor=SYSTEM, name="Premium", kind="destination", applies_to_all=True),
        ["1900"],
        actor=SYSTEM,
    )
    plain = post(client, AUTHORIZE, body(world, callee="19005551234"), bearer(world.node))
    assert (plain.json()["action"], plain.json()["reason"]) == (
        "reject",
        "Blocked by Premium (destination 1900)",
    )
    dashed = post(
        client, AUTHORIZE, body(world, call_id="dashed@pbx", callee="1-900-5551234"), bearer(world.node)
    )
    assert dashed.status_code == 400 or dashed.json()["action"] == "reject", dashed.json()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer ",
        "Bearer not-the-secret",
        "Basic {secret}",
        "{secret}",
        "Bearer {secret}x",
        "Bearer {other}",  # node2's secret does not speak for node1
    ],
)
def test_a_wrong_or_missing_secret_is_401(client, world, authorization):
    if authorization:
        authorization = authorization.format(
            secret=world.node.call_control_secret, other=world.node2.call_control_secret
        )
    response = post(client, AUTHORIZE, body(world), authorization)
    assert response.status_code == 401
    assert response.json() == {"detail": "Unknown node or wrong secret."}
    assert not Reservation.objects.exists()


def test_the_scheme_is_case_insensitive(client, world):
    response = post(client, AUTHORIZE, body(world), f"bearer {world.node.call_control_secret}")
    assert response.status_code == 200


def test_an_unknown_node_is_401_whatever_the_secret(client, world):
    response = post(client, AUTHORIZE, body(world, node="ghost"), bearer(world.node))
    assert response.status_code == 401


def test_release_by_reservation_needs_the_matching_call_id_and_is_idempotent(client, world):
    answer = post(client, AUTHORIZE, body(world, call_id="r1@pbx"), bearer(world.node)).json()
    reservation = answer["reservation"]
    assert reserved(world.customer) == Decimal("2.40")

    wrong = {"node": "node1", "call_id": "someone-else@pbx", "reservation": reservation}
    assert post(client, RELEASE, wrong, bearer(world.node)).json() == {"released": 0}
    assert reserved(world.customer) == Decimal("2.40")

    right = {"node": "node1", "call_id": "r1@pbx", "reservation": reservation}
    response = post(client, RELEASE, right, bearer(world.node))
    assert (response.status_code, response.json()) == (200, {"released": 1})
    assert reserved(world.customer) == 0
    assert Reservation.objects.get(pk=reservation).outcome == Reservation.Outcome.FAILED
    assert post(client, RELEASE, right, bearer(world.node)).json() == {"released": 0}
    assert reserved(world.customer) == 0
    # The reservation number may come as a string, as OpenSIPS variables are.
    assert post(client, RELEASE, {**right, "reservation": str(reservation)}, bearer(world.node)).json() == {
        "released": 0
    }


def test_release_by_call_id_releases_that_calls_money(client, world):
    for call_id in ("c1@pbx", "c2@pbx"):
        answer = post(client, AUTHORIZE, body(world, call_id=call_id), bearer(world.node)).json()
        assert answer["action"] == "route"
    assert reserved(world.customer) == Decimal("4.80")

    by_call = {"node": "node2", "call_id": "c1@pbx"}  # any node of the cluster may release
    assert post(client, RELEASE, by_call, bearer(world.node2)).json() == {"released": 1}
    assert post(client, RELEASE, by_call, bearer(world.node2)).json() == {"released": 0}
    assert post(client, RELEASE, {**by_call, "reservation": None}, bearer(world.node2)).json() == {
        "released": 0
    }
    assert reserved(world.customer) == Decimal("2.40")
    assert list(Reservation.objects.active().values_list("call_id", flat=True)) == ["c2@pbx"]


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"node": "node1"}, {"call_id": "This field is required."}),
        ({"call_id": "x"}, {"node": "This field is required."}),
        (
            {"node": "node1", "call_id": "x", "reservation": "first"},
            {"reservation": "Must be an integer or null."},
        ),
        ([1], {"non_field_errors": "Send a JSON object."}),
        (b"nope", {"non_field_errors": "The body is not JSON."}),
    ],
)
def test_a_malformed_release_body_is_400(client, world, payload, errors):
    response = post(client, RELEASE, payload, bearer(world.node))
    assert (response.status_code, response.json()) == (400, {"errors": errors})


def test_release_needs_the_node_secret(client, world):
    post(client, AUTHORIZE, body(world, call_id="r2@pbx"), bearer(world.node))
    response = post(client, RELEASE, {"node": "node1", "call_id": "r2@pbx"}, "Bearer wrong")
    assert response.status_code == 401
    assert reserved(world.customer) == Decimal("2.40")


# --- Through the raw ASGI application ---------------------------------------------------------


def asgi(path, payload=b"", *, method="POST", authorization=None, chunks=1, app=None):
    """Send one HTTP request to an ASGI app; return (status, headers, JSON body)."""
    if app is None:
        app = endpoint.asgi_app
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json")]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def run():
        communicator = ApplicationCommunicator(app, scope)
        size = -(-len(data) // chunks) if data else 0
        pieces = [data[i : i + size] for i in range(0, len(data), size)] if size else [b""]
        for number, piece in enumerate(pieces):
            await communicator.send_input(
                {"type": "http.request", "body": piece, "more_body": number < len(pieces) - 1}
            )
        start = await communicator.receive_output(timeout=10)
        content = await communicator.receive_output(timeout=10)
        await communicator.wait(timeout=10)
        return start, content

    # A fresh thread gives asyncio.run a thread without a loop: Playwright's sync API, used by
    # the browser tests that may run earlier in the session, keeps one running in this thread.
    with ThreadPoolExecutor(max_workers=1) as loop_thread:
        start, content = loop_thread.submit(asyncio.run, run()).result()
    assert start["type"] == "http.response.start"
    headers = dict(start["headers"])
    assert int(headers[b"content-length"]) == len(content["body"])
    return start["status"], headers, json.loads(content["body"])


@pytest.fixture
def pool(monkeypatch):
    """The endpoint's thread pool, one per test, whose database connections are closed after."""
    # One thread, so that closing "its" connection closes every connection the pool opened
    # (an open one would keep PostgreSQL from dropping the test database).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-control-test")
    monkeypatch.setattr(endpoint, "_executor", executor)
    yield executor
    executor.submit(connections.close_all).result()
    executor.shutdown(wait=True)


@pytest.mark.parametrize(
    ("path", "method", "status", "detail"),
    [
        (AUTHORIZE, "GET", 405, "Use POST."),
        (RELEASE, "PUT", 405, "Use POST."),
        (AUTHORIZE + "/", "GET", 405, "Use POST."),
        ("/call-control/v1/explain", "POST", 404, "Not found."),
        ("/call-control/v1/", "POST", 404, "Not found."),
    ],
)
def test_the_asgi_app_answers_only_post_to_its_operations(path, method, status, detail):
    code, headers, answer = asgi(path, method=method)
    assert (code, answer) == (status, {"detail": detail})
    assert headers[b"content-type"] == b"application/json"


def test_the_asgi_app_refuses_a_body_over_16_kib_without_reading_on():
    code, _headers, answer = asgi(AUTHORIZE, b"x" * (endpoint.MAX_BODY + 1), chunks=4)
    assert (code, answer) == (413, {"detail": "Body too large."})


def test_the_project_asgi_application_sends_call_control_past_django():
    from smartswitch.asgi import application

    # Django would answer a GET on the DRF view with its own 405 body; the handler's is this.
    assert asgi(AUTHORIZE, method="GET", app=application)[::2] == (405, {"detail": "Use POST."})


@pytest.mark.django_db(transaction=True)
def test_the_asgi_app_routes_a_call_the_same_as_the_django_view(client, world, pool):
    payload = body(world, call_id="asgi-1@pbx")
    status, _headers, answer = asgi(AUTHORIZE, payload, authorization=bearer(world.node), chunks=3)
    assert status == 200
    held = Reservation.objects.get(call_id="asgi-1@pbx")
    assert (answer["action"], answer["reservation"], answer["max_duration"]) == ("route", held.pk, 7200)
    assert [r["supplier_id"] for r in answer["routes"]] == [
        world.suppliers[name].pk for name in ("Bravo", "Delta", "Alpha", "Charlie")
    ]

    # The DRF view answers the same call (asked again: the same reservation) identically.
    assert post(client, AUTHORIZE, payload, bearer(world.node)).json() == answer
    assert Reservation.objects.count() == 1

    release = {"node": "node1", "call_id": "asgi-1@pbx", "reservation": held.pk}
    assert asgi(RELEASE, release, authorization=bearer(world.node))[::2] == (200, {"released": 1})
    assert asgi(RELEASE, release, authorization=bearer(world.node))[::2] == (200, {"released": 0})
    assert reserved(world.customer) == 0


@pytest.mark.django_db(transaction=True)
def test_the_asgi_app_answers_400_and_401_like_the_view(world, pool):
    other = NodeFactory(name="node7")
    secret = bearer(world.node)
    assert asgi(AUTHORIZE, b"[", authorization=secret)[::2] == (
        400,
        {"errors": {"non_field_errors": "The body is not JSON."}},
    )
    assert asgi(AUTHORIZE, body(world, callee=...), authorization=secret)[::2] == (
        400,
        {"errors": {"callee": "This field is required."}},
    )
    assert asgi(AUTHORIZE, body(world), authorization="Bearer wrong")[::2] == (
        401,
        {"detail": "Unknown node or wrong secret."},
    )
    assert asgi(AUTHORIZE, body(world))[0] == 401
    assert asgi(AUTHORIZE, body(world, node="ghost"), authorization=secret)[0] == 401
    assert asgi(AUTHORIZE, body(world, node="node7"), authorization=bearer(other))[0] == 200
    assert not Reservation.objects.filter(node=world.node).exists()


# --- Overload control ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_authorization_that_waited_too_long_for_a_thread_is_refused_unread(world, pool, settings):
    settings.CALL_CONTROL_QUEUE_TIMEOUT = 0.5
    # The pool's only thread is busy for 0.7 s: the request queued behind it waits that long.
    pool.submit(time.sleep, 0.7)
    status, _headers, answer = asgi(
        AUTHORIZE, body(world, call_id="late@pbx"), authorization=bearer(world.node)
    )
    # A refusal (HTTP 200 carrying the SIP code): OpenSIPS then sends no release for it.
    assert (status, answer) == (200, endpoint.OVERLOADED)
    assert (answer["action"], answer["code"], answer["retry_after"]) == ("reject", 503, 1)
    assert not Reservation.objects.exists()  # nothing decided, nothing held
    assert reserved(world.customer) == 0

    # A release is never refused, however long it waited: it gives money back.
    payload = body(world, call_id="held@pbx")
    assert asgi(AUTHORIZE, payload, authorization=bearer(world.node))[0] == 200
    pool.submit(time.sleep, 0.7)
    release = {"node": world.node.name, "call_id": "held@pbx"}
    assert asgi(RELEASE, release, authorization=bearer(world.node))[::2] == (200, {"released": 1})
    assert reserved(world.customer) == 0


def test_refusals_unread_are_counted_and_logged_once_per_interval(caplog):
    shedding = endpoint.Shedding(every=10.0)
    for moment in (100.0, 101.0, 105.0, 110.5):
        shedding.add(0.6, now=moment)
    assert shedding.total == 4
    lines = [r.getMessage() for r in caplog.records if "overloaded" in r.getMessage()]
    assert lines == [
        "call control overloaded: 1 authorization(s) refused unread, the last after waiting 0.60s",
        "call control overloaded: 3 authorization(s) refused unread, the last after waiting 0.60s",
    ]
