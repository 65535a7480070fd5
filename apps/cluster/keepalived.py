"""A node's keepalived.conf: the shared IP moved between the nodes by VRRP.

`render` is the renderer `render_node_config` calls (apps.nodes.rendering): with a shared IP
in the cluster settings, it gives the file that goes to /etc/keepalived/keepalived.conf on
the node. `keepalived_conf` is the same text for explicit values; the failover test starts
keepalived in network namespaces with it, so what is tested is what is deployed.

Every node runs one VRRP instance for the shared address, in state BACKUP: the live node of
the highest priority takes the address (ties: the highest address), and the others take it
over within about three advertisements once it stops advertising. The nodes speak VRRP by
unicast to each other's management address, so no multicast is needed on their network.

A track script (deploy/keepalived/smartswitch-check) runs every second: a node whose
OpenSIPS does not answer on MI, or whose web process does not answer /health/, twice in a
row, gives the address up (FAULT) until both answer again. When a node becomes master, the
notify script (deploy/keepalived/smartswitch-notify) makes its OpenSIPS the active holder of
the sharing tag `vip` (MI clusterer_shtag_set_active): the shared-IP outbound registrations
(uac_registrant, tagged `vip`) then leave from the node that holds the address.
"""

import ipaddress
from pathlib import Path

from django.conf import settings

from apps.nodes.models import ClusterSettings, Node
from apps.opensips.config import mi_socket
from apps.opensips.provisioning import SHARED_IP_TAG

# Where the package puts the scripts: deploy/keepalived/ of the installed product.
SCRIPTS = Path(settings.BASE_DIR) / "deploy" / "keepalived"
# The notify script's tag when OpenSIPS has no sharing tag (dedicated-IP origination).
NO_TAG = "-"
# A failed check twice in a row (one per second) gives the address up; two good ones take
# the node back into the election.
CHECK_INTERVAL, CHECK_FALL, CHECK_RISE = 1, 2, 2


def mi_url(node: Node) -> str:
    """The node's MI over HTTP, as the product reaches it (OPENSIPS_MI_URL)."""
    address, port, path = mi_socket(node)
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/{path}"


def keepalived_conf(
    *,
    name: str,
    interface: str,
    address: str,
    peers: list[str],
    priority: int,
    router_id: int,
    password: str,
    shared_ip: str,
    prefix_length: int,
    preempt: bool,
    mi_url: str,
    health_url: str,
    sharing_tag: str = NO_TAG,
    advert_ms: int = 1000,
    scripts: Path = SCRIPTS,
) -> str:
    """The whole keepalived.conf of node `name` (management `address`, VRRP `peers`).

    One advertisement a second (`advert_ms` 1000) is VRRP version 2 with password
    authentication; a shorter interval needs version 3, which has no authentication (RFC
    5798 dropped it): the nodes then accept advertisements from their unicast peers only.
    """
    shared = ipaddress.ip_interface(f"{shared_ip}/{prefix_length}")
    peer_lines = "\n".join(f"        {peer}" for peer in peers) or "        # no other node yet"
    # keepalived runs its scripts itself, without a shell: arguments must not hold spaces.
    check = f"{scripts / 'smartswitch-check'} {mi_url} {health_url}"
    notify = f"{scripts / 'smartswitch-notify'}"
    # Off, a node that comes back waits as backup: the address moves once per failure.
    stay = "" if preempt else "    nopreempt\n"
    if advert_ms % 1000 == 0:
        version, interval = "", f"{advert_ms // 1000}"
        authentication = f"""    authentication {{
        auth_type PASS
        auth_pass {password}
    }}
"""
    else:
        version, interval = "    vrrp_version 3\n", f"{advert_ms / 1000:g}"
        authentication = "    check_unicast_src\n"
    return f"""\
# Rendered by `manage.py render_node_config --node {name}` from the Node rows and the
# cluster settings: do not edit here (docs/CLUSTER.md, "Shared IP").
global_defs {{
    router_id smartswitch-{name}
    enable_script_security
    script_user root
    # Tell the network again where the address is, every minute, not only on a move.
    vrrp_garp_master_refresh 60
{version}}}

vrrp_script smartswitch_check {{
    script "{check}"
    interval {CHECK_INTERVAL}
    timeout {CHECK_INTERVAL}
    fall {CHECK_FALL}
    rise {CHECK_RISE}
}}

vrrp_instance smartswitch_shared_ip {{
    state BACKUP
    interface {interface}
    virtual_router_id {router_id}
    priority {priority}
    advert_int {interval}
{stay}    unicast_src_ip {address}
    unicast_peer {{
{peer_lines}
    }}
{authentication}    virtual_ipaddress {{
        {shared.with_prefixlen} dev {interface}
    }}
    track_script {{
        smartswitch_check
    }}
    notify_master "{notify} master {mi_url} {sharing_tag}"
    notify_backup "{notify} backup {mi_url} {sharing_tag}"
    notify_fault "{notify} fault {mi_url} {sharing_tag}"
}}
"""


def render(node: Node, cluster: ClusterSettings) -> dict[str, str]:
    """keepalived/keepalived.conf of `node`; nothing when the cluster has no shared IP."""
    if not cluster.shared_ip:
        return {}
    shared_origination = cluster.origination_mode == cluster.OriginationMode.SHARED
    others = Node.objects.filter(enabled=True).exclude(pk=node.pk).order_by("name")
    return {
        "keepalived/keepalived.conf": keepalived_conf(
            name=node.name,
            interface=node.vrrp_interface,
            address=node.management_address,
            peers=[other.management_address for other in others],
            priority=node.vrrp_priority,
            router_id=cluster.vrrp_router_id,
            password=cluster.vrrp_password,
            shared_ip=cluster.shared_ip,
            prefix_length=cluster.shared_ip_prefix_length,
            preempt=cluster.shared_ip_preempt,
            mi_url=mi_url(node),
            health_url=settings.KEEPALIVED_HEALTH_URL,
            sharing_tag=SHARED_IP_TAG if shared_origination else NO_TAG,
            advert_ms=cluster.vrrp_advert_ms,
        )
    }
