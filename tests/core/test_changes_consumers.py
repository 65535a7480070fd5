"""Every service that writes what call control holds announces it: the snapshot follows.

One case per service verb. Each builds a small world through the services, lets call
control build its snapshot in another thread, runs the verb (which commits), and reads the
snapshot again in another thread after the refresh interval: the change must be there,
without snapshot.forget(). A verb that forgot to announce leaves the snapshot as it was.
"""

from dataclasses import dataclass

import pytest
from django.db import transaction

from apps.billing import services as billing
from apps.nodes import services as node_services
from apps.nodes.models import ClusterSettings, Node
from apps.peers import services as peer_services
from apps.peers.models import Blocklist, Endpoint, Gateway, Peer, RewriteRule, SipAccount
from apps.rates import services as rate_services
from apps.routing import services as routing
from apps.routing.models import Route, RoutingPlan, RoutingRule
from apps.tenancy import services as tenancy_services
from tests.core.test_changes import SYSTEM, quick_snapshot, seen_by_call_control  # noqa: F401
from tests.factories import make_peer, make_rate_table, make_reseller

CUSTOMER_IP = "198.51.100.7"
NEW_IP = "198.51.100.99"


@dataclass
class World:
    node: Node
    reseller: object
    sell: object
    customer: Peer
    endpoint: Endpoint
    account: SipAccount
    rewrite: RewriteRule
    supplier: Peer
    gateway: Gateway
    plan: RoutingPlan
    rule: RoutingRule
    route: Route
    blocklist: Blocklist


@pytest.fixture
def world(transactional_db, quick_snapshot) -> World:  # noqa: F811
    # One commit for the whole world (a dozen service calls, each its own commit otherwise,
    # cost half a second a test on MariaDB): call control first reads it after, in the test.
    with transaction.atomic():
        return _build_world()


def _build_world() -> World:
    ClusterSettings.load()  # there before call control reads it, as in production
    node = node_services.create_node(
        actor=SYSTEM, name="node1", management_address="10.0.0.1", sip_address="100.64.0.1"
    )
    reseller = make_reseller("Reseller A")
    sell = make_rate_table("Retail A", reseller=reseller)
    customer = make_peer("Acme", reseller=reseller, sell_rate_table_id=sell.pk)
    endpoint = peer_services.add_endpoint(customer, actor=SYSTEM, ip=CUSTOMER_IP)
    account = peer_services.add_sip_account(
        customer, actor=SYSTEM, username="alice", domain="sip.test", password="secret-pass-1"
    )
    rewrite = peer_services.add_rewrite_rule(
        customer, actor=SYSTEM, field="callee", pattern=r"^00(\d+)$", replacement=r"\1"
    )
    buy = make_rate_table("Carrier buy", purpose="buy")
    supplier = make_peer("Carrier", role=Peer.Role.SUPPLIER, buy_rate_table_id=buy.pk)
    gateway = peer_services.add_gateway(supplier, actor=SYSTEM, name="gw1", host="192.0.2.1")
    plan = routing.create_plan(actor=SYSTEM, name="Main")
    rule = routing.add_rule(plan, actor=SYSTEM, prefix="44", method="lcr")
    route = routing.add_route(rule, actor=SYSTEM, supplier=supplier, priority=1)
    blocklist = peer_services.create_blocklist(actor=SYSTEM, name="Premium", kind=Blocklist.Kind.DESTINATION)
    peer_services.add_blocklist_entries(blocklist, ["4490"], actor=SYSTEM)
    return World(
        node,
        reseller,
        sell,
        customer,
        endpoint,
        account,
        rewrite,
        supplier,
        gateway,
        plan,
        rule,
        route,
        blocklist,
    )


seen = seen_by_call_control


# --- peers --------------------------------------------------------------------------------


def create_peer(w):
    assert seen(lambda s: sorted(p.name for p in s.peers.values())) == ["Acme", "Carrier"]
    make_peer("Newcomer", reseller=w.reseller, sell_rate_table_id=w.sell.pk)
    assert seen(lambda s: sorted(p.name for p in s.peers.values())) == ["Acme", "Carrier", "Newcomer"]


