"""A small switching world for call control: two nodes, a prepaid customer on one IP, four
suppliers with their buy prices and a gateway each, and a least-cost routing plan.

Sell (Retail, USD, 1/1 seconds)     Alpha    Bravo    Charlie  Delta     (buy, USD)
  49   Germany            0.0200    0.0100   0.0080   0.0120   0.0080
  4915 Germany Mobile     0.0800    0.0600   0.0700   0.0500   0.0900
  44   United Kingdom     0.0150    0.0080   0.0090   0.0070   0.0060
  33   France             0.0300    0.0200   0.0250   0.0150   -
  1    USA                0.0100    0.0050   0.0060   0.0040   0.0070

The plan "Main" has one rule for every number (prefix "", least cost) with a route to each
supplier, priorities Alpha 1, Bravo 2, Charlie 3, Delta 4. The customer has 10.00 USD.

The fixtures are in tests/conftest.py: `world` (this world) and `one_minute` (a customer
with money for one minute, for races on server databases); the helpers are here.
"""

import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import connections
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Reservation
from apps.billing.services import reservations
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.decision import CallRequest, Decision, decide, settle
from apps.callcontrol.endpoint import handle
from apps.nodes.models import ClusterSettings, Node
from apps.peers import services as peer_services
from apps.peers.models import Blocklist, Gateway, Peer
from apps.rates import lookup
from apps.rates import services as rate_services
from apps.rates.models import Rate, RateTable
from apps.routing.models import Method, Route, RoutingPlan, RoutingRule
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer, make_rate_table

SYSTEM = Scope.system()
CUSTOMER_IP = "198.51.100.10"
CALLER = "4930111222"
BERLIN = "4930123456"  # Germany, 49
MOBILE = "4915112345678"  # Germany Mobile, 4915
FRANCE = "33123456789"
UK = "442079460000"
LCR_BERLIN = ["Bravo", "Delta", "Alpha", "Charlie"]  # 0.008 (prio 2), 0.008 (prio 4), 0.010, 0.012

SELL = {
    "49": ("Germany", "0.0200"),
    "4915": ("Germany Mobile", "0.0800"),
    "44": ("United Kingdom", "0.0150"),
    "33": ("France", "0.0300"),
    "1": ("USA", "0.0100"),
}
BUY = {
    "Alpha": {"49": "0.0100", "4915": "0.0600", "44": "0.0080", "33": "0.0200", "1": "0.0050"},
    "Bravo": {"49": "0.0080", "4915": "0.0700", "44": "0.0090", "33": "0.0250", "1": "0.0060"},
    "Charlie": {"49": "0.0120", "4915": "0.0500", "44": "0.0070", "33": "0.0150", "1": "0.0040"},
    "Delta": {"49": "0.0080", "4915": "0.0900", "44": "0.0060", "1": "0.0070"},
}
PRIORITY = {"Alpha": 1, "Bravo": 2, "Charlie": 3, "Delta": 4}
GATEWAY_HOST = {"Alpha": "192.0.2.1", "Bravo": "192.0.2.2", "Charlie": "192.0.2.3", "Delta": "192.0.2.4"}

_call_ids = itertools.count(1)


def rate(
    prefix: str,
    price: str,
    destination: str = "",
    *,
    fee: str = "0",
    minimum: int = 1,
    increment: int = 1,
    free: int = 0,
) -> Rate:
    return Rate(
        prefix=prefix,
        destination=destination or f"Destination {prefix}",
        price=Decimal(price),
        connection_fee=Decimal(fee),
        min_seconds=minimum,
        increment_seconds=increment,
        free_seconds=free,
        effective_from=timezone.now() - timedelta(days=1),
    )


def price_list(name: str, rates, *, purpose: str = "sell", currency: str = "USD", reseller=None) -> RateTable:
    table = make_rate_table(name, purpose=purpose, currency=currency, reseller=reseller)
    rate_services.add_rates(table, list(rates), actor=SYSTEM)
    return table


def add_supplier(name: str, prices: dict[str, str], *, currency: str = "USD", **kwargs) -> Peer:
    """A supplier with a buy list of `prices` (prefix -> price) and no gateway yet."""
    table = price_list(
        f"{name} buy", [rate(p, price) for p, price in prices.items()], purpose="buy", currency=currency
    )
    return make_peer(name, role=Peer.Role.SUPPLIER, buy_rate_table_id=table.pk, **kwargs)


