"""Where periodic and node-bound work runs: a schedule row per node, singletons under a lease,
and a task for another node in that node's queue (ORM rows, or that node's Redis)."""

import os

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from apps.billing import tasks as billing_tasks
from apps.callcontrol import tasks as callcontrol_tasks
from apps.cluster import leases, schedules
from apps.cluster.broker import NodeRedis
from apps.cluster.tasks import run_singleton
from apps.cluster.topology import send_to_node
from apps.files import tasks as files_tasks
from apps.fraud import tasks as fraud_tasks
from apps.invoicing import tasks as invoicing_tasks
from apps.media import tasks as media_tasks
from apps.nodes import services as nodes
from apps.nodes import tasks as nodes_tasks
from apps.nodes.models import Node
from apps.opensips import tasks as opensips_tasks
from tests.factories import NodeFactory

# Every app with periodic work, named here so that a task that stops being scheduled fails.
ALL = {
    **billing_tasks.SCHEDULES,
    **callcontrol_tasks.SCHEDULES,
    **files_tasks.SCHEDULES,
    **fraud_tasks.SCHEDULES,
    **invoicing_tasks.SCHEDULES,
    **media_tasks.SCHEDULES,
    **nodes_tasks.SCHEDULES,
    **opensips_tasks.SCHEDULES,
}


def rows():
    """(name, cluster, func, args) of every schedule of ours."""
    return sorted(
        Schedule.objects.filter(name__regex=r" \[[a-z0-9-]+\]$").values_list(
            "name", "cluster", "func", "args"
        )
    )


@pytest.fixture
def two_nodes(db):
    Schedule.objects.all().delete()  # those made by migrate, before any node existed
    return NodeFactory(name="node1"), NodeFactory(name="node2")


def test_every_enabled_node_gets_one_row_of_each_periodic_task_for_its_own_cluster(two_nodes):
    schedules.ensure_all()
    schedules.ensure_all()

    found = rows()
    assert len(found) == 2 * len(ALL)
    for label, task in ALL.items():
        for node in ("node1", "node2"):
            (row,) = [r for r in found if r[0] == f"{label} [{node}]"]
            assert row[1] == node
            if task.kind is schedules.Kind.NODE:
                assert (row[2], row[3]) == (task.func, None)
            else:
                assert (row[2], row[3]) == ("apps.cluster.tasks.run_singleton", repr((task.func, task.func)))
    billing_loop = "Import and rate CDRs, end calls that overrun (billing loop)"
    assert (f"{billing_loop} [node1]", "node1") in [r[:2] for r in found]
    # No row without a cluster: django-q2 would run those on every node.
    assert not Schedule.objects.filter(cluster__isnull=True).exists()


def test_singletons_are_registered_as_leases_that_follow_the_heartbeat(two_nodes):
    schedules.ensure_all()
    singleton_funcs = {t.func for t in ALL.values() if t.kind is schedules.Kind.SINGLETON}
    assert singleton_funcs >= {
        "apps.billing.tasks.post_fees",
        "apps.callcontrol.tasks.expire",
        "apps.callcontrol.tasks.refresh_quality",
    }
    assert sorted(leases.keep("node2", ttl_seconds=30)) == sorted(singleton_funcs)


def test_an_operators_change_to_a_row_is_kept(two_nodes):
    schedules.ensure_all()
    Schedule.objects.filter(name="Post recurring fees [node2]").update(minutes=15)
    schedules.ensure_all()
    assert Schedule.objects.get(name="Post recurring fees [node2]").minutes == 15


def test_a_task_made_a_singleton_in_the_code_goes_under_its_lease_keeping_its_interval(two_nodes):
    schedules.ensure_all()
    name = "Post recurring fees [node1]"
    Schedule.objects.filter(name=name).update(func="apps.billing.tasks.post_fees", args=None, minutes=15)
    schedules.ensure_all()
    row = Schedule.objects.get(name=name)
    assert (row.func, row.minutes) == ("apps.cluster.tasks.run_singleton", 15)
    assert row.args == repr(("apps.billing.tasks.post_fees",) * 2)


