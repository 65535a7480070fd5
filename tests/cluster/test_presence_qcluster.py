"""Real qcluster processes, one per node, on the test database: their workers beat, one of
them holds the cluster-wide lease, and when that node's qcluster is killed the other node
takes the lease over and the dead one shows as stale."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from apps.cluster import leases
from apps.cluster.models import NodeStatus
from apps.cluster.presence import cluster_report
from tests.factories import NodeFactory
from tests.ports import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
LEASE = "apps.billing.tasks.post_fees"


def database_url() -> str:
    db = connection.settings_dict
    scheme = {"mysql": "mysql", "postgresql": "postgres"}[connection.vendor]
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"{scheme}://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


def wait_for(condition, *, limit: float = 90.0) -> bool:
    """Poll `condition` until it holds (a wait, not a timed assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.fixture
def qclusters(tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("the test database is SQLite in memory; qcluster processes need MariaDB or PostgreSQL")
    started: dict[str, subprocess.Popen] = {}

    def start(node: str, **extra: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "NODE_NAME": node,
            "SMARTSWITCH_VAR_DIR": str(tmp_path / node),
            "CLUSTER_HEARTBEAT_SECONDS": "1",
            "CLUSTER_STALE_SECONDS": "3",
            "CLUSTER_LEASE_SECONDS": "3",
            "Q_WORKERS": "2",
            "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
        }
        env.pop("REDIS_URL", None)
        env.update(extra)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"{node}.log", "w"),  # noqa: SIM115 (closed with the process)
            start_new_session=True,
        )
        started[node] = process
        return process

    def kill(node: str) -> None:
        process = started.pop(node)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    yield start, kill
    for node in list(started):
        kill(node)


def test_the_lease_moves_to_the_live_node_when_the_holders_qcluster_is_killed(qclusters):
    start, kill = qclusters
    NodeFactory(name="node1")
    NodeFactory(name="node2")
    leases.ensure(LEASE)

    start("node1")
    assert wait_for(lambda: leases.holder(LEASE) == "node1")
    start("node2")
    assert wait_for(lambda: NodeStatus.objects.filter(node__name="node2").exists())
    assert leases.holder(LEASE) == "node1"  # node2 beats but does not take a held lease

    killed = time.monotonic()
    kill("node1")
    assert wait_for(lambda: leases.holder(LEASE) == "node2")
    moved = time.monotonic() - killed
    assert wait_for(lambda: {r.name: r.stale for r in cluster_report()} == {"node1": True, "node2": False})
    # Not asserted (timing): the bound is CLUSTER_LEASE_SECONDS + CLUSTER_HEARTBEAT_SECONDS = 4 s.
    print(f"lease moved {moved:.1f}s after node1's qcluster was killed")


@pytest.fixture
def node2_redis(tmp_path):
    """A Redis server of node2's own, next to the local one that stands for node1's."""
    import shutil

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 (redis-server from PATH, our own arguments)
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        assert wait_for(lambda: _pings(client), limit=30), "redis-server did not start"
        yield port
    finally:
        server.kill()
        server.wait()


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_a_task_sent_to_node2_is_run_by_node2s_qcluster_from_its_own_redis(
    qclusters, node2_redis, settings, monkeypatch
):
    from django_q.conf import Conf
    from django_q.models import Task

    from apps.cluster.topology import send_to_node

    start, _ = qclusters
    NodeFactory(name="node1")
    NodeFactory(name="node2", management_address="127.0.0.1")
    start("node2", REDIS_URL=f"redis://127.0.0.1:{node2_redis}/0")

    # This test process is node1: its broker as smartswitch/settings.py makes it with REDIS_URL.
    settings.NODE_NAME = "node1"
    settings.REDIS_URL = "redis://127.0.0.1:6379/14"
    settings.REDIS_NODE_URL = "redis://{address}:%d/0" % node2_redis  # noqa: UP031
    monkeypatch.setattr(Conf, "BROKER_CLASS", "apps.cluster.broker.NodeRedis")
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", settings.REDIS_URL)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", "node1")
    task_id = send_to_node("node2", "os.getpid")

    assert wait_for(lambda: Task.objects.filter(id=task_id).exists())
    task = Task.objects.get(id=task_id)
    assert (task.success, task.cluster) == (True, "node2")
    assert task.result != os.getpid()  # run in node2's worker, not here


def test_a_task_sent_to_node2_through_the_orm_broker_is_run_by_node2s_qcluster(qclusters):
    from django_q.conf import Conf
    from django_q.models import Task

    from apps.cluster.topology import send_to_node

    if not Conf.ORM:
        pytest.skip("REDIS_URL is set: the ORM broker is not in use")
    start, _ = qclusters
    NodeFactory(name="node1")
    NodeFactory(name="node2")
    start("node2")

    # Queued by this process, which is not node2 (django-q2 signs with Q_CLUSTER["name"]).
    task_id = send_to_node("node2", "os.getpid")

    assert wait_for(lambda: Task.objects.filter(id=task_id).exists())
    task = Task.objects.get(id=task_id)
    assert (task.success, task.cluster) == (True, "node2")
    assert task.result != os.getpid()
