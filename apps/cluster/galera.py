"""A node's MariaDB/Galera settings, rendered from the Node rows.

`render` is the renderer `render_node_config` calls (see apps.nodes.rendering): it gives the
file that goes to /etc/mysql/mariadb.conf.d/60-galera.cnf on the node, replacing Debian's
commented-out template of the same name. `galera_cnf` is the same text for explicit
addresses and ports; the cluster test harness starts its three loopback nodes with it, so
what is tested is what is deployed.
"""

import ipaddress
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.nodes.models import ClusterSettings, Node

SST_METHODS = ("rsync", "mariabackup")
GCACHE_SIZE = re.compile(r"^[1-9][0-9]*[MG]$")


@dataclass(frozen=True)
class Ports:
    """The four TCP ports of one Galera member."""

    sql: int = 3306
    replication: int = 4567  # group communication (gmcast) between members
    ist: int = 4568  # incremental state transfer: writesets a rejoining member missed
    sst: int = 4444  # state snapshot transfer: a full copy for a new or hopelessly stale member


def host(address: str) -> str:
    """`address` as it goes before `:port` (IPv6 in brackets)."""
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def check_settings() -> None:
    """Refuse Galera settings that mariadbd would only reject at its next restart."""
    if settings.GALERA_SST_METHOD not in SST_METHODS:
        raise ImproperlyConfigured(
            f"GALERA_SST_METHOD={settings.GALERA_SST_METHOD!r}: use one of {', '.join(SST_METHODS)}."
        )
    if not GCACHE_SIZE.match(settings.GALERA_GCACHE_SIZE):
        raise ImproperlyConfigured(
            f"GALERA_GCACHE_SIZE={settings.GALERA_GCACHE_SIZE!r}: a size such as 512M or 2G."
        )
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", settings.GALERA_CLUSTER_NAME):
        raise ImproperlyConfigured(
            f"GALERA_CLUSTER_NAME={settings.GALERA_CLUSTER_NAME!r}: letters, digits, '_', '.', '-'."
        )


def galera_cnf(
    *,
    name: str,
    address: str,
    members: list[tuple[str, Ports]],
    ports: Ports = Ports(),
    sst_method: str | None = None,
) -> str:
    """The [mariadbd] and [galera] sections of member `name` at `address`.

    `members` are the (address, ports) of every enabled member, this one included: a node
    restarting tries each in turn until it finds the cluster.
    """
    check_settings()
    cluster_address = ",".join(f"{host(peer)}:{peer_ports.replication}" for peer, peer_ports in members)
    here = host(address)
    provider_options = "; ".join(
        [
            f"gmcast.listen_addr=tcp://{here}:{ports.replication}",
            f"ist.recv_addr={here}:{ports.ist}",
            f"gcache.size={settings.GALERA_GCACHE_SIZE}",
            # Keep the gcache across a clean restart so that the member rejoins by IST.
            "gcache.recover=yes",
        ]
    )
    return f"""\
# Rendered by `manage.py render_node_config --node {name}` from the Node rows: do not edit
# by hand, change the nodes in the admin and render again. Goes to
# /etc/mysql/mariadb.conf.d/60-galera.cnf; deploy/galera/README.md is the runbook.

[mariadbd]
port = {ports.sql}
# Galera replicates only between management addresses; Django on this node connects here too.
bind-address = {address}
# Galera replicates row images of InnoDB tables; statement binlogs and other engines are
# not replicated (or not safely).
binlog_format = ROW
default_storage_engine = InnoDB
# Interleaved auto-increment locking: the only mode that does not deadlock Galera's
# parallel appliers on inserts.
innodb_autoinc_lock_mode = 2
# Every service opens its transaction at READ COMMITTED (smartswitch/env.py); the server
# default matches it for OpenSIPS and the mariadb client. Galera certifies at commit
# whatever the isolation level, and apps.core.db.retry_on_conflict replays the losers.
transaction_isolation = READ-COMMITTED
# Durability comes from the other members: a commit is certified cluster-wide before it
# returns, so the redo log need not be flushed to disk at every commit.
innodb_flush_log_at_trx_commit = 1

[galera]
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_cluster_name = {settings.GALERA_CLUSTER_NAME}
wsrep_cluster_address = gcomm://{cluster_address}
wsrep_node_name = {name}
wsrep_node_address = {here}:{ports.replication}
wsrep_provider_options = "{provider_options}"
# {settings.GALERA_SST_METHOD if sst_method is None else sst_method}: see deploy/galera/README.md
# (rsync needs no account but blocks the donor's writes while it copies; mariabackup needs
# the mariadb-backup package and keeps the donor writable).
wsrep_sst_method = {settings.GALERA_SST_METHOD if sst_method is None else sst_method}
wsrep_sst_receive_address = {here}:{ports.sst}
# Each member hands out auto-increment ids in its own residue class, so that inserts on
# two members at once never pick the same id; it follows the cluster size on its own.
wsrep_auto_increment_control = ON
# 1: every read first waits until this member has applied what the cluster committed
# before it, so a row committed on one node is read on any other at once (the product's
# promise). 0 trades that for lower read latency.
wsrep_sync_wait = {settings.GALERA_SYNC_WAIT}
wsrep_slave_threads = {settings.GALERA_APPLIER_THREADS}
"""


def render(node: Node, cluster: ClusterSettings) -> dict[str, str]:
    """Galera settings of `node`: all enabled nodes are its cluster, itself included."""
    members = [
        (address, Ports()) for address in Node.objects.enabled().values_list("management_address", flat=True)
    ]
    if node.management_address not in {address for address, _ in members}:
        # A disabled node rendered on purpose still knows where the cluster is and can join.
        members.append((node.management_address, Ports()))
    return {
        "galera/60-galera.cnf": galera_cnf(name=node.name, address=node.management_address, members=members)
    }
