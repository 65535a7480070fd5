"""Automatic load balancing: calls sent to the shared IP are redirected to the live node
with the fewest calls (ClusterSettings.distribute_shared_ip, dedicated-IP origination).

Each test runs the real decide/settle on snapshots built from the database (tests/switching.py);
one snapshot stands for one call-control process, which counts what it sent each node.
"""

import json
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.callcontrol.endpoint import handle
from apps.nodes import services as node_services
from apps.nodes.models import Node
from apps.peers import services as peer_services
from tests.factories import NodeFactory
from tests.switching import BERLIN, SYSTEM, cluster, failed_step

SHARED = "203.0.113.10"


@pytest.fixture
def three(world):
    """world's node1 and node2, a node3, all beating; the cluster distributes its shared IP."""
    NodeFactory(name="node3", sip_address="100.64.9.3")
    beat(*Node.objects.all())
    cluster(shared_ip=SHARED, distribute_shared_ip=True)
    return world


def beat(*nodes, ago: float = 0) -> None:
    for node in nodes:
        Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=ago))


def distributed(world, calls: int, **fields) -> Counter:
    """Where `calls` calls sent to the shared IP were redirected, by node name."""
    snapshot = world.snapshot()
    targets = Counter()
    for _ in range(calls):
        decision = world.call(local_ip=SHARED, snapshot=snapshot, **fields)
        assert (decision.action, decision.code, failed_step(decision)) == ("redirect", 302, "node")
        targets[decision.reason.removeprefix("Served by ")] += 1
        node = Node.objects.get(name=decision.reason.removeprefix("Served by "))
        assert decision.redirect_uri == f"sip:{BERLIN}@{node.sip_address}:{node.sip_port}"
    return targets


def test_calls_to_the_shared_ip_are_spread_evenly_over_the_live_nodes(three):
    assert distributed(three, 300) == {"node1": 100, "node2": 100, "node3": 100}


def test_a_node_with_more_calls_gets_fewer_new_ones(three):
    three.pay(three.customer, "1000")
    for _ in range(30):  # 30 calls up on node2, each holding its reservation
        assert three.call(node="node2").routed

    assert distributed(three, 120) == {"node1": 50, "node2": 20, "node3": 50}


def test_a_node_whose_heartbeat_stopped_gets_no_calls(three):
    beat(Node.objects.get(name="node3"), ago=settings.CLUSTER_STALE_SECONDS + 5)
    assert distributed(three, 100) == {"node1": 50, "node2": 50}


def test_a_peer_assigned_to_nodes_is_sent_to_its_own(three):
    peer_services.assign_peer_to_nodes(three.customer, [three.node2], actor=SYSTEM)
    assert distributed(three, 10) == {"node2": 10}

    beat(three.node2, ago=settings.CLUSTER_STALE_SECONDS + 5)
    decision = three.call(local_ip=SHARED)
    assert (decision.code, decision.reason) == (503, "No node of this peer is up")

    cluster(serve_when_assigned_nodes_down=True)  # service-level HA: any live node
    assert set(distributed(three, 10)) == {"node1", "node3"}


def test_calls_to_a_nodes_own_address_or_without_distribution_are_served_there(three):
    assert three.call(local_ip="100.64.0.1").routed
    assert three.call().routed  # an OpenSIPS that does not send the address
    cluster(distribute_shared_ip=False)
    assert three.call(local_ip=SHARED).routed


def test_a_refused_caller_is_refused_not_redirected(three):
    peer_services.suspend_peer(three.customer, actor=SYSTEM, reason="unpaid")
    decision = three.call(local_ip=SHARED)
    assert (decision.code, failed_step(decision)) == (403, "status")


@pytest.mark.parametrize(
    "changes",
    [
        {"shared_ip": None, "distribute_shared_ip": True},
        {"origination_mode": "shared", "shared_ip": SHARED, "distribute_shared_ip": True},
    ],
)
def test_distributing_needs_the_shared_ip_and_dedicated_origination(db, changes):
    with pytest.raises(ValidationError) as refused:
        node_services.update_cluster_settings(actor=SYSTEM, changes=changes)
    assert "distribute_shared_ip" in refused.value.message_dict


def test_a_local_address_that_is_not_one_is_a_400_naming_it(three):
    body = {
        "call_id": "c1@test",
        "node": "node1",
        "source_ip": "198.51.100.7",
        "caller": "100",
        "callee": BERLIN,
        "local_ip": "shared",
    }
    status, answer = handle(
        "authorize", json.dumps(body).encode(), f"Bearer {three.node.call_control_secret}"
    )
    assert (status, answer) == (400, {"errors": {"local_ip": "Not an IP address."}})