def add_rule(plan: RoutingPlan, prefix: str = "", method: str = Method.LEAST_COST, **fields) -> RoutingRule:
    return RoutingRule.objects.create(plan=plan, prefix=prefix, method=method, **fields)


def add_route(rule: RoutingRule, supplier: Peer, **fields) -> Route:
    return Route.objects.create(rule=rule, supplier=supplier, **fields)


def set_plan(peer: Peer, plan: RoutingPlan | None) -> None:
    Peer.objects.filter(pk=peer.pk).update(routing_plan=plan)


def update_peer(peer: Peer, **fields) -> None:
    """Settings no peer service takes (profit control, plan, recording): straight to the row."""
    Peer.objects.filter(pk=peer.pk).update(**fields)


def cluster(**fields) -> None:
    ClusterSettings.load()
    ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).update(**fields)


def suppliers_of(decision: Decision) -> list[str]:
    """Supplier names in the order of the decision's targets (one per route)."""
    names, seen = [], set()
    for target in decision.targets:
        if target.route_id not in seen:
            seen.add(target.route_id)
            names.append(Peer.objects.get(pk=target.supplier_id).name)
    return names


def excluded(decision: Decision) -> dict[str, str]:
    """Supplier name -> why its route is out ("" when it is in)."""
    return {c.supplier: c.excluded for c in decision.candidates}


def failed_step(decision: Decision) -> str:
    """The name of the step that stopped the call (the last one, written with ok=False)."""
    last = decision.steps[-1]
    assert not last.ok, f"the last step {last.name} passed: {decision.steps}"
    return last.name


@dataclass
class World:
    node: Node
    node2: Node
    customer: Peer
    sell_table: RateTable
    suppliers: dict[str, Peer]
    gateways: dict[str, Gateway]
    plan: RoutingPlan
    rule: RoutingRule
    routes: dict[str, Route]
    index_dir: object
    defaults: dict = field(default_factory=dict)

    def snapshot(self) -> snapshots.Snapshot:
        """A snapshot of the database as it is now, with the rate indexes rebuilt from it."""
        lookup.forget_indexes()
        for path in self.index_dir.glob("*.idx"):
            path.unlink()
        return snapshots.build()

    def request(self, callee: str = BERLIN, **fields) -> CallRequest:
        values = {
            "call_id": f"call-{next(_call_ids)}@test",
            "node": self.node.name,
            "caller": CALLER,
            "callee": callee,
            "source_ip": CUSTOMER_IP,
        }
        values.update(fields)
        return CallRequest(**values)

    def decide(self, callee: str = BERLIN, *, snapshot=None, **fields) -> Decision:
        """The decision without the money, on a fresh snapshot unless one is given."""
        return decide(snapshot or self.snapshot(), self.request(callee, **fields), at=timezone.now())

    def call(self, callee: str = BERLIN, *, reserve: bool = True, snapshot=None, **fields) -> Decision:
        """The whole decision, money included, as call control takes it."""
        snapshot = snapshot or self.snapshot()
        decision = decide(snapshot, self.request(callee, **fields), at=timezone.now())
        return settle(snapshot, decision, reserve=reserve)

    def pay(self, peer: Peer, amount: str) -> None:
        billing.post_payment(Peer.objects.get(pk=peer.pk).account, actor=SYSTEM, amount=Decimal(amount))

    def add_customer(
        self,
        name: str,
        ip: str | None = None,
        *,
        rates=None,
        balance: str = "10.00",
        plan: RoutingPlan | str | None = "main",
        reseller=None,
        **kwargs,
    ) -> Peer:
        """A customer routed by `plan` (Main unless told), on `ip`, with its own sell list if
        `rates` are given (else Retail), and `balance` paid in."""
        if rates is not None:
            table = price_list(f"{name} sell", rates, reseller=reseller)
        elif reseller is not None:
            table = price_list(
                f"{name} sell", [rate(p, price, dest) for p, (dest, price) in SELL.items()], reseller=reseller
            )
        else:
            table = self.sell_table
        peer = make_peer(name, reseller=reseller, sell_rate_table_id=table.pk, **kwargs)
        if ip:
            peer_services.add_endpoint(peer, actor=SYSTEM, ip=ip)
        if Decimal(balance) > 0:
            self.pay(peer, balance)
        set_plan(peer, self.plan if plan == "main" else plan)
        return Peer.objects.get(pk=peer.pk)


