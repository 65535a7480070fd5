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

import subprocess
import sys
import time

import pytest

from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.cluster import netns
from tests.cluster.live_nodes import (
    SHARED_IP,
    make_nodes,
    options_answered,
    shtag,
    skip_unless_possible,
    started_nodes,
    wait_until,
)
from tests.factories import make_peer

pytestmark = pytest.mark.netns

REGISTRAR = str(netns.TEST_NET.network_address + 252)

# A dead holder is replaced after VRRP's master-down interval (about 3.5 s with one
# advertisement a second: test_keepalived_failover); OPTIONS are sent every 50 ms.
MOVE_BOUND = 6.0


@pytest.fixture
def nodes(transactional_db, tmp_path):
    binary = skip_unless_possible()
    system = Scope.system()
    make_nodes({"origination_mode": "shared"})
    # A supplier's registrar on the bridge: the one shared-IP registration goes there.
    supplier = make_peer("Carrier", role=Peer.Role.SUPPLIER)
    peer_services.add_registration(
        supplier,
        actor=system,
        registrar=f"sip:{REGISTRAR}:5091",
        aor=f"sip:4420000000@{REGISTRAR}",
        expiry=60,
    )
    nodes = started_nodes(tmp_path, binary, web="standin")
    netns.ip(
        "addr", "add", f"{REGISTRAR}/{netns.TEST_NET.prefixlen}", "dev", "br0", namespace=nodes.hosts.hub
    )
    registrar = nodes.hosts.run_hub(
        [sys.executable, "-m", "tests.cluster.registrar", REGISTRAR, "5091", str(tmp_path / "registers.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    nodes.processes.append(registrar)
    assert registrar.stdout.readline().strip() == "ready"
    yield nodes
    nodes.stop()


def registers(nodes, *, after: float = 0) -> int:
    """REGISTERs the registrar received after `after` (seconds since the epoch)."""
    log = nodes.root / "registers.log"
    if not log.exists():
        return 0
    return sum(float(line.split()[0]) > after for line in log.read_text().splitlines())


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
    # uac_registrant's timer (10 s) sends the shared-IP registration from the tag's holder only.
    assert wait_until(lambda: registers(nodes) >= 1, 15)

    killed_at = time.time()
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
    # ... and node2, now holding it, registers again (node1 is dead: whatever arrives is node2's).
    assert wait_until(lambda: registers(nodes, after=killed_at) >= 1, 15)
    print(
        f"the shared-IP registration sent again {first_register_after(nodes, killed_at):.1f} s after the kill"
    )


def first_register_after(nodes, moment: float) -> float:
    lines = (nodes.root / "registers.log").read_text().splitlines()
    return min(float(line.split()[0]) for line in lines if float(line.split()[0]) > moment) - moment
