"""Calls refused before routing: nodes, peers, resellers, blocklists, prices, plans, money
and call limits, each with its SIP answer. Every test runs the real decide/settle on a
snapshot built from the database (the world and its prices: tests/switching.py)."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.billing.models import Reservation
from apps.nodes.models import Node
from apps.peers import services as peer_services
from apps.peers.models import Blocklist, Peer
from apps.routing.models import Method, Route, RoutingPlan
from apps.tenancy.models import Reseller
from tests.factories import NodeFactory, make_reseller
from tests.switching import (
    BERLIN,
    CUSTOMER_IP,
    MOBILE,
    SYSTEM,
    UK,
    add_route,
    add_rule,
    blocklist,
    cluster,
    excluded,
    failed_step,
    release,
    set_plan,
    update_peer,
)

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


def beat(*nodes, ago: float = 0) -> None:
    for node in nodes:
        Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=ago))


def test_a_redirect_goes_to_a_live_assigned_node_not_to_a_dead_one(world):
    cluster(redirect_to_assigned_node=True)
    node3 = NodeFactory(name="node3", sip_address="100.64.9.3")
    peer_services.assign_peer_to_nodes(world.customer, [world.node2, node3], actor=SYSTEM)
    stale = settings.CLUSTER_STALE_SECONDS + 5
    beat(world.node, node3)
    beat(world.node2, ago=stale)  # first by name, but its heartbeat stopped

    decision = world.call(node="node1")

    assert (decision.code, decision.redirect_uri) == (302, f"sip:{BERLIN}@100.64.9.3:5060")


def test_service_level_ha_serves_a_peer_elsewhere_while_its_nodes_are_down_and_gives_it_back(world):
    peer_services.assign_peer_to_nodes(world.customer, [world.node2], actor=SYSTEM)
    stale = settings.CLUSTER_STALE_SECONDS + 5
    beat(world.node)
    beat(world.node2, ago=stale)

    # Node-level HA (the default): the peer waits for its own node.
    assert (world.call(node="node1").code, failed_step(world.call(node="node1"))) == (403, "node")

    cluster(serve_when_assigned_nodes_down=True)
    served = world.call(node="node1")
    assert served.routed
    assert [s.detail for s in served.steps if s.name == "node"] == [
        "served on node1 while the peer's own nodes are down"
    ]

    beat(world.node2)  # back: its calls go to it again
    decision = world.call(node="node1")
    assert (decision.code, decision.reason) == (403, "Not served on node node1")

    cluster(redirect_to_assigned_node=True)
    assert world.call(node="node1").redirect_uri == f"sip:{BERLIN}@{world.node2.sip_address}:5060"


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
