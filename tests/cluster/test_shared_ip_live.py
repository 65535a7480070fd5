"""The shared IP with real OpenSIPS nodes: SIP on the shared address follows keepalived.

Three nodes, each a network namespace (tests/cluster/live_nodes.py) running OpenSIPS on the
opensips.cfg the product renders in shared-IP origination (listening on the shared address,
clusterer between the management addresses, sharing tag vip/1) and keepalived on the
keepalived.conf it renders, with the product's scripts. The web process's /health/ is
tests/cluster/standin.py (health only). OpenSIPS reads the test database over MariaDB's
Unix socket, which network namespaces do not separate. A SIP client on the bridge sends
OPTIONS to the shared address.

Runs with OPENSIPS_BIN (or opensips on PATH), keepalived, root, and DATABASE_URL on MariaDB
served on its default socket: `pytest -m netns tests/cluster/test_shared_ip_live.py`.
"""

import time

import pytest

from apps.nodes import services
from apps.tenancy.scope import Scope
from tests.cluster.live_nodes import (
    SHARED_IP,
    address,
    options_answered,
    shtag,
    skip_unless_possible,
    started_nodes,
    wait_until,
)

pytestmark = pytest.mark.netns

# A dead holder is replaced after VRRP's master-down interval (about 3.5 s with one
# advertisement a second: test_keepalived_failover); OPTIONS are sent every 50 ms.
MOVE_BOUND = 6.0


@pytest.fixture
def nodes(transactional_db, tmp_path):
    binary = skip_unless_possible()
    system = Scope.system()
    services.update_cluster_settings(
        actor=system, changes={"origination_mode": "shared", "shared_ip": SHARED_IP}
    )
    for i in (1, 2, 3):
        services.create_node(
            actor=system,
            name=f"node{i}",
            management_address=address(i),
            sip_address=address(i),
            media_enabled=False,
            vrrp_priority={1: 150, 2: 140, 3: 130}[i],
        )
    nodes = started_nodes(tmp_path, binary, web="standin")
    yield nodes
    nodes.stop()


def test_sip_on_the_shared_address_and_the_sharing_tag_move_with_keepalived(nodes):
    hosts = nodes.hosts
    nodes.start_keepalived(1)
    first = options_answered(hosts, 15)
    assert first is not None and hosts.holds(1, SHARED_IP)
    assert wait_until(lambda: shtag(hosts, 1) == "active", 10)
    for i in (2, 3):
        nodes.start_keepalived(i)
    time.sleep(4)  # the others settle as backups
    assert [hosts.holds(i, SHARED_IP) for i in (1, 2, 3)] == [True, False, False]
    assert [shtag(hosts, i) for i in (2, 3)] == ["backup", "backup"]

    nodes.kill(1)
    answered = options_answered(hosts, MOVE_BOUND)

    print(
        f"node1 first answered on {SHARED_IP} after {first:.2f} s; killed, node2 answered after {answered} s"
    )
    assert answered is not None and answered <= MOVE_BOUND
    assert hosts.holds(2, SHARED_IP) and not hosts.holds(3, SHARED_IP)
    # The notify script made node2's OpenSIPS the holder of the tag: the shared-IP
    # registrations (uac_registrant rows tagged vip/1) now leave from node2.
    assert wait_until(lambda: shtag(hosts, 2) == "active", 10)
    assert shtag(hosts, 3) == "backup"
