"""A fresh demo looks healthy: nodes that never ran are "not started", not STALE or red, and a
node without OpenSIPS says so plainly, is never asked, and its reloads are not retried.

`make run` (SQLite, the demo cast, no engines) runs node1's workers only: node2 and node3
are rows with no machine behind them, and node1 has no OpenSIPS. These tests build that
state through the same functions the workers use (presence.beat, the reload task, the sweep).
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from apps.cluster import presence
from apps.cluster.models import NodeStatus
from apps.nodes import sync, tasks
from apps.nodes.models import EngineSync
from apps.tenancy.scope import Scope


@pytest.fixture
def no_opensips(settings, tmp_path):
    """This machine has no opensips binary (OPENSIPS_BIN names one that does not exist)."""
    settings.OPENSIPS_BIN = str(tmp_path / "no" / "opensips")


@pytest.fixture
def opensips_binary(settings, tmp_path):
    binary = tmp_path / "opensips"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    settings.OPENSIPS_BIN = str(binary)
    return binary


@pytest.fixture
def never_asked(monkeypatch):
    """Fail any MI question: a node without OpenSIPS must not be asked anything."""
    asked = []

    def refuse(node, **kwargs):
        asked.append(node.name)
        raise AssertionError(f"OpenSIPS of {node.name} was asked")

    monkeypatch.setattr(sync, "client_for", refuse)
    monkeypatch.setattr("apps.nodes.status.client_for", refuse)
    return asked


def test_the_heartbeat_says_whether_opensips_is_installed(nodes, no_opensips, settings, opensips_binary):
    node1, node2, _ = nodes
    assert presence.opensips_installed() is True
    presence.beat("node1")
    assert NodeStatus.objects.get(node=node1).opensips_installed is True
    settings.OPENSIPS_BIN = str(opensips_binary.parent / "missing")
    assert presence.opensips_installed() is False
    presence.beat("node2")
    assert NodeStatus.objects.get(node=node2).opensips_installed is False
    opensips_binary.chmod(0o644)  # present but not executable is not installed
    settings.OPENSIPS_BIN = str(opensips_binary)
    assert presence.opensips_installed() is False


def test_a_node_without_opensips_is_not_asked_and_its_reloads_are_not_retried(
    nodes, queue, no_opensips, never_asked
):
    node1, _, _ = nodes
    presence.beat("node1")
    sync.request_reload("address", "drouting")

    assert tasks.reload_engine(node1.pk) == "node1: OpenSIPS not installed on this node; nothing to reload"
    row = EngineSync.objects.get(node=node1)
    assert (row.pending_modules, row.attempts, row.next_attempt_at) == ([], 0, None)
    assert row.summary() == "OpenSIPS not installed on this node"
    # The sweep has nothing to send it, now or much later; the change's own task ran once.
    assert sync.requeue_due(timezone.now() + timedelta(hours=2)) == 1  # node2's, which has not run
    assert [task for task in queue() if task[0] == "node1"] == []
    # The operator's "reload now" says the same, still without asking.
    outcome = sync.reload_now(node1, actor=Scope.system())
    assert outcome.not_installed and outcome.ok
    assert never_asked == []


def test_the_node_pages_say_opensips_is_not_installed_plainly(nodes, no_opensips, never_asked, login, cast):
    node1, _, _ = nodes
    presence.beat("node1")
    client = login(cast.operator)
    html = client.get(reverse("admin:nodes_node_change", args=[node1.pk])).content.decode()
    assert '<p id="engine-not-installed">OpenSIPS not installed on this node.</p>' in html
    assert "did not answer" not in html.split('id="engine"')[1].split("</fieldset>")[0]
    status = client.get(reverse("admin:cluster_nodestatus_changelist")).content.decode()
    assert "OpenSIPS not installed on this node" in status.split('class="node-node1"')[1].split("</tr>")[0]
    assert never_asked == []


def test_nodes_that_never_beat_are_not_started_not_stale(nodes, no_opensips, settings, login, cast, capsys):
    settings.CLUSTER_STALE_SECONDS = 30
    presence.beat("node1")
    reports = {report.name: report for report in presence.cluster_report()}
    assert (reports["node1"].state, reports["node1"].stale) == ("alive", False)
    assert (reports["node2"].state, reports["node2"].stale) == ("not started", False)
    assert reports["node3"].state == "disabled"

    call_command("cluster_status")  # exits 0: no node went silent
    out = capsys.readouterr().out
    assert "STALE" not in out and "not started" in out

    client = login(cast.operator)
    status = client.get(reverse("admin:cluster_nodestatus_changelist")).content.decode()
    assert "Every enabled node is alive." in status and 'class="stale"' not in status
    listing = client.get(reverse("admin:nodes_node_changelist")).content.decode()
    assert '<td class="field-alive">not started</td>' in listing
    assert '<td class="field-alive">STALE</td>' not in listing
    home = client.get(reverse("admin:index")).content.decode()
    assert "Stale nodes" not in home and "Every enabled node is alive." in home


def test_a_node_that_beat_and_went_silent_is_still_stale(nodes, no_opensips, settings, login, cast):
    settings.CLUSTER_STALE_SECONDS = 30
    _, node2, _ = nodes
    presence.beat("node2")
    type(node2).objects.filter(pk=node2.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    reports = {report.name: report for report in presence.cluster_report()}
    assert (reports["node2"].state, reports["node2"].stale) == ("STALE", True)
    home = login(cast.operator).get(reverse("admin:index")).content.decode()
    assert "Stale nodes" in home and "node2" in home


def test_the_page_of_a_node_that_never_started_shows_no_red_error(nodes, dead_mi, login, cast):
    _, node2, _ = nodes
    html = login(cast.operator).get(reverse("admin:nodes_node_change", args=[node2.pk])).content.decode()
    engine = html.split('id="engine"')[1].split("</fieldset>")[0]
    assert "This node has not started yet" in engine and "errornote" not in engine


def test_reloads_of_a_node_that_never_started_are_sent_seldom_and_at_once_when_it_starts(
    nodes, queue, dead_mi, opensips_binary
):
    _, node2, _ = nodes
    presence.beat("node1")
    sync.request_reload("address")
    first = timezone.now() + timedelta(minutes=2)
    assert sync.requeue_due(first) == 2  # each node's change task never ran
    # node2 has never beaten: no worker reads its queue yet, so not every minute again.
    assert EngineSync.objects.get(node=node2).next_attempt_at >= first + sync.NOT_STARTED_GRACE
    assert sync.requeue_due(first + timedelta(minutes=5)) == 1  # node1 only
    # node2's first beat makes its pending reload due now.
    presence.beat("node2")
    assert EngineSync.objects.get(node=node2).next_attempt_at <= timezone.now()
    assert sync.requeue_due() == 1


def test_a_reload_is_tried_again_once_opensips_is_installed(nodes, opensips_binary, mi, settings):
    node1, _, _ = nodes
    settings.OPENSIPS_BIN = str(opensips_binary.parent / "missing")
    presence.beat("node1")
    sync.request_reload("address")
    assert sync.reload_node(node1).not_installed
    settings.OPENSIPS_BIN = str(opensips_binary)
    presence.beat("node1")
    sync.request_reload("address")
    outcome = sync.reload_node(node1)
    assert outcome.reloaded == ("address",) and not outcome.not_installed
    assert EngineSync.objects.get(node=node1).summary() == "in sync"


def test_mi_unavailable_is_still_an_error_for_a_node_that_runs(nodes, dead_mi, opensips_binary):
    node1, _, _ = nodes
    presence.beat("node1")
    sync.request_reload("address")
    outcome = sync.reload_node(node1)
    assert outcome.error and not outcome.not_installed
    assert EngineSync.objects.get(node=node1).attempts == 1


def test_a_reload_that_failed_before_the_first_beat_is_cleared_by_it(nodes, dead_mi, no_opensips, queue):
    """make run: the demo's changes queue reloads, node1's worker may run one before it beats."""
    node1, _, _ = nodes
    sync.request_reload("address")
    assert sync.reload_node(node1).error  # nothing answers at node1's address
    assert EngineSync.objects.get(node=node1).attempts == 1
    presence.beat("node1")
    row = EngineSync.objects.get(node=node1)
    assert (row.pending_modules, row.attempts, row.next_attempt_at) == ([], 0, None)
    assert row.summary() == "OpenSIPS not installed on this node"
    assert sync.requeue_due(timezone.now() + timedelta(hours=1)) == 1  # node2's only
    assert [task[0] for task in queue()] == ["node2"]