def update_peer(w):
    assert seen(lambda s: s.peers[w.customer.pk].max_calls) is None
    peer_services.update_peer(w.customer, actor=SYSTEM, changes={"max_calls": 3})
    assert seen(lambda s: s.peers[w.customer.pk].max_calls) == 3


def suspend_peer(w):
    assert seen(lambda s: s.peers[w.customer.pk].suspended_reason) is None
    peer_services.suspend_peer(w.customer, actor=SYSTEM, reason="unpaid")
    assert seen(lambda s: s.peers[w.customer.pk].suspended_reason) == "unpaid"


def resume_peer(w):
    peer_services.suspend_peer(w.customer, actor=SYSTEM, reason="unpaid")
    assert seen(lambda s: s.peers[w.customer.pk].suspended_reason) == "unpaid"
    peer_services.resume_peer(w.customer, actor=SYSTEM)
    assert seen(lambda s: s.peers[w.customer.pk].suspended_reason) is None


def assign_peer_to_nodes(w):
    assert seen(lambda s: s.peers[w.customer.pk].node_ids) == frozenset()
    peer_services.assign_peer_to_nodes(w.customer, [w.node], actor=SYSTEM)
    assert seen(lambda s: s.peers[w.customer.pk].node_ids) == {w.node.pk}


def add_endpoint(w):
    assert seen(lambda s: s.addresses.peers(NEW_IP)) == []
    peer_services.add_endpoint(w.customer, actor=SYSTEM, ip=NEW_IP)
    assert seen(lambda s: s.addresses.peers(NEW_IP)) == [w.customer.pk]


def update_endpoint(w):
    assert seen(lambda s: s.addresses.peers(CUSTOMER_IP)) == [w.customer.pk]
    peer_services.update_child(w.endpoint, actor=SYSTEM, changes={"enabled": False})
    assert seen(lambda s: s.addresses.peers(CUSTOMER_IP)) == []


def remove_endpoint(w):
    assert seen(lambda s: s.addresses.peers(CUSTOMER_IP)) == [w.customer.pk]
    peer_services.remove_child(w.endpoint, actor=SYSTEM)
    assert seen(lambda s: s.addresses.peers(CUSTOMER_IP)) == []


def add_sip_account(w):
    assert seen(lambda s: s.sip_logins.get("bob@sip.test")) is None
    peer_services.add_sip_account(
        w.customer, actor=SYSTEM, username="bob", domain="sip.test", password="secret-pass-2"
    )
    assert seen(lambda s: s.sip_logins.get("bob@sip.test")) == w.customer.pk


def update_sip_account(w):
    assert seen(lambda s: s.sip_logins.get("alice@sip.test")) == w.customer.pk
    peer_services.update_child(w.account, actor=SYSTEM, changes={"enabled": False})
    assert seen(lambda s: s.sip_logins.get("alice@sip.test")) is None


def remove_sip_account(w):
    assert seen(lambda s: s.sip_logins.get("alice@sip.test")) == w.customer.pk
    peer_services.remove_child(w.account, actor=SYSTEM)
    assert seen(lambda s: s.sip_logins.get("alice@sip.test")) is None


def add_gateway(w):
    assert seen(lambda s: [g.name for g in s.gateways[w.supplier.pk]]) == ["gw1"]
    peer_services.add_gateway(w.supplier, actor=SYSTEM, name="gw2", host="192.0.2.2")
    assert seen(lambda s: [g.name for g in s.gateways[w.supplier.pk]]) == ["gw1", "gw2"]


def update_gateway(w):
    assert seen(lambda s: s.gateway_by_id[w.gateway.pk].enabled) is True
    peer_services.update_child(w.gateway, actor=SYSTEM, changes={"enabled": False})
    assert seen(lambda s: s.gateway_by_id[w.gateway.pk].enabled) is False


def remove_gateway(w):
    assert seen(lambda s: list(s.gateway_by_id)) == [w.gateway.pk]
    peer_services.remove_child(w.gateway, actor=SYSTEM)
    assert seen(lambda s: list(s.gateway_by_id)) == []


def _rewritten(w):
    return lambda s: s.peers[w.customer.pk].rewrite("ingress", "callee", "00441234")


