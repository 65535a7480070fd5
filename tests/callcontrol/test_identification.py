"""Who calls: endpoints by address, port, transport and tech prefix; SIP accounts by user
and domain; what may originate. Every test runs the real decide/settle on a snapshot built
from the database (the world and its prices: tests/switching.py)."""

import pytest

from apps.billing.models import Reservation
from apps.callcontrol.snapshot import AddressIndex
from apps.peers import services as peer_services
from apps.peers.models import Endpoint, Peer, SipAccount
from tests.switching import (
    BERLIN,
    CUSTOMER_IP,
    LCR_BERLIN,
    MOBILE,
    SYSTEM,
    add_route,
    excluded,
    failed_step,
    price_list,
    rate,
    suppliers_of,
)

# --- Identification -------------------------------------------------------------------------


def test_the_most_specific_network_of_overlapping_endpoints_identifies_the_caller(world):
    campus = world.add_customer("Campus")
    peer_services.add_endpoint(campus, actor=SYSTEM, ip="203.0.113.0", mask=24)
    branch = world.add_customer("Branch")
    # The services refuse overlapping addresses without distinct tech prefixes; rows that
    # overlap anyway (written before that check) are still told apart by the longest mask.
    Endpoint.objects.create(peer=branch, ip="203.0.113.9", mask=32)

    assert world.decide(source_ip="203.0.113.9").peer.id == branch.pk
    assert world.decide(source_ip="203.0.113.10").peer.id == campus.pk
    assert world.decide(source_ip="203.0.113.255").peer.id == campus.pk


def test_address_index_lists_peers_most_specific_first_and_honours_port_and_transport():
    index = AddressIndex()
    index.add("10.1.0.0", 16, 0, "any", 1)
    index.add("10.1.2.0", 24, 0, "any", 2)
    index.add("10.1.2.3", 32, 5070, "tcp", 3)
    index.add("2001:db8::", 32, 0, "any", 4)
    index.freeze()

    assert index.peers("10.1.2.3") == [3, 2, 1]
    assert index.peers("10.1.2.3", 5070, "TCP") == [3, 2, 1]
    assert index.peers("10.1.2.3", 5060, "tcp") == [2, 1]  # the /32 wants port 5070
    assert index.peers("10.1.2.3", 5070, "udp") == [2, 1]  # ... over TCP
    assert index.peers("10.1.9.9") == [1]
    assert index.peers("10.2.0.1") == []
    assert index.peers("2001:db8:1::5") == [4]
    assert index.peers("::ffff:10.1.2.3") == [3, 2, 1]  # IPv4 seen through a dual-stack socket
    assert index.peers("not an address") == []


def test_a_disabled_endpoint_identifies_nobody(world):
    Endpoint.objects.filter(peer=world.customer).update(enabled=False)
    decision = world.decide()
    assert (decision.code, decision.reason, failed_step(decision)) == (403, "Unknown peer", "identify")


def test_peers_on_one_address_are_told_apart_by_the_longest_tech_prefix(world):
    shared = "203.0.113.5"
    plain = world.add_customer("Shared", shared)
    seven = world.add_customer("Shared 7", shared, tech_prefix="7")
    seventy_seven = world.add_customer("Shared 77", shared, tech_prefix="77")

    # OpenSIPS's address table names one of them; the tech prefix picks among all three.
    by_table = {"source_ip": shared, "peer_id": plain.pk}
    decision = world.decide("77" + BERLIN, **by_table)
    assert (decision.peer.id, decision.callee) == (seventy_seven.pk, BERLIN)
    assert decision.steps[0].detail == (
        f"Shared 77 (#{seventy_seven.pk}) by address table (peer {plain.pk}), tech prefix 77 removed"
    )
    decision = world.decide("7" + BERLIN, **by_table)
    assert (decision.peer.id, decision.callee) == (seven.pk, BERLIN)
    decision = world.decide(BERLIN, **by_table)
    assert (decision.peer.id, decision.callee) == (plain.pk, BERLIN)
    # Also from the source address alone, and the stripped number is what is priced.
    decision = world.call("77" + MOBILE, source_ip=shared)
    assert (decision.peer.id, decision.callee, decision.sell.destination) == (
        seventy_seven.pk,
        MOBILE,
        "Germany Mobile",
    )
    assert decision.routed


