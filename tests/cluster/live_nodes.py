"""Product nodes in network namespaces (tests/cluster/netns.py) for the live cluster tests:
MI over the bridge, keepalived started on a node's rendered file, a node killed whole."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from apps.opensips.provisioning import SHARED_IP_TAG
from tests.cluster import netns

KEEPALIVED = shutil.which("keepalived")
SOCKET = Path("/run/mysqld/mysqld.sock")
SHARED_IP = str(netns.TEST_NET.network_address + 100)
CLIENT = str(netns.TEST_NET.network_address + 254)


def address(i: int) -> str:
    """Node i's address (netns.Hosts gives node i the same)."""
    return str(netns.TEST_NET.network_address + i)


def make_nodes(cluster: dict) -> None:
    """The cluster settings `cluster` (its shared IP: SHARED_IP), and node1..node3 at their
    namespaces' addresses, VRRP priorities 150, 140, 130, without media."""
    from apps.nodes import services
    from apps.tenancy.scope import Scope

    system = Scope.system()
    services.update_cluster_settings(actor=system, changes={"shared_ip": SHARED_IP, **cluster})
    for i in (1, 2, 3):
        services.create_node(
            actor=system,
            name=f"node{i}",
            management_address=address(i),
            sip_address=address(i),
            media_enabled=False,
            vrrp_priority={1: 150, 2: 140, 3: 130}[i],
        )