def add_rewrite_rule(w):
    peer_services.remove_child(w.rewrite, actor=SYSTEM)
    assert seen(_rewritten(w)) == "00441234"
    peer_services.add_rewrite_rule(w.customer, actor=SYSTEM, field="callee", pattern=r"^00(\d+)$")
    assert seen(_rewritten(w)) == ""


def update_rewrite_rule(w):
    assert seen(_rewritten(w)) == "441234"
    peer_services.update_child(w.rewrite, actor=SYSTEM, changes={"replacement": r"+\1"})
    assert seen(_rewritten(w)) == "+441234"


def remove_rewrite_rule(w):
    assert seen(_rewritten(w)) == "441234"
    peer_services.remove_child(w.rewrite, actor=SYSTEM)
    assert seen(_rewritten(w)) == "00441234"


def create_blocklist(w):
    assert seen(lambda s: sorted(b.name for b in s.blocklists.values())) == ["Premium"]
    peer_services.create_blocklist(actor=SYSTEM, name="Fraud", kind=Blocklist.Kind.CALLER)
    assert seen(lambda s: sorted(b.name for b in s.blocklists.values())) == ["Fraud", "Premium"]


def update_blocklist(w):
    assert seen(lambda s: s.global_blocklist_ids) == ()
    peer_services.update_blocklist(w.blocklist, actor=SYSTEM, changes={"applies_to_all": True})
    assert seen(lambda s: s.global_blocklist_ids) == (w.blocklist.pk,)


def add_blocklist_entries(w):
    assert seen(lambda s: s.blocklists[w.blocklist.pk].prefixes) == {"4490"}
    peer_services.add_blocklist_entries(w.blocklist, ["4491", "4492"], actor=SYSTEM)
    assert seen(lambda s: s.blocklists[w.blocklist.pk].prefixes) == {"4490", "4491", "4492"}


def remove_blocklist_entries(w):
    assert seen(lambda s: s.blocklists[w.blocklist.pk].prefixes) == {"4490"}
    peer_services.remove_blocklist_entries(w.blocklist, ["4490"], actor=SYSTEM)
    assert seen(lambda s: s.blocklists[w.blocklist.pk].prefixes) == frozenset()


def set_peer_blocklists(w):
    assert seen(lambda s: s.peers[w.customer.pk].blocklist_ids) == ()
    peer_services.set_peer_blocklists(w.customer, [w.blocklist], actor=SYSTEM)
    assert seen(lambda s: s.peers[w.customer.pk].blocklist_ids) == (w.blocklist.pk,)


# --- routing ------------------------------------------------------------------------------


def create_plan(w):
    assert seen(lambda s: sorted(p.name for p in s.plans.values())) == ["Main"]
    routing.create_plan(actor=SYSTEM, name="Backup")
    assert seen(lambda s: sorted(p.name for p in s.plans.values())) == ["Backup", "Main"]


def update_plan(w):
    assert seen(lambda s: s.plans[w.plan.pk].name) == "Main"
    routing.update_plan(w.plan, actor=SYSTEM, changes={"name": "Primary"})
    assert seen(lambda s: s.plans[w.plan.pk].name) == "Primary"


def delete_plan(w):
    spare = routing.create_plan(actor=SYSTEM, name="Spare")
    assert seen(lambda s: sorted(p.name for p in s.plans.values())) == ["Main", "Spare"]
    routing.delete_plan(spare, actor=SYSTEM)
    assert seen(lambda s: sorted(p.name for p in s.plans.values())) == ["Main"]


def _rules(w):
    return lambda s: sorted(s.plans[w.plan.pk].rules)


def add_rule(w):
    assert seen(_rules(w)) == ["44"]
    routing.add_rule(w.plan, actor=SYSTEM, prefix="33", method="lcr")
    assert seen(_rules(w)) == ["33", "44"]


def update_rule(w):
    assert seen(_rules(w)) == ["44"]
    routing.update_rule(w.rule, actor=SYSTEM, changes={"prefix": "49"})
    assert seen(_rules(w)) == ["49"]


def remove_rule(w):
    assert seen(_rules(w)) == ["44"]
    routing.remove_rule(w.rule, actor=SYSTEM)
    assert seen(_rules(w)) == []


