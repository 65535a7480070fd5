"""A peer's interconnection sheet: the node addresses it sends its calls to.

The portal's *Connectivity* page and the admin's peer page show it.
"""

from dataclasses import dataclass

from apps.nodes.models import ClusterSettings, Node


@dataclass(frozen=True)
class Address:
    """Where the customer sends its calls: one line of the interconnection sheet."""

    node: str
    host: str
    address: str
    port: int


def interconnection(peer) -> tuple[list[Address], list[Address]]:
    """The addresses the customer sends calls to: its assigned nodes, else every enabled one;
    and the fallback: the other enabled nodes, which serve it while its own are down when the
    cluster offers service-level HA (ClusterSettings.serve_when_assigned_nodes_down).

    With shared-IP origination every node listens on the cluster's virtual address, which is
    then the one address to use; so it is when the cluster distributes calls sent to it
    (ClusterSettings.distribute_shared_ip: node "" on the one line)."""
    assigned = list(peer.nodes.all())
    enabled = list(Node.objects.enabled())
    # A peer served by assigned nodes is refused by the others, even when all of its own are
    # disabled: then there is nowhere to send calls, and the sheet says so.
    nodes = [node for node in assigned if node.enabled] if assigned else enabled
    cluster = ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).first() or ClusterSettings()
    fallback = (
        [node for node in enabled if node not in assigned]
        if assigned and cluster.serve_when_assigned_nodes_down
        else []
    )
    shared = cluster.origination_mode == ClusterSettings.OriginationMode.SHARED and cluster.shared_ip
    if cluster.distribute_shared_ip and cluster.shared_ip and nodes:
        # One address for every customer: the distributor on the shared IP sends each call on.
        first = min(nodes, key=lambda node: node.name)
        return [Address(node="", host="", address=cluster.shared_ip, port=first.sip_port)], []
    seen = set()

    def sheet(nodes: list[Node]) -> list[Address]:
        addresses = []
        for node in sorted(nodes, key=lambda node: node.name):
            address = cluster.shared_ip if shared else node.sip_address
            if (address, node.sip_port) in seen:
                continue
            seen.add((address, node.sip_port))
            host = "" if shared else node.public_hostname
            addresses.append(Address(node=node.name, host=host, address=address, port=node.sip_port))
        return addresses

    return sheet(nodes), sheet(fallback)