def test_a_row_from_before_per_node_schedules_lends_its_interval_and_goes(two_nodes):
    Schedule.objects.create(
        name="Post recurring fees",
        func="apps.billing.tasks.post_fees",
        schedule_type=Schedule.MINUTES,
        minutes=30,
    )
    billing_tasks.ensure_schedules()
    assert not Schedule.objects.filter(name="Post recurring fees").exists()
    assert set(
        Schedule.objects.filter(name__startswith="Post recurring fees [").values_list("minutes", flat=True)
    ) == {30}


def test_a_disabled_node_loses_its_rows_and_gets_them_back_when_enabled(two_nodes):
    _, node2 = two_nodes
    schedules.ensure_all()
    Node.objects.filter(pk=node2.pk).update(enabled=False)
    schedules.ensure_all()
    assert {cluster for _, cluster, _, _ in rows()} == {"node1"}

    Node.objects.filter(pk=node2.pk).update(enabled=True)
    schedules.ensure_all()
    assert {cluster for _, cluster, _, _ in rows()} == {"node1", "node2"}


def test_a_fresh_install_without_node_rows_schedules_for_this_node(db, settings):
    Schedule.objects.all().delete()
    settings.NODE_NAME = "solo"
    schedules.ensure_all()
    assert {cluster for _, cluster, _, _ in rows()} == {"solo"}
    NodeFactory(name="node1")
    schedules.ensure_all()
    assert {cluster for _, cluster, _, _ in rows()} == {"node1"}


@pytest.mark.django_db(transaction=True)
def test_adding_a_node_through_the_service_schedules_its_work(system):
    Schedule.objects.all().delete()
    nodes.create_node(actor=system, name="node1", management_address="10.1.0.1", sip_address="100.64.1.1")
    nodes.create_node(actor=system, name="node7", management_address="10.1.0.7", sip_address="100.64.1.7")
    assert {cluster for _, cluster, _, _ in rows()} == {"node1", "node7"}
    assert len(rows()) == 2 * len(ALL)


def test_a_singleton_runs_only_on_the_node_holding_its_lease(two_nodes, settings):
    settings.NODE_NAME = "node1"
    first = run_singleton("job", "os.getcwd")
    settings.NODE_NAME = "node2"
    second = run_singleton("job", "os.getcwd")

    assert first["ran"] is True and first["result"]
    assert second == {"ran": False, "holder": "node1"}


def test_a_singleton_moves_to_another_node_when_the_holders_lease_expires(two_nodes, settings):
    from tests.cluster.test_leases import expire

    settings.NODE_NAME = "node1"
    run_singleton("job", "os.getcwd")
    expire("job")  # node1 died: nobody renewed its lease for CLUSTER_LEASE_SECONDS
    settings.NODE_NAME = "node2"
    assert run_singleton("job", "os.getcwd")["ran"] is True
    settings.NODE_NAME = "node1"
    assert run_singleton("job", "os.getcwd") == {"ran": False, "holder": "node2"}


# --- routing of node-bound tasks ---------------------------------------------------------


def test_a_task_for_node2_lands_in_node2s_queue_with_the_orm_broker(two_nodes, settings):
    if not Conf.ORM:
        pytest.skip("REDIS_URL is set: the ORM broker is not in use")
    OrmQ.objects.all().delete()
    send_to_node("node2", "apps.files.tasks.push_file", 42)
    send_to_node("node1", "os.getcwd")

    queued = {row.key: SignedPackage.loads(row.payload) for row in OrmQ.objects.all()}
    assert set(queued) == {"node1", "node2"}
    assert (queued["node2"]["func"], queued["node2"]["args"]) == ("apps.files.tasks.push_file", (42,))