def _route_priorities(w):
    return lambda s: [route.priority for route in s.plans[w.plan.pk].rules["44"][0].routes]


def add_route(w):
    assert seen(_route_priorities(w)) == [1]
    routing.add_route(w.rule, actor=SYSTEM, supplier=w.supplier, gateway_id=w.gateway.pk, priority=2)
    assert seen(_route_priorities(w)) == [1, 2]


def update_route(w):
    assert seen(_route_priorities(w)) == [1]
    routing.update_route(w.route, actor=SYSTEM, changes={"priority": 5})
    assert seen(_route_priorities(w)) == [5]


def remove_route(w):
    assert seen(_route_priorities(w)) == [1]
    routing.remove_route(w.route, actor=SYSTEM)
    assert seen(_route_priorities(w)) == []


# --- nodes, resellers, price lists, accounts ----------------------------------------------


def create_node(w):
    assert seen(lambda s: sorted(s.nodes)) == ["node1"]
    node_services.create_node(
        actor=SYSTEM, name="node2", management_address="10.0.0.2", sip_address="100.64.0.2"
    )
    assert seen(lambda s: sorted(s.nodes)) == ["node1", "node2"]


def update_node(w):
    assert seen(lambda s: s.nodes["node1"].sip_port) == 5060
    node_services.update_node(w.node, actor=SYSTEM, changes={"sip_port": 5070})
    assert seen(lambda s: s.nodes["node1"].sip_port) == 5070


def rotate_call_control_secret(w):
    before = seen(lambda s: s.nodes["node1"].secret)
    rotated = node_services.rotate_call_control_secret(w.node, actor=SYSTEM)
    assert rotated.call_control_secret != before
    assert seen(lambda s: s.nodes["node1"].secret) == rotated.call_control_secret


def update_cluster_settings(w):
    assert seen(lambda s: s.peers[w.customer.pk].plan_id) is None
    node_services.update_cluster_settings(actor=SYSTEM, changes={"default_routing_plan_id": w.plan.pk})
    assert seen(lambda s: s.peers[w.customer.pk].plan_id) == w.plan.pk


def update_reseller(w):
    assert seen(lambda s: s.peers[w.customer.pk].reseller_active) is True
    tenancy_services.update_reseller(w.reseller, actor=SYSTEM, changes={"is_active": False})
    assert seen(lambda s: s.peers[w.customer.pk].reseller_active) is False


def update_rate_table(w):
    assert seen(lambda s: s.peers[w.customer.pk].currency) == "USD"
    rate_services.update_rate_table(w.sell, actor=SYSTEM, changes={"currency": "EUR"})
    assert seen(lambda s: s.peers[w.customer.pk].currency) == "EUR"


def update_account(w):
    # A prepaid supplier with nothing paid in gets no calls. The money clock
    # (SUPPLIER_MONEY_SECONDS, 5 s) is far longer than the wait: the announcement does it.
    assert w.supplier.pk not in seen(lambda s: s.suppliers_without_money)
    billing.update_account(w.supplier.account, actor=SYSTEM, changes={"mode": "prepaid"})
    assert w.supplier.pk in seen(lambda s: s.suppliers_without_money)


VERBS = [
    create_peer,
    update_peer,
    suspend_peer,
    resume_peer,
    assign_peer_to_nodes,
    add_endpoint,
    update_endpoint,
    remove_endpoint,
    add_sip_account,
    update_sip_account,
    remove_sip_account,
    add_gateway,
    update_gateway,
    remove_gateway,
    add_rewrite_rule,
    update_rewrite_rule,
    remove_rewrite_rule,
    create_blocklist,
    update_blocklist,
    add_blocklist_entries,
    remove_blocklist_entries,
    set_peer_blocklists,
    create_plan,
    update_plan,
    delete_plan,
    add_rule,
    update_rule,
    remove_rule,
    add_route,
    update_route,
    remove_route,
    create_node,
    update_node,
    rotate_call_control_secret,
    update_cluster_settings,
    update_reseller,
    update_rate_table,
    update_account,
]


@pytest.mark.parametrize("verb", VERBS, ids=[verb.__name__ for verb in VERBS])
def test_call_control_sees_what_the_service_committed_within_the_refresh_interval(world, verb):
    verb(world)
