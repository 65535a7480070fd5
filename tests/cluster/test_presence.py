"""Node presence: heartbeats with each node's own Galera state, `cluster_status` and its admin page."""

import json
import re
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.utils import timezone

from apps.cluster import leases, presence
from apps.cluster.models import NodeStatus
from apps.nodes.models import Node
from tests.conftest import PASSWORD
from tests.factories import NodeFactory

# `SHOW GLOBAL STATUS LIKE 'wsrep_%'` of a synced member of a three-node MariaDB 10.11
# Galera cluster (the subset that matters); the live reply is read in the cluster tests.
SYNCED_MEMBER = {
    "wsrep_provider_name": "Galera",
    "wsrep_cluster_size": "3",
    "wsrep_local_state_comment": "Synced",
    "wsrep_ready": "ON",
    "wsrep_cluster_status": "Primary",
    "wsrep_connected": "ON",
}


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


# --- one beat ----------------------------------------------------------------------------


def test_a_synced_members_status_is_read_from_its_wsrep_variables():
    state = presence.from_status(SYNCED_MEMBER)
    assert state == presence.GaleraState(
        member=True, cluster_size=3, local_state="Synced", ready=True, cluster_status="Primary"
    )
    assert state.summary() == "Synced, Primary, size 3, ready"


def test_a_member_cut_off_from_the_primary_component_says_so():
    state = presence.from_status(
        {
            **SYNCED_MEMBER,
            "wsrep_cluster_size": "1",
            "wsrep_ready": "OFF",
            "wsrep_cluster_status": "non-Primary",
            "wsrep_local_state_comment": "Initialized",
        }
    )
    assert state.summary() == "Initialized, non-Primary, size 1, NOT ready"


@pytest.mark.django_db
def test_this_test_database_is_no_galera_member():
    # SQLite and PostgreSQL have no wsrep at all; the MariaDB here has its variables but no provider.
    assert presence.galera_state() == presence.GaleraState(member=False)
    assert presence.galera_state().summary() == "not a Galera member"


@pytest.mark.django_db
def test_a_beat_records_the_heartbeat_and_the_nodes_own_database_state(settings):
    node = NodeFactory(name="node1")
    settings.NODE_NAME = "node1"

    result = presence.beat()

    assert result.known and result.node == "node1"
    node.refresh_from_db()
    assert node.last_heartbeat > ago(60)
    status = NodeStatus.objects.get(node=node)
    assert status.reported_at > ago(60)
    assert status.galera_member is False
    assert status.reporter.endswith(f":{__import__('os').getpid()}")
    presence.beat()
    assert NodeStatus.objects.count() == 1


@pytest.mark.django_db
def test_a_beat_for_an_unknown_node_records_nothing():
    assert presence.beat("ghost").known is False
    assert NodeStatus.objects.count() == 0


@pytest.mark.django_db
def test_the_leases_move_to_a_live_node_when_the_holder_stops_beating():
    NodeFactory(name="node1")
    NodeFactory(name="node2")
    leases.ensure("apps.billing.tasks.post_fees")

    assert "apps.billing.tasks.post_fees" in presence.beat("node1").leases
    assert "apps.billing.tasks.post_fees" not in presence.beat("node2").leases
    assert "apps.billing.tasks.post_fees" in presence.beat("node1").leases  # renewed

    # node1 dies: its last renewal runs out after CLUSTER_LEASE_SECONDS.
    from tests.cluster.test_leases import expire

    expire("apps.billing.tasks.post_fees")
    assert "apps.billing.tasks.post_fees" in presence.beat("node2").leases
    assert leases.holder("apps.billing.tasks.post_fees") == "node2"


@pytest.mark.django_db
def test_a_disabled_node_beats_but_takes_no_lease():
    NodeFactory(name="node1", enabled=False)
    leases.ensure("apps.billing.tasks.post_fees")
    result = presence.beat("node1")
    assert result.known and result.leases == []


# --- cluster_status --------------------------------------------------------------------


@pytest.fixture
def cluster(db):
    """node1 alive on a synced Galera member, node2 silent for five minutes, node3 disabled."""
    node1 = NodeFactory(name="node1")
    node2 = NodeFactory(name="node2")
    node3 = NodeFactory(name="node3", enabled=False)
    presence.record_status("node1", presence.from_status(SYNCED_MEMBER))
    presence.record_status("node2", presence.from_status(SYNCED_MEMBER))
    Node.objects.filter(pk=node2.pk).update(last_heartbeat=ago(300))
    return node1, node2, node3


def run_command(*args) -> tuple[int, str, str]:
    """Run cluster_status as manage.py would: (exit status, stdout, stderr)."""
    from io import StringIO

    from apps.cluster.management.commands.cluster_status import Command

    out, err = StringIO(), StringIO()
    command = Command(stdout=out, stderr=err)
    try:
        call_command(command, *args)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), ""


def test_cluster_status_shows_every_node_and_fails_when_one_is_stale(cluster, settings):
    settings.CLUSTER_STALE_SECONDS = 30
    settings.NODE_NAME = "node1"
    status, out, err = run_command()

    assert status == 1
    assert "node2" in err and "node1" not in err and "node3" not in err
    table, local = out.split("\n\n")
    assert local.strip() == "This node (node1), read now: not a Galera member"
    lines = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert set(lines) == {"node1", "node2", "node3"}
    assert " alive " in lines["node1"] and "Synced, Primary, size 3, ready" in lines["node1"]
    assert "STALE" in lines["node2"] and re.search(r" 30\ds ago ", lines["node2"])
    assert "disabled" in lines["node3"] and "never" in lines["node3"]