def build_world(index_dir) -> World:
    """The world of this module's docstring; its rate indexes go to `index_dir`."""
    node = NodeFactory(name="node1")
    node2 = NodeFactory(name="node2")
    sell = price_list("Retail", [rate(p, price, dest) for p, (dest, price) in SELL.items()])
    customer = make_peer("Acme", sell_rate_table_id=sell.pk)
    peer_services.add_endpoint(customer, actor=SYSTEM, ip=CUSTOMER_IP)
    billing.post_payment(customer.account, actor=SYSTEM, amount=Decimal("10.00"))

    suppliers, gateways = {}, {}
    for name, prices in BUY.items():
        supplier = add_supplier(name, prices)
        suppliers[name] = supplier
        gateways[name] = peer_services.add_gateway(
            supplier, actor=SYSTEM, name="main", host=GATEWAY_HOST[name]
        )
    plan = RoutingPlan.objects.create(name="Main")
    rule = add_rule(plan)
    routes = {
        name: add_route(rule, supplier, priority=PRIORITY[name]) for name, supplier in suppliers.items()
    }
    set_plan(customer, plan)
    return World(
        node=node,
        node2=node2,
        customer=customer,
        sell_table=sell,
        suppliers=suppliers,
        gateways=gateways,
        plan=plan,
        rule=rule,
        routes=routes,
        index_dir=index_dir,
    )


def build_one_minute() -> tuple[Peer, list[Node]]:
    """A prepaid customer with money for exactly one minute, and two nodes."""
    nodes = [NodeFactory(name="node1"), NodeFactory(name="node2")]
    start = timezone.now() - timedelta(days=1)
    sell = make_rate_table("Retail")
    buy = make_rate_table("Carrier buy", purpose="buy")
    rate_services.add_rates(
        sell, [Rate(prefix="44", price=Decimal("0.60"), effective_from=start)], actor=SYSTEM
    )
    rate_services.add_rates(
        buy, [Rate(prefix="44", price=Decimal("0.30"), effective_from=start)], actor=SYSTEM
    )
    supplier = make_peer("Carrier", role=Peer.Role.SUPPLIER, buy_rate_table_id=buy.pk)
    peer_services.add_gateway(supplier, actor=SYSTEM, name="gw1", host="192.0.2.1")
    customer = make_peer("Prepaid customer", sell_rate_table_id=sell.pk)
    peer_services.add_endpoint(customer, actor=SYSTEM, ip="198.51.100.7")
    # Money for exactly one minute at 0.60/min, per-second billing.
    billing.post_payment(customer.account, actor=SYSTEM, amount=Decimal("0.60"), reference="pay-1")
    plan = RoutingPlan.objects.create(name="Default")
    rule = RoutingRule.objects.create(plan=plan, prefix="", method="lcr")
    Route.objects.create(rule=rule, supplier=supplier)
    cluster = ClusterSettings.load()
    cluster.default_routing_plan = plan
    cluster.save()
    return customer, nodes


def race(requests):
    """Send call-control requests [(node, body)] from threads released at once; their answers."""
    barrier = threading.Barrier(len(requests))
    answers = [None] * len(requests)

    def call(index, node, body):
        try:
            barrier.wait()
            answers[index] = handle(
                "authorize", json.dumps(body).encode(), f"Bearer {node.call_control_secret}"
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call, args=(i, node, body)) for i, (node, body) in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def blocklist(name: str, kind: str, prefixes, *, peers=(), applies_to_all=False) -> Blocklist:
    created = peer_services.create_blocklist(
        actor=SYSTEM, name=name, kind=kind, applies_to_all=applies_to_all
    )
    peer_services.add_blocklist_entries(created, prefixes, actor=SYSTEM)
    for peer in peers:
        peer_services.set_peer_blocklists(peer, [created, *peer.blocklists.all()], actor=SYSTEM)
    return created


def release(reservation_id: int) -> None:
    """The call failed before answer: its money goes back."""
    assert reservations.release(reservation_id, outcome=Reservation.Outcome.FAILED)
