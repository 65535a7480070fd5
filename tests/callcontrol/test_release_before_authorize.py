"""Issue 13: a release that overtakes its authorize leaves no money held (docs/CALL_CONTROL.md)."""

import json
from datetime import timedelta
from decimal import Decimal

from apps.billing.models import Account, Reservation
from apps.callcontrol import endpoint
from apps.callcontrol import snapshot as snapshots
from tests.switching import BERLIN, CALLER, CUSTOMER_IP

AUTHORIZE = "/call-control/v1/authorize"
RELEASE = "/call-control/v1/release"


def bearer(node) -> str:
    return f"Bearer {node.call_control_secret}"


def post(client, path, payload, authorization):
    return client.post(
        path, data=json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=authorization
    )


def authorize_body(world, call_id: str) -> dict:
    return {
        "call_id": call_id,
        "node": world.node.name,
        "source_ip": CUSTOMER_IP,
        "caller": CALLER,
        "callee": BERLIN,
    }


def money_and_live_calls(world) -> tuple[Decimal, int]:
    account = Account.objects.get(peer=world.customer)
    return account.reserved, Reservation.objects.active().filter(customer=world.customer).count()


def test_a_release_by_call_id_that_overtakes_its_authorize_leaves_no_open_reservation(
    client, world, monkeypatch
):
    # Another live call of the customer, so that "back to what it was" is not just zero.
    other = post(client, AUTHORIZE, authorize_body(world, "other@pbx"), bearer(world.node)).json()
    assert other["action"] == "route"
    before = money_and_live_calls(world)
    assert before[1] == 1

    # OpenSIPS gave up waiting (2 s) while call control was still deciding, and released the
    # call by Call-ID: the release arrives before the reservation exists.
    decide = endpoint.decide
    overtaken = []

    def decide_then_release(snapshot, request, *, at):
        decision = decide(snapshot, request, at=at)
        answer = post(
            client, RELEASE, {"node": world.node.name, "call_id": request.call_id}, bearer(world.node)
        )
        overtaken.append(answer.json())
        return decision

    monkeypatch.setattr(endpoint, "decide", decide_then_release)
    late = post(client, AUTHORIZE, authorize_body(world, "late@pbx"), bearer(world.node)).json()

    assert overtaken == [{"released": 0}]
    assert not Reservation.objects.active().filter(call_id="late@pbx").exists()
    assert money_and_live_calls(world) == before
    # Nobody is listening for this answer any more; it must not route a call without money.
    assert (late["action"], late["code"], late["reservation"], late["routes"]) == ("reject", 487, None, [])


def test_a_release_marker_does_not_refuse_a_later_call_reusing_the_call_id(client, world):
    # The caller retries with the same Call-ID after our 503: that authorize starts after the
    # release, so the marker left by the release is not about it.
    released = post(client, RELEASE, {"node": world.node.name, "call_id": "again@pbx"}, bearer(world.node))
    assert released.json() == {"released": 0}
    answer = post(client, AUTHORIZE, authorize_body(world, "again@pbx"), bearer(world.node)).json()
    assert answer["action"] == "route"
    assert Reservation.objects.active().filter(call_id="again@pbx").count() == 1


def answered(world, payload: dict) -> tuple[int, dict]:
    # The ASGI hot path serves it; OpenSIPS sends it from its reply route (docs/CALL_CONTROL.md).
    return endpoint.handle("answered", json.dumps(payload).encode(), bearer(world.node))


def test_answered_is_served_at_its_url_too(client, world):
    answer = post(client, AUTHORIZE, authorize_body(world, "url@pbx"), bearer(world.node)).json()
    payload = {"node": world.node.name, "call_id": "url@pbx", "reservation": answer["reservation"]}
    response = post(client, "/call-control/v1/answered", payload, bearer(world.node))
    assert (response.status_code, response.json()) == (200, {"answered": 1})
    assert Reservation.objects.get(pk=answer["reservation"]).answered_at is not None


def test_answered_moves_the_deadline_to_the_maximum_duration_once(client, world):
    answer = post(client, AUTHORIZE, authorize_body(world, "answered@pbx"), bearer(world.node)).json()
    payload = {"node": world.node.name, "call_id": "answered@pbx", "reservation": answer["reservation"]}

    assert answered(world, {**payload, "call_id": "someone-else@pbx"}) == (200, {"answered": 0})
    assert answered(world, payload) == (200, {"answered": 1})
    assert answered(world, payload) == (200, {"answered": 0})
    row = Reservation.objects.get(pk=answer["reservation"])
    grace = snapshots.current().reservation_grace
    assert row.expires_at - row.answered_at == timedelta(seconds=row.max_duration + grace)


def test_answered_needs_the_node_secret_and_a_reservation(world):
    payload = {"node": world.node.name, "call_id": "x@pbx", "reservation": 1}
    assert endpoint.handle("answered", json.dumps(payload).encode(), "Bearer wrong")[0] == 401
    status, body = answered(world, {"node": world.node.name, "call_id": "x@pbx"})
    assert (status, body) == (400, {"errors": {"reservation": "This field is required."}})
