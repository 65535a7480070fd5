"""The per-call decision: who calls, may the call go, at what price, to which suppliers in
which order, and for how long. Every test runs the real decide/settle on a snapshot built
from the database (see conftest.py for the world and its prices)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.billing.services import reservations
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.checking import CheckInput, check_routing
from apps.callcontrol.decision import decide, settle
from apps.callcontrol.snapshot import MIN_QUALITY_ATTEMPTS, AddressIndex
from apps.nodes.models import Node
from apps.peers import services as peer_services
from apps.peers.models import Blocklist, Endpoint, Gateway, Peer, SipAccount
from apps.routing.models import Method, QualityMetric, QualityStat, Route, RoutingPlan, RoutingRule
from apps.tenancy.models import Reseller
from tests.callcontrol.conftest import (
    BERLIN,
    CALLER,
    CUSTOMER_IP,
    MOBILE,
    SYSTEM,
    add_route,
    add_rule,
    add_supplier,
    cluster,
    excluded,
    failed_step,
    price_list,
    rate,
    set_plan,
    suppliers_of,
    update_peer,
)
from tests.factories import NodeFactory, make_peer, make_reseller

FRANCE = "33123456789"
UK = "442079460000"
LCR_BERLIN = ["Bravo", "Delta", "Alpha", "Charlie"]  # 0.008 (prio 2), 0.008 (prio 4), 0.010, 0.012


def blocklist(name: str, kind: str, prefixes, *, peers=(), applies_to_all=False) -> Blocklist:
    created = peer_services.create_blocklist(
        actor=SYSTEM, name=name, kind=kind, applies_to_all=applies_to_all
    )
    peer_services.add_blocklist_entries(created, prefixes, actor=SYSTEM)
    for peer in peers:
        peer_services.set_peer_blocklists(peer, [created, *peer.blocklists.all()], actor=SYSTEM)
    return created


def quality(supplier: Peer, destination: str, attempts: int, answered: int, seconds: int = 0) -> None:
    now = timezone.now()
    QualityStat.objects.create(
        supplier=supplier,
        destination=destination,
        attempts=attempts,
        answered=answered,
        answered_seconds=seconds,
        window_start=now - timedelta(hours=1),
        window_end=now,
    )


def release(reservation_id: int) -> None:
    """The call failed before answer: its money goes back."""
    assert reservations.release(reservation_id, outcome=Reservation.Outcome.FAILED)


def use_method(world, method: str, **fields) -> None:
    RoutingRule.objects.filter(pk=world.rule.pk).update(method=method, **fields)


# --- A routed call, whole -------------------------------------------------------------------


def test_a_call_from_the_customer_address_is_priced_routed_by_least_cost_and_granted(world):
    decision = world.call(BERLIN)

    assert (decision.action, decision.code, decision.reason) == ("route", 200, "OK")
    assert decision.peer.id == world.customer.pk
    assert (decision.caller, decision.callee) == (CALLER, BERLIN)
    assert (decision.sell.prefix, decision.sell.destination, decision.sell.tariff.price) == (
        "49",
        "Germany",
        Decimal("0.02"),
    )
    assert decision.plan == "Main" and decision.rule.id == world.rule.pk
    assert suppliers_of(decision) == LCR_BERLIN
    assert [t.uri for t in decision.targets] == [
        "sip:192.0.2.2:5060",
        "sip:192.0.2.4:5060",
        "sip:192.0.2.1:5060",
        "sip:192.0.2.3:5060",
    ]
    assert [(t.caller, t.callee) for t in decision.targets] == [(CALLER, BERLIN)] * 4
    # 10.00 at 0.02/min pays 30,000 s; the cluster's ceiling (7200 s) caps it: 2.40 held.
    assert (decision.max_duration, decision.amount, decision.available) == (
        7200,
        Decimal("2.40"),
        Decimal("10"),
    )
    assert [s.name for s in decision.steps] == [
        "identify",
        "status",
        "node",
        "rewrite",
        "blocklists",
        "sell rate",
        "routing",
        "routes",
        "money",
    ]
    assert all(step.ok for step in decision.steps)
    assert decision.steps[0].detail == f"Acme (#{world.customer.pk}) by source address {CUSTOMER_IP}"
    held = Reservation.objects.get(pk=decision.reservation)
    assert (held.call_id, held.amount, held.max_duration, held.prefix, held.destination) == (
        decision.request.call_id,
        Decimal("2.40"),
        7200,
        "49",
        "Germany",
    )
    # The reservation names the first attempt.
    assert (held.route_id, held.supplier_id, held.node_id) == (
        world.routes["Bravo"].pk,
        world.suppliers["Bravo"].pk,
        world.node.pk,
    )


def test_the_response_carries_every_field_opensips_reads(world):
    update_peer(world.customer, record_calls=True, max_calls=5, max_cps=3)
    decision = world.call(BERLIN)
    response = decision.as_response()

    assert set(response) == {
        "action",
        "code",
        "reason",
        "call_id",
        "peer_id",
        "max_duration",
        "reservation",
        "caller",
        "callee",
        "destination",
        "routes",
        "redirect",
        "record",
        "limits",
    }
    assert response["routes"][0] == {
        "route_id": world.routes["Bravo"].pk,
        "supplier_id": world.suppliers["Bravo"].pk,
        "gateway_id": world.gateways["Bravo"].pk,
        "uri": "sip:192.0.2.2:5060",
        "caller": CALLER,
        "callee": BERLIN,
        "setup_timeout": None,
        "max_calls": None,
        "stop_hunting": False,
    }
    assert (response["record"], response["limits"], response["redirect"]) == (
        True,
        {"max_calls": 5, "cps": 3},
        None,
    )
    assert (response["destination"], response["reservation"], response["peer_id"]) == (
        "Germany",
        decision.reservation,
        world.customer.pk,
    )


def test_a_rejected_call_is_not_recorded_and_has_no_routes_or_time(world):
    update_peer(world.customer, record_calls=True)
    response = world.call("81312345678").as_response()
    assert (response["action"], response["code"], response["record"]) == ("reject", 404, False)
    assert (response["routes"], response["max_duration"], response["reservation"]) == ([], 0, None)
    assert response["destination"] == ""


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
    # services' checks.
    Endpoint.objects.create(peer=alpha, ip="192.0.2.1", mask=32)
    SipAccount.objects.create(peer=alpha, username="alpha", domain="sip.example.net", ha1="x", ha1_sha256="y")
    for fields in (
        {"peer_id": alpha.pk, "source_ip": None},
        {"source_ip": "192.0.2.1"},
        {"auth_user": "alpha"},
    ):
        decision = world.decide(**fields)
        assert (decision.code, decision.reason, failed_step(decision)) == (403, "Unknown peer", "identify")


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


# --- Rejections -----------------------------------------------------------------------------


def test_an_unknown_node_is_refused(world):
    decision = world.call(node="node9")
    assert (decision.code, decision.reason, failed_step(decision)) == (403, "Unknown node node9", "node")
    assert (decision.node_id, decision.peer) == (None, None)


def test_a_disabled_node_answers_503(world):
    Node.objects.filter(pk=world.node.pk).update(enabled=False)
    decision = world.call()
    assert (decision.code, decision.reason, failed_step(decision)) == (503, "Node node1 is disabled", "node")
    assert world.call(node="node2").routed


def test_a_disabled_peer_is_refused(world):
    peer_services.update_peer(world.customer, actor=SYSTEM, changes={"enabled": False})
    decision = world.call()
    assert (decision.code, decision.reason, failed_step(decision)) == (403, "Peer disabled", "status")
    assert decision.peer.id == world.customer.pk


def test_a_suspended_peer_is_refused_with_the_reason_and_resumed(world):
    peer_services.suspend_peer(world.customer, actor=SYSTEM, reason="Unpaid invoice 42")
    decision = world.call()
    assert (decision.code, decision.reason, failed_step(decision)) == (
        403,
        "Peer suspended: Unpaid invoice 42",
        "status",
    )
    peer_services.resume_peer(world.customer, actor=SYSTEM)
    assert world.call().routed


def test_the_customer_of_an_inactive_reseller_is_refused(world):
    reseller = make_reseller("Resold")
    customer = world.add_customer("Resold Customer", "203.0.113.60", reseller=reseller)
    assert world.call(source_ip="203.0.113.60").routed

    Reseller.objects.filter(pk=reseller.pk).update(is_active=False)
    decision = world.call(source_ip="203.0.113.60")
    assert (decision.peer.id, decision.code, decision.reason, failed_step(decision)) == (
        customer.pk,
        403,
        "Reseller inactive",
        "status",
    )


def test_a_peer_is_served_only_on_its_nodes(world):
    peer_services.assign_peer_to_nodes(world.customer, [world.node2], actor=SYSTEM)
    decision = world.call(node="node1")
    assert (decision.action, decision.code, decision.reason, failed_step(decision)) == (
        "reject",
        403,
        "Not served on node node1",
        "node",
    )
    served = world.call(node="node2")
    assert served.routed
    assert [s.detail for s in served.steps if s.name == "node"] == ["served on node2"]


def test_a_call_on_a_wrong_node_is_redirected_to_the_first_enabled_assigned_node(world):
    cluster(redirect_to_assigned_node=True)
    node3 = NodeFactory(name="node3", sip_address="100.64.9.3", sip_port=5080)
    node0 = NodeFactory(name="node0", sip_address="100.64.9.0")
    Node.objects.filter(pk=node0.pk).update(enabled=False)  # first by name, but down
    update_peer(world.customer, tech_prefix="12")
    peer_services.assign_peer_to_nodes(world.customer, [world.node2, node3, node0], actor=SYSTEM)

    decision = world.call("12" + BERLIN, node="node1")
    assert (decision.action, decision.code, decision.reason) == ("redirect", 302, "Served by node2")
    assert decision.redirect_uri == f"sip:12{BERLIN}@{world.node2.sip_address}:5060"
    assert failed_step(decision) == "node"
    response = decision.as_response()
    assert (response["redirect"], response["routes"], response["reservation"]) == (
        decision.redirect_uri,
        [],
        None,
    )
    assert not Reservation.objects.exists()

    Node.objects.filter(pk=world.node2.pk).update(enabled=False)
    decision = world.call("12" + BERLIN, node="node1")
    assert (decision.code, decision.redirect_uri) == (302, f"sip:12{BERLIN}@100.64.9.3:5080")


def test_a_redirect_to_an_ipv6_node_brackets_its_address(world):
    cluster(redirect_to_assigned_node=True)
    node6 = NodeFactory(name="node6", sip_address="2001:db8::10")
    peer_services.assign_peer_to_nodes(world.customer, [node6], actor=SYSTEM)
    decision = world.call(BERLIN)
    assert (decision.code, decision.redirect_uri) == (302, f"sip:{BERLIN}@[2001:db8::10]:5060")


def test_with_redirects_on_but_no_enabled_assigned_node_the_call_is_refused(world):
    cluster(redirect_to_assigned_node=True)
    peer_services.assign_peer_to_nodes(world.customer, [world.node2], actor=SYSTEM)
    Node.objects.filter(pk=world.node2.pk).update(enabled=False)
    decision = world.call(node="node1")
    assert (decision.action, decision.code, decision.reason) == ("reject", 403, "Not served on node node1")


def test_a_peers_destination_blocklist_refuses_matching_numbers_only(world):
    blocklist("No mobiles", Blocklist.Kind.DESTINATION, ["4915", "4916"], peers=[world.customer])
    decision = world.call(MOBILE)
    assert (decision.code, decision.reason, failed_step(decision)) == (
        403,
        "Blocked by No mobiles (destination 4915)",
        "blocklists",
    )
    assert world.call(BERLIN).routed


def test_a_list_that_applies_to_all_blocks_every_customer_without_being_attached(world):
    other = world.add_customer("Other", "203.0.113.70")
    blocklist("Fraud", Blocklist.Kind.DESTINATION, ["49301"], applies_to_all=True)
    blocklist("Not attached", Blocklist.Kind.DESTINATION, ["44"])
    for source in (CUSTOMER_IP, "203.0.113.70"):
        decision = world.call("4930123456", source_ip=source)
        assert (decision.code, decision.reason) == (403, "Blocked by Fraud (destination 49301)")
    assert world.call(UK, source_ip="203.0.113.70").routed
    assert other.pk


def test_callee_and_caller_blocklists_refuse_their_numbers(world):
    blocklist("Bad callees", Blocklist.Kind.CALLEE, [BERLIN], peers=[world.customer])
    blocklist("Bad callers", Blocklist.Kind.CALLER, ["4930999"], peers=[world.customer])

    decision = world.call(BERLIN)
    assert (decision.code, decision.reason) == (403, f"Blocked by Bad callees (callee {BERLIN})")
    decision = world.call("4930123457", caller="4930999000")
    assert (decision.code, decision.reason, failed_step(decision)) == (
        403,
        "Blocked by Bad callers (caller 4930999)",
        "blocklists",
    )
    # A callee list does not look at the caller, nor a caller list at the callee.
    assert world.call("4930999000", caller=BERLIN).routed


def test_blocklists_see_the_numbers_as_received_and_as_rewritten(world):
    peer_services.add_rewrite_rule(
        world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement=""
    )
    peer_services.add_rewrite_rule(
        world.customer, actor=SYSTEM, field="caller", pattern=r"^\+", replacement=""
    )
    blocklist("Raw", Blocklist.Kind.DESTINATION, ["0044"], peers=[world.customer])
    blocklist("Rewritten", Blocklist.Kind.DESTINATION, ["4915"], peers=[world.customer])
    blocklist("Callers", Blocklist.Kind.CALLER, ["4930666"], peers=[world.customer])

    assert world.call("00" + UK).reason == "Blocked by Raw (destination 0044)"
    assert world.call("00" + MOBILE).reason == "Blocked by Rewritten (destination 4915)"
    assert world.call("00" + BERLIN, caller="+4930666111").reason == "Blocked by Callers (caller 4930666)"
    assert world.call("00" + BERLIN, caller="+4930111222").routed


def test_a_tech_prefix_is_not_mistaken_for_a_blocked_destination(world):
    blocklist("Satellite", Blocklist.Kind.DESTINATION, ["881"], applies_to_all=True)
    update_peer(world.customer, tech_prefix="8810")
    assert world.call("8810" + "88161234567").reason == "Blocked by Satellite (destination 881)"
    decision = world.call("8810" + BERLIN)
    assert (decision.action, decision.reason) == ("route", "OK")


def test_no_sell_price_list_or_no_sell_rate_is_404(world):
    decision = world.call("81312345678")
    assert (decision.code, decision.reason, failed_step(decision)) == (
        404,
        "No rate for 81312345678",
        "sell rate",
    )
    Peer.objects.filter(pk=world.customer.pk).update(sell_rate_table=None)
    decision = world.call(BERLIN)
    assert (decision.code, decision.reason, failed_step(decision)) == (404, "No sell price list", "sell rate")


def test_without_any_routing_plan_the_call_is_503(world):
    set_plan(world.customer, None)
    decision = world.call()
    assert (decision.code, decision.reason, failed_step(decision)) == (503, "No routing plan", "routing")


def test_a_number_no_rule_matches_is_503(world):
    plan = RoutingPlan.objects.create(name="UK only")
    add_route(add_rule(plan, "44"), world.suppliers["Alpha"])
    set_plan(world.customer, plan)
    decision = world.call(BERLIN)
    assert (decision.code, decision.reason, failed_step(decision)) == (503, "No route", "routing")
    assert decision.plan == "UK only"
    assert world.call(UK).routed


def test_a_rule_whose_routes_are_all_out_is_503_and_says_why(world):
    Route.objects.filter(rule=world.rule).update(enabled=False)
    decision = world.call()
    assert (decision.code, decision.reason, failed_step(decision)) == (503, "No route", "routes")
    assert set(excluded(decision).values()) == {"route disabled"}
    assert decision.targets == []


def test_a_block_rule_refuses_with_403(world):
    add_rule(world.plan, "4915", Method.BLOCK)
    decision = world.call(MOBILE)
    assert (decision.code, decision.reason, failed_step(decision)) == (403, "Blocked by routing", "routing")
    assert world.call(BERLIN).routed


def test_a_customer_without_money_is_refused_with_402(world):
    broke = world.add_customer("Broke", "203.0.113.80", balance="0")
    decision = world.call(source_ip="203.0.113.80")
    assert (decision.code, decision.reason, failed_step(decision)) == (402, "Insufficient funds", "money")
    assert decision.steps[-1].detail == "Available 0.000000 does not pay for the first billable period."
    assert (decision.targets, decision.max_duration, decision.reservation) == ([], 0, None)
    assert not Reservation.objects.filter(customer=broke).exists()


def test_calls_over_the_peers_limit_are_refused_with_486_counting_live_reservations(world):
    update_peer(world.customer, max_calls=2)
    first, second = world.call(), world.call()
    assert first.routed and second.routed
    third = world.call()
    assert (third.code, third.reason, failed_step(third)) == (486, "Too many calls", "money")
    assert third.steps[-1].detail == "2 live calls, the limit is 2."
    assert (third.targets, third.reservation) == ([], None)

    release(first.reservation)
    assert world.call().routed


# --- Rewriting ------------------------------------------------------------------------------


def test_ingress_rewrites_apply_in_position_order_before_the_rate_lookup(world):
    add = peer_services.add_rewrite_rule
    add(world.customer, actor=SYSTEM, field="callee", pattern="^0", replacement="49", position=2)
    add(world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement="", position=1)
    add(world.customer, actor=SYSTEM, field="caller", pattern=r"^\+", replacement="")
    add(world.customer, actor=SYSTEM, field="callee", pattern="^9", replacement="0", enabled=False)

    international = world.call("0033123456789", caller="+4930111222")
    assert (international.caller, international.callee) == ("4930111222", "33123456789")
    assert international.sell.destination == "France"
    national = world.call("030123456")  # ^00 does not match, then ^0 -> 49
    assert (national.callee, national.sell.destination) == ("4930123456", "Germany")
    assert world.call("9123").reason == "No rate for 9123"  # the disabled rule did nothing
    rewrite = next(s for s in international.steps if s.name == "rewrite")
    assert rewrite.detail == "caller +4930111222 → 4930111222, callee 0033123456789 → 33123456789"


def test_without_the_ingress_rewrite_the_raw_number_has_no_rate(world):
    assert world.call("0033123456789").reason == "No rate for 0033123456789"


def test_each_target_gets_the_suppliers_egress_rewrites_then_the_gateways_strip_and_prefix(world):
    add = peer_services.add_rewrite_rule
    bravo, delta = world.suppliers["Bravo"], world.suppliers["Delta"]
    add(bravo, actor=SYSTEM, field="callee", pattern="^49", replacement="0049", direction="egress")
    add(bravo, actor=SYSTEM, field="caller", pattern="^", replacement="+", direction="egress")
    # An ingress rule of a supplier is not applied to calls sent to it.
    add(delta, actor=SYSTEM, field="callee", pattern="^49", replacement="XX")
    Gateway.objects.filter(pk=world.gateways["Bravo"].pk).update(strip_digits=2, prefix="8")
    Gateway.objects.filter(pk=world.gateways["Delta"].pk).update(strip_digits=2, prefix="9911")

    decision = world.call(BERLIN)
    targets = {t.supplier_id: t for t in decision.targets}
    assert (targets[bravo.pk].caller, targets[bravo.pk].callee) == ("+" + CALLER, "8" + "49" + BERLIN[2:])
    assert (targets[delta.pk].caller, targets[delta.pk].callee) == (CALLER, "9911" + BERLIN[2:])
    alpha = targets[world.suppliers["Alpha"].pk]
    assert (alpha.caller, alpha.callee) == (CALLER, BERLIN)
    assert (decision.caller, decision.callee) == (CALLER, BERLIN)  # what the customer's call is


# --- Rule matching --------------------------------------------------------------------------


def test_the_longest_matching_rule_prefix_wins(world):
    germany = add_rule(world.plan, "49")
    add_route(germany, world.suppliers["Charlie"])
    mobile = add_rule(world.plan, "4915")
    add_route(mobile, world.suppliers["Alpha"])

    assert (world.decide(MOBILE).rule.id, suppliers_of(world.decide(MOBILE))) == (mobile.pk, ["Alpha"])
    assert (world.decide(BERLIN).rule.id, suppliers_of(world.decide(BERLIN))) == (germany.pk, ["Charlie"])
    assert world.decide(FRANCE).rule.id == world.rule.pk
    step = next(s for s in world.decide(MOBILE).steps if s.name == "routing")
    assert step.detail == f"plan Main (peer), rule #{mobile.pk} prefix 4915: lcr"


def test_a_rule_naming_the_destination_beats_one_without_for_the_same_prefix(world):
    plain = add_rule(world.plan, "49", position=0)
    add_route(plain, world.suppliers["Charlie"])
    named = add_rule(world.plan, "49", destination="germany MOBILE", position=7)
    add_route(named, world.suppliers["Alpha"])

    assert world.decide(MOBILE).rule.id == named.pk  # case-insensitive, despite its position
    assert world.decide(BERLIN).rule.id == plain.pk  # "Germany" is not "Germany Mobile"
    step = next(s for s in world.decide(MOBILE).steps if s.name == "routing")
    assert step.detail.endswith("prefix 49, destination germany mobile: lcr")


def test_between_equal_rules_the_lower_position_wins_and_disabled_rules_are_skipped(world):
    later = add_rule(world.plan, "49", position=5)
    add_route(later, world.suppliers["Alpha"])
    earlier = add_rule(world.plan, "49", position=2)
    add_route(earlier, world.suppliers["Charlie"])
    add_route(add_rule(world.plan, "49", position=1, enabled=False), world.suppliers["Bravo"])
    assert world.decide(BERLIN).rule.id == earlier.pk


def test_the_parent_plan_routes_what_the_child_plan_has_no_rule_for(world):
    child = RoutingPlan.objects.create(name="Child", parent=world.plan)
    add_rule(child, "44", Method.BLOCK)
    own = add_rule(child, "33")
    add_route(own, world.suppliers["Alpha"])
    set_plan(world.customer, child)

    from_parent = world.decide(BERLIN)
    assert (from_parent.rule.id, suppliers_of(from_parent), from_parent.plan) == (
        world.rule.pk,
        LCR_BERLIN,
        "Child",
    )
    routing = next(s for s in from_parent.steps if s.name == "routing")
    assert routing.detail.startswith("plan Main (peer)")
    assert world.decide(UK).reason == "Blocked by routing"
    assert suppliers_of(world.decide(FRANCE)) == ["Alpha"]


def test_a_loop_of_parent_plans_ends_in_no_route(world):
    first = RoutingPlan.objects.create(name="First")
    second = RoutingPlan.objects.create(name="Second", parent=first)
    RoutingPlan.objects.filter(pk=first.pk).update(parent=second)
    add_rule(second, "44")
    set_plan(world.customer, first)
    decision = world.decide(BERLIN)
    assert (decision.code, decision.reason, failed_step(decision)) == (503, "No route", "routing")


def test_the_plan_is_the_peers_else_its_resellers_else_the_cluster_default(world):
    reseller_plan = RoutingPlan.objects.create(name="Reseller plan")
    add_route(add_rule(reseller_plan), world.suppliers["Bravo"])
    default_plan = RoutingPlan.objects.create(name="Default plan")
    add_route(add_rule(default_plan), world.suppliers["Charlie"])
    cluster(default_routing_plan=default_plan)
    reseller = make_reseller("Planned")
    Reseller.objects.filter(pk=reseller.pk).update(routing_plan=reseller_plan)
    resold = world.add_customer("Resold", "203.0.113.91", reseller=reseller, plan=None)
    direct = world.add_customer("Direct", "203.0.113.92", plan=None)

    snapshot = world.snapshot()
    own = world.decide(snapshot=snapshot)
    by_reseller = world.decide(snapshot=snapshot, source_ip="203.0.113.91")
    by_default = world.decide(snapshot=snapshot, source_ip="203.0.113.92")
    assert (snapshot.peers[world.customer.pk].plan_source, suppliers_of(own)) == ("peer", LCR_BERLIN)
    assert (snapshot.peers[resold.pk].plan_source, suppliers_of(by_reseller)) == ("reseller", ["Bravo"])
    assert (snapshot.peers[direct.pk].plan_source, suppliers_of(by_default)) == (
        "cluster default",
        ["Charlie"],
    )

    set_plan(resold, world.plan)  # the peer's own plan beats its reseller's
    assert suppliers_of(world.decide(source_ip="203.0.113.91")) == LCR_BERLIN


# --- Ordering -------------------------------------------------------------------------------


def test_least_cost_orders_by_buy_price_then_priority(world):
    decision = world.decide(BERLIN)
    assert [(c.supplier, c.price) for c in decision.candidates] == [
        ("Alpha", Decimal("0.01")),
        ("Bravo", Decimal("0.008")),
        ("Charlie", Decimal("0.012")),
        ("Delta", Decimal("0.008")),
    ]
    assert suppliers_of(decision) == ["Bravo", "Delta", "Alpha", "Charlie"]
    assert suppliers_of(world.decide(UK)) == ["Delta", "Charlie", "Alpha", "Bravo"]
    assert [c.prefix for c in decision.candidates] == ["49"] * 4
    # The tie between Bravo and Delta at 0.008 goes to the better priority.
    Route.objects.filter(pk=world.routes["Delta"].pk).update(priority=0)
    assert suppliers_of(world.decide(BERLIN)) == ["Delta", "Bravo", "Alpha", "Charlie"]


def test_priority_orders_by_priority_then_buy_price(world):
    use_method(world, Method.PRIORITY)
    priorities = {"Alpha": 1, "Bravo": 0, "Charlie": 1, "Delta": 2}
    for name, priority in priorities.items():
        Route.objects.filter(pk=world.routes[name].pk).update(priority=priority)
    # UK: Charlie 0.007 beats Alpha 0.008 in their shared priority 1.
    assert suppliers_of(world.decide(UK)) == ["Bravo", "Charlie", "Alpha", "Delta"]
    # Germany: Alpha 0.010 beats Charlie 0.012.
    assert suppliers_of(world.decide(BERLIN)) == ["Bravo", "Alpha", "Charlie", "Delta"]


def test_weights_give_an_order_fixed_by_the_call_id(world):
    use_method(world, Method.WEIGHT)
    weights = {"Alpha": 40, "Bravo": 30, "Charlie": 20, "Delta": 10}
    for name, weight in weights.items():
        Route.objects.filter(pk=world.routes[name].pk).update(weight=weight)
    snapshot = world.snapshot()
    orders = {}
    for number in range(40):
        call_id = f"weighted-{number}"
        order = suppliers_of(world.decide(snapshot=snapshot, call_id=call_id))
        assert sorted(order) == sorted(weights)
        # The same call asked again, or by another process (a new snapshot), goes the same way.
        assert suppliers_of(world.decide(snapshot=snapshot, call_id=call_id)) == order
        orders[call_id] = order
    assert suppliers_of(world.decide(call_id="weighted-7")) == orders["weighted-7"]
    assert len({tuple(order) for order in orders.values()}) > 1


def test_a_70_30_split_puts_the_heavier_route_first_on_about_70_percent_of_calls(world):
    use_method(world, Method.WEIGHT)
    Route.objects.filter(pk__in=[world.routes["Charlie"].pk, world.routes["Delta"].pk]).delete()
    Route.objects.filter(pk=world.routes["Alpha"].pk).update(weight=70)
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(weight=30)
    snapshot = world.snapshot()
    calls = 2000
    alpha_id = world.suppliers["Alpha"].pk
    first = sum(
        world.decide(snapshot=snapshot, call_id=f"{n:05d}-split@pbx").targets[0].supplier_id == alpha_id
        for n in range(calls)
    )
    assert 0.65 * calls <= first <= 0.75 * calls, first


def test_a_route_of_weight_zero_comes_last(world):
    use_method(world, Method.WEIGHT)
    Route.objects.filter(rule=world.rule).update(weight=1)
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(weight=0)
    snapshot = world.snapshot()
    for number in range(50):
        assert suppliers_of(world.decide(snapshot=snapshot, call_id=f"zero-{number}"))[-1] == "Bravo"


def test_quality_asr_sorts_best_first_with_near_equal_suppliers_tied_and_ordered_by_cost(world):
    use_method(world, Method.QUALITY, quality_metric=QualityMetric.ASR, quality_tolerance=5)
    quality(world.suppliers["Alpha"], "Germany", attempts=100, answered=62)
    quality(world.suppliers["Charlie"], "germany", attempts=100, answered=64)  # case does not matter
    quality(world.suppliers["Delta"], "Germany", attempts=MIN_QUALITY_ATTEMPTS - 1, answered=9)
    quality(world.suppliers["Bravo"], "France", attempts=100, answered=90)  # another destination
    decision = world.decide(BERLIN)

    # Alpha 62 % and Charlie 64 % are both in the 60 step: the cheaper Alpha goes first.
    # Bravo (no Germany figures) and Delta (too few attempts) follow, by cost.
    assert suppliers_of(decision) == ["Alpha", "Charlie", "Bravo", "Delta"]
    assert {c.supplier: (c.quality, c.rank) for c in decision.candidates} == {
        "Alpha": (62.0, 60.0),
        "Bravo": (None, None),
        "Charlie": (64.0, 60.0),
        "Delta": (None, None),
    }
    # A finer step separates them.
    use_method(world, Method.QUALITY, quality_tolerance=1)
    assert suppliers_of(world.decide(BERLIN)) == ["Charlie", "Alpha", "Bravo", "Delta"]


def test_quality_counts_a_supplier_from_the_minimum_number_of_attempts(world):
    use_method(world, Method.QUALITY, quality_tolerance=1)
    quality(world.suppliers["Charlie"], "Germany", attempts=MIN_QUALITY_ATTEMPTS, answered=1)
    decision = world.decide(BERLIN)
    assert {c.supplier: c.quality for c in decision.candidates}["Charlie"] == 10.0
    # Known (if poor) quality goes before unknown.
    assert suppliers_of(decision) == ["Charlie", "Bravo", "Delta", "Alpha"]


def test_quality_acd_sorts_by_average_answered_seconds_in_tolerance_steps(world):
    use_method(world, Method.QUALITY, quality_metric=QualityMetric.ACD, quality_tolerance=10)
    quality(world.suppliers["Alpha"], "Germany", attempts=80, answered=50, seconds=50 * 120)
    quality(world.suppliers["Bravo"], "Germany", attempts=80, answered=50, seconds=50 * 185)
    quality(world.suppliers["Charlie"], "Germany", attempts=80, answered=50, seconds=50 * 181)
    quality(world.suppliers["Delta"], "Germany", attempts=80, answered=0, seconds=0)
    decision = world.decide(BERLIN)

    assert {c.supplier: (c.quality, c.rank) for c in decision.candidates} == {
        "Alpha": (120.0, 120.0),
        "Bravo": (185.0, 180.0),
        "Charlie": (181.0, 180.0),
        "Delta": (0.0, 0.0),
    }
    # Bravo and Charlie tie at 180 s: Bravo is cheaper. Delta answered nothing: last.
    assert suppliers_of(decision) == ["Bravo", "Charlie", "Alpha", "Delta"]


def test_a_stop_hunting_route_ends_the_list(world):
    Route.objects.filter(pk=world.routes["Delta"].pk).update(stop_hunting=True, setup_timeout=8, max_calls=30)
    decision = world.decide(BERLIN)
    assert suppliers_of(decision) == ["Bravo", "Delta"]
    assert excluded(decision) == {
        "Alpha": "after Delta, which stops hunting",
        "Bravo": "",
        "Charlie": "after Delta, which stops hunting",
        "Delta": "",
    }
    last = decision.targets[-1]
    assert (last.stop_hunting, last.setup_timeout, last.max_calls) == (True, 8, 30)
    assert decision.targets[0].stop_hunting is False
    # When it is the last anyway, nothing is dropped.
    assert suppliers_of(world.decide(UK))[0] == "Delta"
    assert len(world.decide(UK).targets) == 1


# --- Exclusions -----------------------------------------------------------------------------


def test_a_disabled_route_is_left_out(world):
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(enabled=False)
    decision = world.decide()
    assert excluded(decision)["Bravo"] == "route disabled"
    assert suppliers_of(decision) == ["Delta", "Alpha", "Charlie"]


def test_a_disabled_or_suspended_supplier_is_left_out(world):
    peer_services.update_peer(world.suppliers["Bravo"], actor=SYSTEM, changes={"enabled": False})
    peer_services.suspend_peer(world.suppliers["Delta"], actor=SYSTEM, reason="Fraud alert")
    decision = world.decide()
    assert excluded(decision) == {
        "Alpha": "",
        "Bravo": "supplier disabled",
        "Charlie": "",
        "Delta": "supplier suspended: Fraud alert",
    }
    assert suppliers_of(decision) == ["Alpha", "Charlie"]


def test_a_suppliers_destination_or_callee_blocklist_leaves_it_out_but_its_caller_list_does_not(world):
    blocklist("Bravo no Berlin", Blocklist.Kind.DESTINATION, ["4930"], peers=[world.suppliers["Bravo"]])
    blocklist("Delta no number", Blocklist.Kind.CALLEE, [BERLIN], peers=[world.suppliers["Delta"]])
    blocklist("Alpha callers", Blocklist.Kind.CALLER, [CALLER], peers=[world.suppliers["Alpha"]])
    decision = world.decide(BERLIN)
    assert excluded(decision) == {
        "Alpha": "",
        "Bravo": "blocked by Bravo no Berlin",
        "Charlie": "",
        "Delta": "blocked by Delta no number",
    }
    assert suppliers_of(decision) == ["Alpha", "Charlie"]
    assert suppliers_of(world.decide("4989123456")) == LCR_BERLIN


def test_a_supplier_without_a_buy_list_or_a_rate_is_left_out(world):
    echo = make_peer("Echo", role=Peer.Role.SUPPLIER)
    peer_services.add_gateway(echo, actor=SYSTEM, name="main", host="192.0.2.5")
    add_route(world.rule, echo)
    decision = world.decide(FRANCE)
    assert excluded(decision) == {
        "Alpha": "",
        "Bravo": "",
        "Charlie": "",
        "Delta": "no rate",
        "Echo": "no buy price list",
    }
    assert suppliers_of(decision) == ["Charlie", "Alpha", "Bravo"]
    assert [c.price for c in decision.candidates if c.supplier in ("Delta", "Echo")] == [None, None]


def test_no_loss_leaves_out_suppliers_dearer_than_the_sell_price(world):
    decision = world.decide(MOBILE)  # sells at 0.08; Delta buys at 0.09
    assert excluded(decision)["Delta"] == "margin: buys at 0.090000, sells at 0.080000 (no loss)"
    assert suppliers_of(decision) == ["Charlie", "Alpha", "Bravo"]


def test_allow_loss_keeps_dearer_suppliers_in_cost_order(world):
    update_peer(world.customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    decision = world.decide(MOBILE)
    assert set(excluded(decision).values()) == {""}
    assert suppliers_of(decision) == ["Charlie", "Alpha", "Bravo", "Delta"]


def test_a_supplier_at_the_sell_price_passes_no_loss_but_not_profit_only(world):
    even = add_supplier("Even", {"49": "0.0200"})
    peer_services.add_gateway(even, actor=SYSTEM, name="main", host="192.0.2.6")
    add_route(world.rule, even)

    assert excluded(world.decide(BERLIN))["Even"] == ""
    assert suppliers_of(world.decide(BERLIN))[-1] == "Even"
    update_peer(world.customer, profit_control=Peer.ProfitControl.PROFIT_ONLY)
    decision = world.decide(BERLIN)
    assert excluded(decision)["Even"] == "margin: buys at 0.020000, sells at 0.020000 (profit only)"
    assert suppliers_of(decision) == LCR_BERLIN
    update_peer(world.customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    assert excluded(world.decide(BERLIN))["Even"] == ""


def test_a_supplier_buying_in_another_currency_is_left_out_unless_losses_are_allowed(world):
    euro = add_supplier("Euro", {"49": "0.0050"}, currency="EUR")
    peer_services.add_gateway(euro, actor=SYSTEM, name="main", host="192.0.2.7")
    add_route(world.rule, euro)

    decision = world.decide(BERLIN)
    assert excluded(decision)["Euro"] == "margin unknown: buys in EUR, sells in USD"
    euro_candidate = next(c for c in decision.candidates if c.supplier == "Euro")
    assert (euro_candidate.price, euro_candidate.currency) == (Decimal("0.005"), "EUR")
    update_peer(world.customer, profit_control=Peer.ProfitControl.PROFIT_ONLY)
    assert excluded(world.decide(BERLIN))["Euro"] == "margin unknown: buys in EUR, sells in USD"
    update_peer(world.customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    assert excluded(world.decide(BERLIN))["Euro"] == ""


def test_a_route_at_its_live_call_limit_is_left_out_until_a_call_ends(world):
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(max_calls=1)
    first = world.call(BERLIN)
    assert suppliers_of(first)[0] == "Bravo"  # its reservation counts against Bravo's route

    second = world.call(BERLIN)
    assert excluded(second)["Bravo"] == "limit: 1 live calls"
    assert suppliers_of(second) == ["Delta", "Alpha", "Charlie"]
    # Calls whose first attempt is elsewhere do not count against it.
    assert excluded(world.call(BERLIN))["Bravo"] == "limit: 1 live calls"

    release(first.reservation)
    assert suppliers_of(world.decide(BERLIN))[0] == "Bravo"


def test_a_prepaid_supplier_whose_money_has_run_out_is_left_out(world):
    bravo = world.suppliers["Bravo"]
    Account.objects.filter(peer=bravo).update(mode=Account.Mode.PREPAID)
    assert excluded(world.decide())["Bravo"] == "supplier balance: our prepaid money there has run out"

    world.pay(bravo, "5")
    assert excluded(world.decide())["Bravo"] == ""
    # A postpaid supplier we owe money to is still used.
    delta = world.suppliers["Delta"]
    billing.post_adjustment(
        Account.objects.get(peer=delta), actor=SYSTEM, amount=Decimal("-50"), reason="owed"
    )
    assert excluded(world.decide())["Delta"] == ""


def test_a_supplier_without_an_enabled_gateway_is_left_out(world):
    Gateway.objects.filter(pk=world.gateways["Bravo"].pk).update(enabled=False)
    decision = world.decide()
    assert excluded(decision)["Bravo"] == "no enabled gateway"
    assert suppliers_of(decision) == ["Delta", "Alpha", "Charlie"]


def test_a_route_tries_every_enabled_gateway_in_priority_order_unless_it_names_one(world):
    alpha = world.suppliers["Alpha"]
    backup = peer_services.add_gateway(
        alpha, actor=SYSTEM, name="backup", host="alpha.example.net", port=5080, transport="tcp", priority=5
    )
    first = peer_services.add_gateway(alpha, actor=SYSTEM, name="first", host="2001:db8::1", priority=0)
    peer_services.add_gateway(alpha, actor=SYSTEM, name="down", host="192.0.2.99", enabled=False)
    Gateway.objects.filter(pk=world.gateways["Alpha"].pk).update(priority=3)

    decision = world.decide()
    alpha_targets = [t for t in decision.targets if t.supplier_id == alpha.pk]
    assert [(t.gateway_id, t.uri) for t in alpha_targets] == [
        (first.pk, "sip:[2001:db8::1]:5060"),
        (world.gateways["Alpha"].pk, "sip:192.0.2.1:5060"),
        (backup.pk, "sip:alpha.example.net:5080;transport=tcp"),
    ]
    assert len(decision.targets) == 6

    Route.objects.filter(pk=world.routes["Alpha"].pk).update(gateway=backup)
    pinned = [t for t in world.decide().targets if t.supplier_id == alpha.pk]
    assert [t.gateway_id for t in pinned] == [backup.pk]
    Gateway.objects.filter(pk=backup.pk).update(enabled=False)  # the pinned one is down
    assert excluded(world.decide())["Alpha"] == "no enabled gateway"


# --- Money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "tariff", "seconds", "amount"),
    [
        # 1.00 at 0.60/min pays 100 s; billed per minute that is one minute.
        ("1.00", {"price": "0.60", "minimum": 60, "increment": 60}, 60, "0.60"),
        # 30 s then 6 s steps: 30 + 11 * 6 = 96 s (102 s would cost 1.02).
        ("1.00", {"price": "0.60", "minimum": 30, "increment": 6}, 96, "0.96"),
        # The fee comes first: 0.90 left pays 90 s.
        ("1.00", {"price": "0.60", "fee": "0.10"}, 90, "1.00"),
        # 0.07 at 0.06/min: 70 s to the second.
        ("0.07", {"price": "0.06"}, 70, "0.07"),
        # Free of charge (sold at a loss): the ceiling.
        ("0.01", {"price": "0"}, 7200, "0"),
    ],
)
def test_a_prepaid_call_is_granted_the_seconds_its_balance_pays_for(world, balance, tariff, seconds, amount):
    price = tariff.pop("price")
    customer = world.add_customer(
        "Prepaid", "203.0.113.20", rates=[rate("49", price, **tariff)], balance=balance
    )
    update_peer(customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    decision = world.call(source_ip="203.0.113.20")
    assert (decision.routed, decision.max_duration, decision.amount) == (True, seconds, Decimal(amount))
    assert decision.available == Decimal(balance)
    assert Account.objects.get(peer=customer).reserved == Decimal(amount)


def test_a_balance_below_the_first_billed_minute_is_refused(world):
    world.add_customer(
        "Short", "203.0.113.21", rates=[rate("49", "0.60", minimum=60, increment=60)], balance="0.59"
    )
    decision = world.call(source_ip="203.0.113.21")
    assert (decision.code, decision.reason) == (402, "Insufficient funds")


def test_a_postpaid_call_may_use_the_credit_limit(world):
    customer = world.add_customer(
        "Postpaid",
        "203.0.113.22",
        rates=[rate("49", "0.60")],
        balance="0",
        account_mode=Account.Mode.POSTPAID,
        credit_limit=Decimal("5.00"),
    )
    decision = world.call(source_ip="203.0.113.22")
    assert (decision.max_duration, decision.amount, decision.available) == (500, Decimal("5"), Decimal("5"))
    release(decision.reservation)

    account = Account.objects.get(peer=customer)
    billing.post_adjustment(account, actor=SYSTEM, amount=Decimal("-2.00"), reason="last month")
    decision = world.call(source_ip="203.0.113.22")
    assert (decision.max_duration, decision.amount, decision.available) == (300, Decimal("3"), Decimal("3"))
    release(decision.reservation)

    billing.post_adjustment(account, actor=SYSTEM, amount=Decimal("-5.00"), reason="over the limit")
    assert world.call(source_ip="203.0.113.22").code == 402


def test_the_cluster_ceiling_caps_the_grant_and_the_hold_covers_its_billed_time(world):
    cluster(max_call_duration=100)
    world.add_customer(
        "Rich", "203.0.113.23", rates=[rate("49", "0.60", minimum=60, increment=60)], balance="10"
    )
    decision = world.call(source_ip="203.0.113.23")
    # 100 s is billed as two minutes.
    assert (decision.max_duration, decision.amount) == (100, Decimal("1.20"))


def test_each_reservation_lowers_what_the_next_call_may_use_and_a_release_gives_it_back(world):
    cluster(max_call_duration=600)
    customer = world.add_customer("Budget", "203.0.113.24", rates=[rate("49", "0.06")], balance="1.00")

    def reserved():
        return Account.objects.get(peer=customer).reserved

    first = world.call(source_ip="203.0.113.24")
    assert (first.max_duration, first.amount, first.available) == (600, Decimal("0.60"), Decimal("1"))
    second = world.call(source_ip="203.0.113.24")
    assert (second.max_duration, second.amount, second.available) == (400, Decimal("0.40"), Decimal("0.40"))
    assert reserved() == Decimal("1.00")
    assert world.call(source_ip="203.0.113.24").code == 402

    release(first.reservation)
    assert reserved() == Decimal("0.40")
    third = world.call(source_ip="203.0.113.24")
    assert (third.max_duration, third.amount, third.available) == (600, Decimal("0.60"), Decimal("0.60"))


def test_the_same_call_id_asked_twice_gets_the_same_reservation(world):
    update_peer(world.customer, max_calls=1)
    first = world.call(call_id="retried@pbx")
    again = world.call(call_id="retried@pbx")
    assert again.routed  # not refused as a second live call
    assert (again.reservation, again.max_duration, again.amount) == (
        first.reservation,
        first.max_duration,
        first.amount,
    )
    assert again.available == first.available == Decimal("10")
    assert Reservation.objects.count() == 1
    assert Account.objects.get(peer=world.customer).reserved == first.amount


# --- Check routing agrees with call control ------------------------------------------------


def test_checking_without_reserving_gives_the_same_answer_and_writes_nothing(world):
    cluster(max_call_duration=600)
    update_peer(world.customer, max_calls=3)
    snapshot = world.snapshot()
    request = world.request(MOBILE, call_id="check@pbx")

    estimated = settle(snapshot, decide(snapshot, request, at=timezone.now()), reserve=False)
    assert not Reservation.objects.exists()
    assert Account.objects.get(peer=world.customer).reserved == 0
    reserved = settle(snapshot, decide(snapshot, request, at=timezone.now()), reserve=True)

    assert estimated.targets == reserved.targets
    assert [c.excluded for c in estimated.candidates] == [c.excluded for c in reserved.candidates]
    assert (estimated.max_duration, estimated.amount, estimated.available) == (
        reserved.max_duration,
        reserved.amount,
        reserved.available,
    )
    assert (estimated.reservation, isinstance(reserved.reservation, int)) == (None, True)
    assert estimated.steps[-1].detail.endswith(" would be reserved")
    assert reserved.steps[-1].detail.endswith(" reserved")


def test_check_routing_refuses_what_call_control_refuses_for_money(world):
    world.add_customer("Empty", "203.0.113.25", balance="0")
    estimated = world.call(source_ip="203.0.113.25", reserve=False)
    reserved = world.call(source_ip="203.0.113.25", reserve=True)
    assert (
        (estimated.code, estimated.reason) == (reserved.code, reserved.reason) == (402, "Insufficient funds")
    )


def test_the_check_routing_tool_explains_the_decision_call_control_takes(world):
    update_peer(world.customer, profit_control=Peer.ProfitControl.NO_LOSS)
    checked = check_routing(CheckInput(callee=MOBILE, caller=CALLER, peer=world.customer, node=world.node))
    snapshots.forget()
    taken = world.call(MOBILE, call_id="check-routing")
    assert checked.targets == taken.targets
    assert (checked.max_duration, checked.amount) == (taken.max_duration, taken.amount)
    assert checked.reservation is None and taken.reservation is not None
    assert Reservation.objects.count() == 1
