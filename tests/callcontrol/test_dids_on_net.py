"""Calls to numbers and accounts of ours (issue 14, items 1 and 2): a supplier's call to one
of our DIDs, and a customer's on-net call to a DID or a SIP account, through the real
decide/settle on a snapshot of the database (tests/switching.py's world)."""

from decimal import Decimal

import pytest

from apps.billing.models import Reservation
from apps.dids.models import Did, DidTarget
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.rates.models import RateTable
from tests.switching import CUSTOMER_IP, SYSTEM, failed_step, update_peer

DID = "442079460000"
CARRIER_IP = "192.0.2.1"  # Alpha's gateway: its calls come from there


@pytest.fixture(name="phone")
def phone_fixture(world):
    """Bob, another customer with a SIP account bob@b.example and the DID 442079460000 on it,
    delivered by Alpha at 0.0010/min to us and sold at 0.0040/min."""
    bob = world.add_customer("Bob", balance="5.00")
    account = peer_services.add_sip_account(
        bob, actor=SYSTEM, username="bob", domain="b.example", password="Secret-123"
    )
    did = Did.objects.create(
        number=DID,
        supplier=world.suppliers["Alpha"],
        customer=bob,
        buy_per_minute=Decimal("0.0010"),
        sell_per_minute=Decimal("0.0040"),
    )
    DidTarget.objects.create(did=did, position=1, sip_account=account, setup_timeout=5)
    RateTable.objects.filter(pk=world.sell_table.pk).update(on_net_price=Decimal("0.0030"))
    return bob, did, account


def inbound(world, callee=DID, **fields):
    values = {"source_ip": CARRIER_IP, "peer_id": world.suppliers["Alpha"].pk}
    return world.call(callee, **{**values, **fields})


def test_a_suppliers_call_to_a_did_goes_to_the_account_and_its_customer_pays(world, phone):
    bob, _did, _ = phone
    decision = inbound(world)

    assert (decision.action, decision.kind, decision.peer.id) == ("route", "did", bob.pk)
    [target] = decision.targets
    assert (target.aor, target.uri, target.supplier_id, target.route_id) == (
        "bob@b.example",
        "",
        world.suppliers["Alpha"].pk,
        None,
    )
    assert target.setup_timeout == 5
    response = decision.as_response()
    assert (response["kind"], response["peer_id"], response["destination"]) == ("did", bob.pk, f"DID {DID}")
    assert response["routes"][0]["aor"] == "bob@b.example"
    held = Reservation.objects.get(pk=decision.reservation)
    assert held.account.peer_id == bob.pk
    alpha = str(world.suppliers["Alpha"].pk)
    assert (held.callee, Decimal(held.sell_tariff["price"]), held.supplier_id) == (
        DID,
        Decimal("0.004"),
        int(alpha),
    )
    assert set(held.buy_tariffs) == {alpha} and Decimal(held.buy_tariffs[alpha]["price"]) == Decimal("0.001")


def test_a_block_of_numbers_is_one_did(world, phone):
    bob, did, _ = phone
    Did.objects.filter(pk=did.pk).update(number="442079460000", last_number="442079460099")
    assert inbound(world, callee="442079460042").peer.id == bob.pk
    outside = inbound(world, callee="442079460100")
    assert (outside.code, outside.reason, failed_step(outside)) == (404, "Unknown number", "DID")


@pytest.mark.parametrize(
    "change, code, reason",
    [
        ({"customer": None}, 404, "Number not in service"),
        ({"enabled": False}, 404, "Unknown number"),
        ({"supplier": None}, 404, "Unknown number"),  # ours, but not delivered by Alpha
    ],
)
def test_a_did_that_takes_no_calls_from_the_supplier_is_refused(world, phone, change, code, reason):
    _, did, _ = phone
    Did.objects.filter(pk=did.pk).update(**change)
    decision = inbound(world)
    assert (decision.action, decision.code, decision.reason) == ("reject", code, reason)
    assert decision.reservation is None and not decision.targets


def test_an_unknown_number_from_a_supplier_is_404_and_holds_nothing(world, phone):
    decision = inbound(world, callee="442079469999")
    assert (decision.code, decision.reason) == (404, "Unknown number")
    assert not Reservation.objects.exists()


def test_a_did_of_a_suspended_customer_is_temporarily_unavailable(world, phone):
    bob, _, _ = phone
    Peer.objects.filter(pk=bob.pk).update(suspended_at=world.node.created_at, suspended_reason="unpaid")
    decision = inbound(world)
    assert (decision.code, decision.reason, failed_step(decision)) == (480, "Temporarily unavailable", "DID")
    assert "suspended: unpaid" in decision.steps[-1].detail


def test_a_did_falls_over_to_the_customers_gateway(world, phone):
    bob, did, _ = phone
    Peer.objects.filter(pk=bob.pk).update(role=Peer.Role.USER)
    pbx = peer_services.add_gateway(
        Peer.objects.get(pk=bob.pk), actor=SYSTEM, name="pbx", host="203.0.113.5", port=5080
    )
    DidTarget.objects.create(did=did, position=2, gateway=pbx)
    targets = inbound(world).targets
    assert [(t.aor, t.uri) for t in targets] == [("bob@b.example", ""), ("", "sip:203.0.113.5:5080")]