REDIS = "redis://127.0.0.1:6379"
# Two Redis databases stand for two nodes' Redis servers; each xdist worker takes its own pair.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
THIS_DB, OTHER_DB = 15 - 2 * _WORKER - 1, 15 - 2 * _WORKER


@pytest.fixture
def redis_nodes(two_nodes, settings, monkeypatch):
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS}")
    _, node2 = two_nodes
    Node.objects.filter(pk=node2.pk).update(management_address="127.0.0.1")
    settings.NODE_NAME = "node1"
    settings.REDIS_URL = f"{REDIS}/{THIS_DB}"
    settings.REDIS_NODE_URL = "redis://{address}:6379/" + str(OTHER_DB)
    # What Q_CLUSTER says when REDIS_URL is set (smartswitch/settings.py), read at import.
    monkeypatch.setattr(Conf, "BROKER_CLASS", "apps.cluster.broker.NodeRedis")
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", settings.REDIS_URL)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", "node1")
    servers = {
        name: redis.Redis.from_url(f"{REDIS}/{db}") for name, db in (("node1", THIS_DB), ("node2", OTHER_DB))
    }
    queues = ("django_q:node1:q", "django_q:node2:q")
    for server in servers.values():
        server.delete(*queues)  # only ours: other tests may share these Redis databases
    yield servers
    for server in servers.values():
        server.delete(*queues)


def test_a_task_for_node2_lands_in_node2s_redis_and_this_nodes_in_its_own(redis_nodes):
    send_to_node("node2", "apps.files.tasks.push_file", 42)
    send_to_node("node1", "os.getcwd")

    this, other = redis_nodes["node1"], redis_nodes["node2"]
    assert (this.llen("django_q:node1:q"), this.llen("django_q:node2:q")) == (1, 0)
    assert (other.llen("django_q:node2:q"), other.llen("django_q:node1:q")) == (1, 0)
    task = SignedPackage.loads(other.lpop("django_q:node2:q"))
    assert (task["func"], task["args"], task["cluster"]) == ("apps.files.tasks.push_file", (42,), "node2")


def test_a_node_reads_only_its_own_redis(redis_nodes):
    send_to_node("node2", "os.getcwd")
    send_to_node("node1", "os.getpid")

    broker = NodeRedis()  # what this node's qcluster reads
    (_, payload), *rest = broker.dequeue()
    assert rest == []
    assert SignedPackage.loads(payload)["func"] == "os.getpid"
    assert broker.dequeue() is None
    assert redis_nodes["node2"].llen("django_q:node2:q") == 1


def test_a_task_for_an_unknown_node_is_refused_naming_it(redis_nodes):
    with pytest.raises(ImproperlyConfigured, match="No node named 'node9'"):
        send_to_node("node9", "os.getcwd")


def test_a_dead_nodes_redis_is_an_error_not_a_silent_drop(redis_nodes, settings):
    settings.REDIS_NODE_URL = "redis://{address}:1/0"  # nothing listens on port 1
    with pytest.raises(redis.ConnectionError):
        send_to_node("node2", "os.getcwd")


def test_the_broker_survives_pickling_as_django_q_does_between_processes(redis_nodes):
    import pickle

    broker = pickle.loads(pickle.dumps(NodeRedis("node2")))  # noqa: S301 (our own object)
    broker.enqueue("payload")
    assert redis_nodes["node2"].lrange("django_q:node2:q", 0, -1) == [b"payload"]


def test_a_schedule_row_inserted_twice_by_two_nodes_migrating_at_once_is_made_one_again(two_nodes):
    # django-q2's table has no unique key on (name, cluster): two nodes can both insert.
    schedules.ensure_all()
    row = Schedule.objects.filter(cluster="node1").order_by("pk").first()
    Schedule.objects.create(
        name=row.name, cluster=row.cluster, func=row.func, args=row.args, schedule_type=row.schedule_type
    )
    schedules.ensure_all()
    assert list(Schedule.objects.filter(name=row.name, cluster="node1").values_list("pk", flat=True)) == [
        row.pk
    ]