def test_a_peer_named_by_the_address_table_keeps_its_calls_when_no_sibling_prefix_matches(world):
    alone = world.add_customer("Alone", tech_prefix="555")
    decision = world.decide("555" + BERLIN, source_ip=None, peer_id=alone.pk)
    assert (decision.peer.id, decision.callee, decision.routed) == (alone.pk, BERLIN, True)

    decision = world.decide(BERLIN, source_ip=None, peer_id=alone.pk)
    assert (decision.code, decision.reason, failed_step(decision)) == (
        403,
        "The number lacks the peer's tech prefix",
        "identify",
    )


def test_a_sip_account_identifies_its_peer_by_user_or_user_at_domain_in_any_case(world):
    peer_services.add_sip_account(
        world.customer, actor=SYSTEM, username="office", domain="sip.example.net", password="Office-pass-1"
    )
    for user in ("office", "OFFICE", "office@sip.example.net", "Office@SIP.Example.net"):
        # The login wins over the source address, which is nobody's here.
        decision = world.decide(auth_user=user, source_ip="192.0.2.200")
        assert decision.peer.id == world.customer.pk, user
        assert decision.steps[0].detail.endswith(f"by SIP account {user}")

    decision = world.decide(auth_user="office@other.example.net", source_ip=CUSTOMER_IP)
    assert (decision.code, decision.reason, failed_step(decision)) == (
        403,
        "Unknown SIP account office@other.example.net",
        "identify",
    )


def test_a_user_name_shared_by_two_peers_needs_its_domain(world):
    other = world.add_customer("Other")
    peer_services.add_sip_account(
        world.customer, actor=SYSTEM, username="pbx", domain="a.example.net", password="Office-pass-1"
    )
    peer_services.add_sip_account(
        other, actor=SYSTEM, username="pbx", domain="b.example.net", password="Office-pass-2"
    )
    assert world.decide(auth_user="pbx").reason == "Unknown SIP account pbx"
    assert world.decide(auth_user="pbx@a.example.net").peer.id == world.customer.pk
    assert world.decide(auth_user="pbx@b.example.net").peer.id == other.pk


def test_a_disabled_sip_account_identifies_nobody(world):
    peer_services.add_sip_account(
        world.customer,
        actor=SYSTEM,
        username="old",
        domain="sip.example.net",
        password="Office-pass-1",
        enabled=False,
    )
    assert world.decide(auth_user="old").reason == "Unknown SIP account old"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"source_ip": "192.0.2.200"}, "Unknown peer"),
        ({"source_ip": "192.0.2.200", "peer_id": 987654}, "Unknown peer 987654"),
        ({"source_ip": None, "auth_user": "nobody"}, "Unknown SIP account nobody"),
    ],
)
def test_an_unknown_address_peer_or_sip_user_is_forbidden(world, fields, reason):
    decision = world.call(**fields)
    assert (decision.action, decision.code, decision.reason, failed_step(decision)) == (
        "reject",
        403,
        reason,
        "identify",
    )
    assert decision.peer is None
    assert not Reservation.objects.exists()


def test_a_supplier_cannot_originate_calls(world):
    alpha = world.suppliers["Alpha"]
    # Neither named by the address table, nor from an address or a login written past the
    # services' checks: a supplier only delivers calls to our DIDs, and this number is none.
    Endpoint.objects.create(peer=alpha, ip="192.0.2.1", mask=32)
    SipAccount.objects.create(peer=alpha, username="alpha", domain="sip.example.net", ha1="x", ha1_sha256="y")
    for fields in (
        {"peer_id": alpha.pk, "source_ip": None},
        {"source_ip": "192.0.2.1"},
        {"auth_user": "alpha"},
    ):
        decision = world.decide(**fields)
        assert (decision.code, decision.reason, failed_step(decision)) == (404, "Unknown number", "DID")
        assert not decision.targets


def test_a_user_peer_both_originates_and_terminates(world):
    buy = price_list("Trunk buy", [rate("49", "0.0050")], purpose="buy")
    trunk = world.add_customer("Trunk", "203.0.113.50", role=Peer.Role.USER, buy_rate_table_id=buy.pk)
    peer_services.add_gateway(trunk, actor=SYSTEM, name="pbx", host="203.0.113.50")
    add_route(world.rule, trunk, priority=9)

    from_acme = world.decide()
    assert suppliers_of(from_acme)[0] == "Trunk"  # the cheapest
    from_trunk = world.decide(source_ip="203.0.113.50")
    assert from_trunk.peer.id == trunk.pk
    assert excluded(from_trunk)["Trunk"] == "loop: the call came from this peer"
    assert suppliers_of(from_trunk) == LCR_BERLIN