def test_a_customers_call_to_a_did_is_on_net_at_its_lists_on_net_price(world, phone):
    decision = world.call(DID)

    assert (decision.action, decision.kind, decision.peer.id) == ("route", "on-net", world.customer.pk)
    assert [(t.aor, t.supplier_id) for t in decision.targets] == [("bob@b.example", None)]
    assert (decision.sell.destination, decision.sell.tariff.price) == ("On-net", Decimal("0.0030"))
    held = Reservation.objects.get(pk=decision.reservation)
    assert (held.account.peer_id, held.supplier_id, held.buy_tariffs) == (world.customer.pk, None, {})


def test_an_on_net_call_to_an_account_by_its_name(world, phone):
    by_domain = world.call("bob", callee_domain="b.example")
    by_name = world.call("bob", callee_domain=world.node.sip_address)  # to a node: the one "bob"
    for decision in (by_domain, by_name):
        assert (decision.action, decision.kind) == ("route", "on-net")
        assert [t.aor for t in decision.targets] == ["bob@b.example"]


def test_accounts_of_one_name_in_two_domains_are_told_apart(world, phone):
    carol = world.add_customer("Carol", balance="5.00")
    peer_services.add_sip_account(
        carol, actor=SYSTEM, username="bob", domain="c.example", password="Secret-123"
    )
    assert [t.aor for t in world.call("bob", callee_domain="c.example").targets] == ["bob@c.example"]
    assert [t.aor for t in world.call("bob", callee_domain="b.example").targets] == ["bob@b.example"]
    # To a node's address with two "bob"s: the caller's own domain decides, else nobody.
    ambiguous = world.call("bob", callee_domain=world.node.sip_address)
    assert (ambiguous.code, ambiguous.reason) == (404, "Not found")
    peer_services.add_sip_account(
        world.customer, actor=SYSTEM, username="alice", domain="c.example", password="Secret-123"
    )
    mine = world.call(
        "bob", callee_domain=world.node.sip_address, auth_user="alice@c.example", source_ip=None
    )
    assert [t.aor for t in mine.targets] == ["bob@c.example"]


def test_a_number_is_never_taken_for_an_account_of_another_domain(world, phone):
    bob, _, _ = phone
    # An account named like a popular number does not take that number's calls.
    peer_services.add_sip_account(
        bob, actor=SYSTEM, username="4930123456", domain="b.example", password="Secret-123"
    )
    decision = world.call("4930123456", callee_domain=world.node.sip_address)
    assert (decision.kind, decision.sell.destination) == ("off-net", "Germany")


def test_an_unknown_name_is_404_and_never_priced(world, phone):
    decision = world.call("1-900-5551234")
    assert (decision.code, decision.reason, failed_step(decision)) == (404, "Not found", "on-net")
    assert decision.sell is None and decision.reservation is None


def test_a_suspended_caller_cannot_call_on_net(world, phone):
    update_peer(world.customer, suspended_at=world.node.created_at, suspended_reason="fraud")
    decision = world.call("bob", callee_domain="b.example")
    assert (decision.code, failed_step(decision)) == (403, "status")
    assert decision.reservation is None


def test_an_on_net_call_to_a_suspended_customer_is_temporarily_unavailable(world, phone):
    bob, _, _ = phone
    update_peer(bob, enabled=False)
    decision = world.call("bob", callee_domain="b.example")
    assert (decision.code, decision.reason, failed_step(decision)) == (
        480,
        "Temporarily unavailable",
        "on-net",
    )


def test_a_user_peer_delivering_its_own_did_is_the_dids_supplier(world, phone):
    bob, _did, _ = phone
    alpha = world.suppliers["Alpha"]
    Peer.objects.filter(pk=alpha.pk).update(role=Peer.Role.USER)
    peer_services.add_endpoint(Peer.objects.get(pk=alpha.pk), actor=SYSTEM, ip="192.0.2.77")
    decision = world.call(DID, source_ip="192.0.2.77")
    assert (decision.kind, decision.peer.id) == ("did", bob.pk)
    # The same number from our customer is on-net.
    assert world.call(DID, source_ip=CUSTOMER_IP).kind == "on-net"


def test_a_ring_group_rings_its_accounts_at_once_then_its_gateways_in_turn(world, phone):
    bob, did, _ = phone
    Peer.objects.filter(pk=bob.pk).update(role=Peer.Role.USER)
    bob = Peer.objects.get(pk=bob.pk)
    mobile = peer_services.add_sip_account(
        bob, actor=SYSTEM, username="bob-mobile", domain="b.example", password="Secret-123"
    )
    pbx = peer_services.add_gateway(bob, actor=SYSTEM, name="pbx", host="203.0.113.5", port=5080)
    DidTarget.objects.create(did=did, position=2, gateway=pbx)
    DidTarget.objects.create(did=did, position=3, sip_account=mobile, setup_timeout=20)
    Did.objects.filter(pk=did.pk).update(hunting=Did.Hunting.ALL)

    targets = inbound(world).targets
    assert [(t.ring, t.aor, t.uri) for t in targets] == [
        (("bob@b.example", "bob-mobile@b.example"), "", ""),
        ((), "", "sip:203.0.113.5:5080"),
    ]
    assert targets[0].setup_timeout == 20  # the longest of its accounts'
    assert inbound(world).as_response()["routes"][0]["ring"] == ["bob@b.example", "bob-mobile@b.example"]
