"""A peer's calls per second, shared among the nodes that serve it (issue 14, item 3).

OpenSIPS counts each node's share in a ratelimit pipe; call control says what the share
is (`limits.cps_node`). The shares of the live nodes add up to the peer's limit.
"""

from datetime import timedelta

from django.utils import timezone

from apps.callcontrol.decision import cps_share
from apps.nodes.models import Node
from apps.peers import services as peer_services
from tests.factories import NodeFactory
from tests.switching import SYSTEM, update_peer


def shares(world, peer) -> dict[str, int | None]:
    snapshot = world.snapshot()
    info = snapshot.peers[peer.pk]
    return {node.name: cps_share(snapshot, info, node.pk) for node in Node.objects.order_by("pk")}


def beat(*nodes, ago: float = 0) -> None:
    for node in nodes:
        Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=ago))


def test_the_nodes_shares_add_up_to_the_peers_limit(world):
    NodeFactory(name="node3")
    update_peer(world.customer, max_cps=10)
    assert shares(world, world.customer) == {world.node.name: 4, world.node2.name: 3, "node3": 3}
    update_peer(world.customer, max_cps=2)
    # Two calls a second among three nodes: one each, the first two; the limit holds.
    assert sorted(shares(world, world.customer).values()) == [1, 1, 1]


def test_a_peer_without_a_limit_has_no_share(world):
    assert set(shares(world, world.customer).values()) == {None}
    assert world.call().as_response()["limits"] == {"max_calls": None, "cps": None, "cps_node": None}


def test_an_assigned_peer_shares_among_its_own_nodes(world):
    NodeFactory(name="node3")
    update_peer(world.customer, max_cps=10)
    peer_services.assign_peer_to_nodes(world.customer, Node.objects.filter(name="node3"), actor=SYSTEM)
    got = shares(world, world.customer)
    assert got["node3"] == 10
    # A node that does not serve the peer (call control refuses or redirects there) is no
    # one's share: it would admit the whole limit.
    assert got[world.node.name] == 10


def test_a_silent_node_leaves_its_share_to_the_live_ones(world):
    node3 = NodeFactory(name="node3")
    update_peer(world.customer, max_cps=10)
    beat(world.node, world.node2)
    beat(node3, ago=3600)
    got = shares(world, world.customer)
    assert (got[world.node.name], got[world.node2.name]) == (5, 5)


def test_the_answer_carries_the_asking_nodes_share(world):
    update_peer(world.customer, max_cps=5)
    first = world.call(node=world.node.name).as_response()["limits"]
    second = world.call(node=world.node2.name).as_response()["limits"]
    assert (first["cps"], first["cps_node"], second["cps_node"]) == (5, 3, 2)
