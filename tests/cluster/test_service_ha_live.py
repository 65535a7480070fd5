"""Service-level HA with real nodes: a customer assigned to node1 calls node2; node2 refuses
it while node1 is up, serves it while node1 is down (heartbeat stale), and refuses it again
once node1 beats again.

Three nodes in network namespaces (tests/cluster/live_nodes.py) in dedicated-IP origination,
each with OpenSIPS and the product's web process (call control); the cluster setting
`serve_when_assigned_nodes_down` on; a SIPp supplier on the bridge answers the calls. Runs as
test_shared_ip_live.py does, with SIPp.
"""

import json
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.callcontrol.snapshot import LIVE_NODES_SECONDS
from apps.nodes import services as node_services
from apps.nodes.models import Node
from apps.peers import services as peer_services
from apps.tenancy.scope import Scope
from tests.cluster import calling
from tests.cluster.live_nodes import address, probe, skip_unless_possible, started_nodes
from tests.opensips.live import require_sipp

pytestmark = pytest.mark.netns


@pytest.fixture
def nodes(transactional_db, tmp_path):
    binary = skip_unless_possible()
    sipp = require_sipp()
    customer, _supplier = calling.build(origination="dedicated")
    system = Scope.system()
    peer_services.assign_peer_to_nodes(customer, [Node.objects.get(name="node1")], actor=system)
    node_services.update_cluster_settings(actor=system, changes={"serve_when_assigned_nodes_down": True})
    nodes = started_nodes(tmp_path, binary, web="uvicorn")
    calling.start_supplier(nodes, sipp)
    yield nodes
    nodes.stop()


def answer_of_node2(nodes) -> dict:
    """The final answers to one INVITE sent to node2's own address, by code."""
    return json.loads(probe(nodes.hosts, "--invites", "1", timeout=30, target=address(2)))["codes"]


def test_a_customer_is_served_elsewhere_only_while_its_node_is_down(nodes):
    assert answer_of_node2(nodes) == {"403": 1}  # node1 is up: its customer belongs there

    nodes.kill(1)
    Node.objects.filter(name="node1").update(
        last_heartbeat=timezone.now() - timedelta(seconds=settings.CLUSTER_STALE_SECONDS + 1)
    )
    stale = time.monotonic()
    deadline = stale + LIVE_NODES_SECONDS + 5
    while (codes := answer_of_node2(nodes)) != {"200": 1} and time.monotonic() < deadline:
        time.sleep(0.5)
    served = time.monotonic() - stale

    print(f"node1 stale: its customer served on node2 {served:.1f} s later")
    assert codes == {"200": 1}

    Node.objects.filter(name="node1").update(last_heartbeat=timezone.now())  # node1 beats again
    time.sleep(LIVE_NODES_SECONDS + 1)
    assert answer_of_node2(nodes) == {"403": 1}