def probe(hosts: netns.Hosts, *args: str, timeout: float, target: str = SHARED_IP) -> str | None:
    """tests/cluster/sip_probe.py run on the bridge, from CLIENT to `target`; its output."""
    run = hosts.run_hub(
        [sys.executable, "-m", "tests.cluster.sip_probe", CLIENT, target, *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = run.communicate(timeout=timeout)
    return out if run.returncode == 0 else None


def options_answered(hosts: netns.Hosts, bound: float) -> float | None:
    """Seconds until an OPTIONS to the shared address is answered 200, from the bridge."""
    out = probe(hosts, str(bound), timeout=bound + 10)
    return float(out) if out is not None else None


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


class NodeProcesses:
    """The processes of the namespaced nodes, and what the tests do to them."""

    def __init__(self, hosts: netns.Hosts, root: Path, processes: list, galera=None) -> None:
        self.hosts, self.root, self.processes, self.galera = hosts, root, processes, galera

    def start_keepalived(self, i: int) -> None:
        self.processes.append(start_keepalived(self.hosts, self.root, i))

    def kill(self, i: int) -> None:
        kill_node(self.hosts, i)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        if self.galera is not None:
            self.galera.stop()  # before its members' namespaces go
        self.hosts.close()


def start_keepalived(hosts: netns.Hosts, root: Path, i: int) -> subprocess.Popen:
    """Debian's keepalived (VRRP only) in node i's namespace, on root/keepalived{i}.conf,
    logging to root/keepalived{i}.log."""
    command = [
        KEEPALIVED,
        "--dont-fork",
        "--log-console",
        "--vrrp",
        f"--use-file={root / f'keepalived{i}.conf'}",
        f"--pid={root / f'keepalived{i}.pid'}",
        f"--vrrp_pid={root / f'vrrp{i}.pid'}",
    ]
    with (root / f"keepalived{i}.log").open("a") as log:
        return hosts.run(i, command, stdout=log, stderr=subprocess.STDOUT)


def kill_node(hosts: netns.Hosts, i: int) -> None:
    """Every process of node i killed at once (SIGKILL), as when its machine dies: its
    keepalived sends no last advertisement and leaves the address on its interface."""
    for pid in netns.ip("netns", "pids", hosts.names[i - 1]).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def skip_unless_possible() -> Path:
    """The OpenSIPS binary; skips, saying why, when these tests cannot run here."""
    import pytest
    from django.db import connection

    from tests.opensips import live

    binary = live.require_opensips()
    reason = netns.available() or (None if KEEPALIVED else "no keepalived: install Debian's keepalived")
    if reason:
        pytest.skip(reason)
    if connection.vendor != "mysql" or not SOCKET.exists():
        pytest.skip(
            f"nodes in namespaces reach MariaDB over its socket {SOCKET}: run with DATABASE_URL=mysql://"
        )
    return binary


def started_nodes(
    root: Path,
    binary: Path,
    *,
    web: str,
    engine_settings: dict | None = None,
    hosts: netns.Hosts | None = None,
    galera=None,
    workers: bool = False,
    environment: dict | None = None,
) -> NodeProcesses:
    """Three nodes of the cluster settings as they are (the caller made them), each in its
    namespace: OpenSIPS on its rendered cfg, and `web` on 127.0.0.1:8001 there ("standin":
    /health/ only; "uvicorn": the product, call control included). keepalived's files are
    written (keepalived{i}.conf) but not started: NodeProcesses.start_keepalived.
    `engine_settings` override settings for the rendered opensips.cfg.

    By default the nodes share the host's MariaDB (over its socket) in new namespaces. Given
    `hosts` and a `galera` cluster started in them (tests/cluster/galera_harness.py), each
    node's processes use the member on their own node instead, and the nodes own both.
    `workers`: each node also runs its worker (`manage.py qcluster`). `environment`: more
    variables for the product's processes (web and worker)."""
    from django.db import connection, transaction
    from django.test import override_settings

    from apps.cluster import keepalived
    from apps.nodes.models import ClusterSettings, Node
    from apps.opensips import dialogs, provisioning
    from apps.opensips.config import render
    from tests.opensips import live

    database = connection.settings_dict
    hosts = hosts or netns.Hosts(3, hub_address=CLIENT)
    nodes = NodeProcesses(hosts, root, [], galera)
    socket_host = str(SOCKET).replace("/", "%2F")

    def product(i: int, name: str) -> dict:
        """The environment of node i's product processes."""
        if galera is not None:
            url = galera.members[i - 1].url()
        else:  # namespaces share the file system: MariaDB's socket reaches the host's server
            url = f"mysql://{database['USER']}@{socket_host}/{database['NAME']}"
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
            "DATABASE_URL": url,
            "NODE_NAME": name,
            "SMARTSWITCH_VAR_DIR": str(root / f"var{i}"),
            "PREFIX_INDEX_DIR": str(root / f"prefix-index{i}"),
            "CALL_CONTROL_THREADS": "4",
            **(environment or {}),
        }

    try:
        for node in Node.objects.all():
            dialogs.ensure_table(node.pk)
        with transaction.atomic():
            provisioning.sync_tables()
        engine = {
            "OPENSIPS_MODULES_DIR": live.modules_dir(binary),
            "OPENSIPS_HEP_PORT": 0,
            **(engine_settings or {}),
        }
        cluster = ClusterSettings.load()
        for i, node in enumerate(Node.objects.order_by("name"), start=1):
            netns.ip("netns", "exec", hosts.names[i - 1], "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
            # OpenSIPS's "localhost" is the host's server, over its default socket.
            local = f"mysql://{database['USER']}@localhost/{database['NAME']}"
            opensips_db = galera.members[i - 1].url() if galera else local
            with override_settings(**{"OPENSIPS_DB_URL": opensips_db, **engine}):
                (root / f"node{i}.cfg").write_text(render(node, cluster)["opensips/opensips.cfg"])
            if cluster.shared_ip:
                conf = keepalived.render(node, cluster)["keepalived/keepalived.conf"]
                (root / f"keepalived{i}.conf").write_text(conf)
            with (root / f"opensips{i}.log").open("w") as log:
                command = [
                    str(binary),
                    "-F",
                    "-f",
                    str(root / f"node{i}.cfg"),
                    "-m",
                    "64",
                    "-M",
                    "8",
                    "-w",
                    str(root),
                ]
                nodes.processes.append(hosts.run(i, command, stdout=log, stderr=subprocess.STDOUT))
            if not wait_until(lambda i=i: mi(hosts, i, "version") is not None, 20):
                raise AssertionError(f"node{i}'s OpenSIPS: {(root / f'opensips{i}.log').read_text()[-3000:]}")
            if web == "standin":
                command = [sys.executable, "-m", "tests.cluster.standin", os.devnull, "--health-only"]
                nodes.processes.append(hosts.run(i, command, stdout=subprocess.PIPE, text=True))
                assert nodes.processes[-1].stdout.readline().strip() == "ready"
            else:
                nodes.processes.append(_uvicorn(hosts, i, root, product(i, node.name)))
            if workers:
                nodes.processes.append(_qcluster(hosts, i, root, product(i, node.name)))
        return nodes
    except BaseException:
        nodes.stop()
        raise


def _uvicorn(hosts: netns.Hosts, i: int, root: Path, environment: dict) -> subprocess.Popen:
    """Node i's call control, on smartswitch-callcontrol's port (the default CALL_CONTROL_URL
    and KEEPALIVED_HEALTH_URL), once it answers /health/."""
    from django.conf import settings

    with (root / f"uvicorn{i}.log").open("w") as log:
        process = hosts.run(
            i,
            [sys.executable, "-m", "uvicorn", "smartswitch.asgi:application", "--host", "127.0.0.1",
             "--port", "8001", "--log-level", "warning", "--lifespan", "on"],
            stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=settings.BASE_DIR,
        )  # fmt: skip
    health = ["curl", "-fsS", "--max-time", "1", "-o", "/dev/null", "http://127.0.0.1:8001/health/"]

    def answers() -> bool:
        check = hosts.run(i, health, stderr=subprocess.DEVNULL)
        return check.wait(timeout=10) == 0

    if not wait_until(answers, 60):
        raise AssertionError(f"node{i}'s web process: {(root / f'uvicorn{i}.log').read_text()[-3000:]}")
    return process


def _qcluster(hosts: netns.Hosts, i: int, root: Path, environment: dict) -> subprocess.Popen:
    """Node i's worker: django-q2's cluster of its node's schedules (and its heartbeat)."""
    from django.conf import settings

    with (root / f"qcluster{i}.log").open("w") as log:
        return hosts.run(
            i,
            [sys.executable, "manage.py", "qcluster"],
            stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=settings.BASE_DIR,
        )  # fmt: skip
