"""One address for every customer: the shared IP redirects calls to the least-loaded node.

Three nodes in network namespaces (tests/cluster/live_nodes.py), each with OpenSIPS on the
cfg the product renders in dedicated-IP origination with the shared IP distributed, the
product's web process (call control) and keepalived on the rendered file; node1 holds the
shared IP. A SIP client on the bridge, a customer's address, sends INVITEs to the shared IP
and counts where the 302s send them. Runs as test_shared_ip_live.py does.
"""

import json
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.callcontrol.snapshot import LIVE_NODES_SECONDS
from apps.nodes.models import Node
from apps.peers import services as peer_services
from apps.tenancy.scope import Scope
from tests.cluster.live_nodes import (
    CLIENT,
    SHARED_IP,
    address,
    make_nodes,
    options_answered,
    probe,
    skip_unless_possible,
    started_nodes,
)
from tests.factories import make_peer

pytestmark = pytest.mark.netns


@pytest.fixture
def nodes(transactional_db, tmp_path):
    binary = skip_unless_possible()
    system = Scope.system()
    make_nodes({"distribute_shared_ip": True})
    customer = make_peer("Acme")
    peer_services.add_endpoint(customer, actor=system, ip=CLIENT)
    beat(*Node.objects.all())
    nodes = started_nodes(tmp_path, binary, web="uvicorn")
    yield nodes
    nodes.stop()


def beat(*nodes, ago: float = 0) -> None:
    for node in nodes:
        Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=ago))


def sent_to(nodes, calls: int) -> Counter:
    """Where `calls` INVITEs to the shared IP were redirected, by node address."""
    answered = json.loads(probe(nodes.hosts, "--invites", str(calls), timeout=120))
    assert answered["codes"] == {"302": calls}, answered
    print(f"INVITE to 302: p50 {answered['p50_ms']:.1f} ms, p99 {answered['p99_ms']:.1f} ms")
    return Counter({where.split(":")[0]: count for where, count in answered["contacts"].items()})


def test_calls_to_the_shared_ip_spread_over_the_live_nodes_and_skip_a_dead_one(nodes):
    nodes.start_keepalived(1)
    assert options_answered(nodes.hosts, 15) is not None  # node1 holds the shared IP

    spread = sent_to(nodes, 300)

    print(f"300 calls to {SHARED_IP}: {dict(spread)}")
    assert set(spread) == {address(1), address(2), address(3)}
    assert all(85 <= count <= 115 for count in spread.values())  # within 15 % of a third

    nodes.kill(3)
    beat(Node.objects.get(name="node3"), ago=settings.CLUSTER_STALE_SECONDS + 5)
    time.sleep(LIVE_NODES_SECONDS + 1)  # call control reads the heartbeats again

    after = sent_to(nodes, 90)

    print(f"90 calls after node3 died: {dict(after)}")
    assert set(after) == {address(1), address(2)}
