"""The shared IP with real OpenSIPS nodes: SIP on the shared address follows keepalived.

Three nodes, each a network namespace (tests/cluster/netns.py) running OpenSIPS on the
opensips.cfg the product renders in shared-IP origination (listening on the shared address,
clusterer between the management addresses, sharing tag vip/1) and keepalived on the
keepalived.conf it renders, with the product's scripts. The web process's /health/ is
tests/cluster/standin.py (health only). OpenSIPS reads the test database over MariaDB's
Unix socket, which network namespaces do not separate. A SIP client on the bridge sends
OPTIONS to the shared address.

Runs with OPENSIPS_BIN (or opensips on PATH), keepalived, root, and DATABASE_URL on MariaDB
served on its default socket: `pytest -m netns tests/cluster/test_shared_ip_live.py`.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test import override_settings

from apps.cluster import keepalived
from apps.nodes import services
from apps.nodes.models import ClusterSettings, Node
from apps.opensips import dialogs, provisioning
from apps.opensips.config import render
from apps.opensips.provisioning import SHARED_IP_TAG
from apps.tenancy.scope import Scope
from tests.cluster import netns
from tests.opensips import live

pytestmark = pytest.mark.netns

KEEPALIVED = shutil.which("keepalived")
SOCKET = Path("/run/mysqld/mysqld.sock")
SHARED_IP = str(netns.TEST_NET.network_address + 100)
CLIENT = str(netns.TEST_NET.network_address + 254)
# A dead holder is replaced after VRRP's master-down interval (about 3.5 s with one
# advertisement a second: test_keepalived_failover); OPTIONS are sent every 50 ms.
MOVE_BOUND = 6.0


def options_answered(hosts: netns.Hosts, bound: float) -> float | None:
    """Seconds until an OPTIONS to the shared address is answered 200, from the bridge."""
    probe = hosts.run_hub(
        [sys.executable, "-m", "tests.cluster.sip_probe", CLIENT, SHARED_IP, str(bound)],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = probe.communicate(timeout=bound + 10)
    return float(out) if probe.returncode == 0 else None


def mi(hosts: netns.Hosts, i: int, method: str) -> object | None:
    """An MI command to node i's OpenSIPS, sent from the bridge (the test's own namespace
    cannot reach the nodes' addresses); None when it does not answer."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1})
    url = f"http://{hosts.address(i)}:8888/mi"
    curl = hosts.run_hub(
        ["curl", "-fsS", "--max-time", "1", "-H", "Content-Type: application/json", "-d", body, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out, _ = curl.communicate(timeout=10)
    return json.loads(out).get("result") if curl.returncode == 0 else None


def shtag(hosts: netns.Hosts, i: int) -> str:
    """The state of the sharing tag vip/1 on node i's OpenSIPS: active or backup."""
    tags = mi(hosts, i, "clusterer_list_shtags") or []
    for tag in tags:
        if f"{tag.get('Tag')}/{tag.get('Cluster')}" == SHARED_IP_TAG:
            return tag["State"].lower()
    raise AssertionError(f"no tag {SHARED_IP_TAG} on node{i}: {tags}")


def wait_until(check, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def nodes(transactional_db, tmp_path):
    binary = live.require_opensips()
    reason = netns.available() or (None if KEEPALIVED else "no keepalived: install Debian's keepalived")
    if reason:
        pytest.skip(reason)
    if connection.vendor != "mysql" or not SOCKET.exists():
        pytest.skip(
            f"OpenSIPS in a namespace reads MariaDB over its socket {SOCKET}: run with DATABASE_URL=mysql://"
        )
    hosts = netns.Hosts(3, hub_address=CLIENT)
    processes: list[subprocess.Popen] = []
    try:
        system = Scope.system()
        services.update_cluster_settings(
            actor=system, changes={"origination_mode": "shared", "shared_ip": SHARED_IP}
        )
        for i in (1, 2, 3):
            services.create_node(
                actor=system,
                name=f"node{i}",
                management_address=hosts.address(i),
                sip_address=hosts.address(i),
                media_enabled=False,
                vrrp_priority={1: 150, 2: 140, 3: 130}[i],
            )
        for node in Node.objects.all():
            dialogs.ensure_table(node.pk)
        with transaction.atomic():
            provisioning.sync_tables()
        database = connection.settings_dict
        common = {
            "OPENSIPS_DB_URL": f"mysql://{database['USER']}@localhost/{database['NAME']}",
            "OPENSIPS_MODULES_DIR": live.modules_dir(binary),
            "OPENSIPS_HEP_PORT": 0,
        }
        cluster = ClusterSettings.load()
        for i, node in enumerate(Node.objects.order_by("name"), start=1):
            netns.ip("netns", "exec", hosts.names[i - 1], "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
            with override_settings(**common):
                cfg = render(node, cluster)["opensips/opensips.cfg"]
            (tmp_path / f"node{i}.cfg").write_text(cfg)
            (tmp_path / f"keepalived{i}.conf").write_text(
                keepalived.render(node, cluster)["keepalived/keepalived.conf"]
            )
            with (tmp_path / f"opensips{i}.log").open("w") as log:
                processes.append(
                    hosts.run(
                        i,
                        [
                            str(binary),
                            "-F",
                            "-f",
                            str(tmp_path / f"node{i}.cfg"),
                            "-m",
                            "64",
                            "-M",
                            "8",
                            "-w",
                            str(tmp_path),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            if not wait_until(lambda i=i: mi(hosts, i, "version") is not None, 20):
                raise AssertionError(
                    f"node{i}'s OpenSIPS: {(tmp_path / f'opensips{i}.log').read_text()[-3000:]}"
                )
            health = hosts.run(
                i,
                [sys.executable, "-m", "tests.cluster.standin", os.devnull, "--health-only"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert health.stdout.readline().strip() == "ready"
            processes.append(health)
        yield Nodes(hosts, tmp_path, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
        hosts.close()


class Nodes:
    def __init__(self, hosts: netns.Hosts, root: Path, processes: list) -> None:
        self.hosts, self.root, self.processes = hosts, root, processes

    def start_keepalived(self, i: int) -> None:
        with (self.root / f"keepalived{i}.log").open("a") as log:
            self.processes.append(
                self.hosts.run(
                    i,
                    [
                        KEEPALIVED,
                        "--dont-fork",
                        "--log-console",
                        "--vrrp",
                        f"--use-file={self.root / f'keepalived{i}.conf'}",
                        f"--pid={self.root / f'keepalived{i}.pid'}",
                        f"--vrrp_pid={self.root / f'vrrp{i}.pid'}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def kill(self, i: int) -> None:
        """Every process of node i killed at once, as when its machine dies."""
        for pid in netns.ip("netns", "pids", self.hosts.names[i - 1]).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


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
