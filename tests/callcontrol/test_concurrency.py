"""Concurrent calls of one prepaid account never hold more money than it has.

Real threads, each with its own database connection, committing for real
(transaction=True): what two nodes asking at once look like to one database server.
The Galera version (two servers certifying) is in the cluster tests.
"""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from apps.billing import reservations
from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.endpoint import handle
from apps.nodes.models import ClusterSettings
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.rates import lookup
from apps.rates.models import Rate
from apps.rates.services import add_rates
from apps.routing.models import Route, RoutingPlan, RoutingRule
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer, make_rate_table

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Scope.system()
CALLS = 10


@pytest.fixture
def world(settings, tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every writer itself; this race needs a server database")
    settings.PREFIX_INDEX_DIR = tmp_path / "index"
    lookup.forget_indexes()
    snapshots.forget()
    nodes = [NodeFactory(name="node1"), NodeFactory(name="node2")]
    start = timezone.now() - timedelta(days=1)
    sell = make_rate_table("Retail")
    buy = make_rate_table("Carrier buy", purpose="buy")
    add_rates(sell, [Rate(prefix="44", price=Decimal("0.60"), effective_from=start)], actor=SYSTEM)
    add_rates(buy, [Rate(prefix="44", price=Decimal("0.30"), effective_from=start)], actor=SYSTEM)
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
    yield customer, nodes
    lookup.forget_indexes()
    snapshots.forget()


def _race(requests):
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


def test_ten_concurrent_calls_share_one_minute_of_money(world, monkeypatch):
    customer, nodes = world
    snapshots.current()  # built once here, not ten times in the race
    # Widen the race: every call pauses between reading the account and writing its
    # reservation, so without the row lock all ten would read the same money.
    decide = reservations._decide

    def slow_decide(*args):
        time.sleep(0.05)
        return decide(*args)

    monkeypatch.setattr(reservations, "_decide", slow_decide)
    requests = [
        (
            nodes[i % 2],
            {
                "call_id": f"race-{i}",
                "node": nodes[i % 2].name,
                "source_ip": "198.51.100.7",
                "caller": "15550000",
                "callee": "447700900123",
            },
        )
        for i in range(CALLS)
    ]
    answers = _race(requests)

    assert all(status == 200 for status, _ in answers)
    granted = [body["max_duration"] for _, body in answers if body["action"] == "route"]
    refused = [body["code"] for _, body in answers if body["action"] == "reject"]
    assert sum(granted) == 60, answers
    assert granted == [60]
    assert refused == [402] * (CALLS - 1)

    account = Account.objects.get(peer=customer)
    held = Reservation.objects.active().filter(account=account)
    assert account.reserved == Decimal("0.600000") == sum(r.amount for r in held)
    assert held.count() == 1


def _ask(operation, node, body):
    status, answer = handle(operation, json.dumps(body).encode(), f"Bearer {node.call_control_secret}")
    assert status == 200, answer
    return answer


def test_released_money_is_granted_again(world):
    customer, nodes = world
    node = nodes[0]
    body = {"call_id": "a", "node": node.name, "source_ip": "198.51.100.7", "callee": "447700900123"}
    first = _ask("authorize", node, body)
    assert first["max_duration"] == 60
    assert _ask("authorize", node, {**body, "call_id": "b"})["code"] == 402
    release = {"node": node.name, "call_id": "a", "reservation": first["reservation"]}
    assert _ask("release", node, release) == {"released": 1}
    assert _ask("authorize", node, {**body, "call_id": "c"})["max_duration"] == 60
    assert Account.objects.get(peer=customer).reserved == Decimal("0.600000")