def test_cluster_status_exits_with_status_1_from_the_command_line(cluster, monkeypatch, capsys):
    from apps.cluster.management.commands.cluster_status import Command

    # run_from_argv closes the connections when done; here they hold the test's transaction.
    monkeypatch.setattr("django.core.management.base.connections.close_all", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        Command().run_from_argv(["manage.py", "cluster_status"])
    assert exit_.value.code == 1
    assert "stale" in capsys.readouterr().err


def test_cluster_status_succeeds_when_every_enabled_node_is_alive(cluster):
    Node.objects.filter(name="node2").update(last_heartbeat=timezone.now())
    status, out, _ = run_command()
    assert status == 0
    assert "STALE" not in out


def test_cluster_status_json_for_scripts(cluster, settings):
    status, out, _ = run_command("--json")
    report = json.loads(out)
    assert status == 1
    assert report["stale"] == ["node2"]
    nodes = {node["name"]: node for node in report["nodes"]}
    assert nodes["node1"]["stale"] is False and nodes["node1"]["galera"]["cluster_size"] == 3
    assert nodes["node2"]["heartbeat_age_seconds"] >= 300
    assert nodes["node3"]["last_heartbeat"] is None and nodes["node3"]["enabled"] is False
    assert report["this_node"]["galera"]["member"] is False


def test_cluster_status_shows_the_file_sync_backlog_and_survives_its_failure(cluster, monkeypatch):
    monkeypatch.setattr(presence, "backlog_by_node", lambda: {"node2": {"pending": 7}})
    _, out, _ = run_command()
    assert "pending=7" in next(line for line in out.splitlines() if line.startswith("node2"))

    def broken():
        raise RuntimeError("files table locked")

    monkeypatch.setattr(presence, "backlog_by_node", broken)
    _, out, _ = run_command()
    assert "unavailable: files table locked" in out
    assert "Synced, Primary" in out


# --- the admin page ----------------------------------------------------------------------

URL = "/admin/cluster/nodestatus/"


def test_the_operator_sees_the_cluster_status_page(cluster, client, django_user_model):
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.create_superuser("op", "op@example.com", PASSWORD)
    client.force_login(operator)

    page = client.get(URL)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Stale: node2." in html
    assert '<tr class="node-node1">' in html and "Synced, Primary, size 3, ready" in html
    assert "STALE" in html and "disabled" in html
    assert URL in client.get("/admin/").content.decode()  # linked from the index


def test_reseller_staff_cannot_see_the_cluster_status(cast, client):
    client.force_login(cast.a.staff)
    assert client.get(URL).status_code == 403
    assert URL not in client.get("/admin/").content.decode()


def test_a_customer_login_cannot_see_the_cluster_status(cast, client):
    client.force_login(cast.a.customer_user)
    assert client.get(URL).status_code in (302, 403)


# --- the heartbeat thread of a worker ------------------------------------------------------


def wait_for(condition, *, limit: float = 30.0) -> bool:
    """Poll `condition` until it holds (a wait, not a timed assertion).

    On SQLite's shared in-memory test database a read while the heartbeat thread writes is
    refused at once ("database table is locked": shared cache has no busy wait) rather than
    waiting: that is a "not yet", asked again.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OperationalError as error:
            if "locked" not in str(error):
                raise
        time.sleep(0.05)
    return condition()


@pytest.mark.django_db(transaction=True)
def test_one_heartbeat_thread_per_node_beats_and_another_takes_over_when_it_stops(settings, tmp_path):
    NodeFactory(name="node1")
    settings.CLUSTER_HEARTBEAT_SECONDS = 1
    lock = tmp_path / "heartbeat.lock"
    first = presence.Heartbeat("node1", lock)
    second = presence.Heartbeat("node1", lock)
    first.start()
    try:
        assert wait_for(lambda: NodeStatus.objects.filter(node__name="node1").exists())
        assert first.holds_lock() and not second.holds_lock()  # the other worker stands by
    finally:
        first.stop_event.set()
        first.join()
    assert second.holds_lock()  # the lock went with the stopped thread
    second._lock_file.close()


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_goes_on_while_the_billing_loop_holds_the_worker(settings, tmp_path, monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip(
            "two connections writing one SQLite file lock each other out; needs MariaDB or PostgreSQL"
        )
    from apps.billing.services import rating
    from apps.billing.tasks import billing_loop

    NodeFactory(name="node1")
    settings.NODE_NAME = "node1"
    settings.CLUSTER_HEARTBEAT_SECONDS = 1
    beats = set()
    rounds = []

    class Enough(Exception):
        pass

    rate_batch = rating.rate_batch

    def rate_and_look(**kwargs):
        # One round of the loop, then a look at the heartbeats: the loop ends only after
        # three distinct beats were seen between its rounds.
        result = rate_batch(**kwargs)
        rounds.append(1)
        beats.update(NodeStatus.objects.filter(node__name="node1").values_list("reported_at", flat=True))
        if len(beats) >= 3:
            raise Enough
        return result

    monkeypatch.setattr(rating, "rate_batch", rate_and_look)
    thread = presence.Heartbeat("node1", tmp_path / "heartbeat.lock")
    thread.start()
    try:
        with pytest.raises(Enough):
            billing_loop(seconds=120)
    finally:
        thread.stop_event.set()
        thread.join()
    assert len(beats) >= 3 and len(rounds) >= 3
