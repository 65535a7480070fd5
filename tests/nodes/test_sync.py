"""Pushing table changes to every node's OpenSIPS: a change marks every enabled node and
queues one reload per node after commit; the reload clears what it reloaded unless a newer
change came in; a node that does not answer keeps its changes pending, shows the error,
and is retried with backoff by the sweep."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.nodes import sync, tasks
from apps.nodes.models import EngineSync
from apps.tenancy.scope import Scope
from tests.engines import RecordedMI
from tests.engines.replies import recorded
from tests.factories import NodeFactory

TASK = "apps.nodes.tasks.reload_engine"


def row(node) -> EngineSync:
    return EngineSync.objects.get(node=node, engine="opensips")


def test_a_change_marks_every_enabled_node_and_queues_one_reload_per_node(
    nodes, queue, django_capture_on_commit_callbacks
):
    node1, node2, disabled = nodes
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        sync.request_reload("address", "drouting")
        assert queue() == []  # nothing leaves before the commit
    assert len(callbacks) == 1

    assert queue() == [("node1", TASK, (node1.pk,)), ("node2", TASK, (node2.pk,))]
    for node in (node1, node2):
        state = row(node)
        assert state.pending_modules == ["address", "drouting"]
        assert state.pending_since is not None
        assert state.attempts == 0
    assert not EngineSync.objects.filter(node=disabled).exists()


def test_a_change_rolled_back_marks_and_queues_nothing(nodes, queue, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        sync.request_reload("registrant")
        raise RuntimeError("the change failed")
    assert callbacks == []
    assert queue() == []
    assert not EngineSync.objects.filter(pending_registrant=True).exists()


def test_changes_add_up_until_reloaded(nodes):
    node1 = nodes[0]
    sync.request_reload("address")
    first = row(node1)
    sync.request_reload("registrant")
    second = row(node1)
    assert second.pending_modules == ["address", "registrant"]
    assert second.pending_since == first.pending_since  # pending since the first change
    assert second.generation == first.generation + 1


@pytest.mark.parametrize("modules", [(), ("usrloc",), ("address", "dialplan")])
def test_a_module_without_a_reload_is_refused_naming_the_known_ones(nodes, modules):
    with pytest.raises(ValueError, match="address, drouting, registrant"):
        sync.request_reload(*modules)
    assert not EngineSync.objects.exists()


def test_the_reload_task_reloads_what_is_pending_and_clears_it(nodes, mi):
    node1, node2, _ = nodes
    sync.request_reload("address", "registrant")

    assert tasks.reload_engine(node1.pk) == "node1: reloaded address, registrant"

    assert [r["method"] for r in mi.requests] == ["address_reload", "reg_reload"]
    done = row(node1)
    assert done.pending_modules == []
    assert (done.pending_since, done.next_attempt_at, done.attempts) == (None, None, 0)
    assert done.last_success_at is not None
    assert row(node2).pending_modules == ["address", "registrant"]  # each node for itself


def test_a_reload_with_nothing_pending_asks_nothing(nodes, mi):
    node1 = nodes[0]
    assert tasks.reload_engine(node1.pk) == "node1: nothing pending"
    sync.request_reload("drouting")
    tasks.reload_engine(node1.pk)
    assert tasks.reload_engine(node1.pk) == "node1: nothing pending"  # a duplicate task
    assert [r["method"] for r in mi.requests] == ["dr_reload"]


def test_a_disabled_node_is_not_reloaded(nodes, mi):
    assert "disabled" in tasks.reload_engine(nodes[2].pk)
    assert mi.requests == []


def test_an_engine_that_does_not_answer_keeps_the_change_pending_with_the_error(nodes, dead_mi):
    node1 = nodes[0]
    sync.request_reload("drouting")
    before = timezone.now()

    outcome = tasks.reload_engine(node1.pk)

    assert outcome.startswith("node1: failed (MI dr_reload at http://127.0.0.1:")
    failed = row(node1)
    assert failed.pending_modules == ["drouting"]
    assert failed.attempts == 1
    assert "retryable" in failed.last_error and "Connection refused" in failed.last_error
    assert failed.last_error_at >= before
    assert failed.next_attempt_at >= failed.last_error_at + sync.RETRY_FIRST


def test_changes_made_while_reloads_fail_wait_for_the_sweep_instead_of_each_timing_out(nodes, dead_mi):
    node1 = nodes[0]
    sync.request_reload("address")
    tasks.reload_engine(node1.pk)  # the first change's task fails: backoff starts
    failed_at = row(node1).last_error_at
    for _ in range(5):  # a burst of changes, each with its own task
        sync.request_reload("address")
        assert "the sweep retries" in tasks.reload_engine(node1.pk)
    # Not one more attempt at the dead engine (each would have been a timeout).
    assert (row(node1).attempts, row(node1).last_error_at) == (1, failed_at)
    assert row(node1).pending_modules == ["address"]
    assert "failed" in tasks.reload_engine(node1.pk, retry=True)  # the sweep's retry tries
    assert row(node1).attempts == 2


def test_each_failure_doubles_the_wait_up_to_ten_minutes():
    assert [sync.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert sync.backoff(30) == timedelta(minutes=10)


def test_a_second_failure_waits_longer_and_a_success_resets_the_attempts(nodes, dead_mi, settings):
    node1 = nodes[0]
    sync.request_reload("address")
    tasks.reload_engine(node1.pk)
    first = row(node1)
    tasks.reload_engine(node1.pk, retry=True)  # as the sweep queues it when due
    second = row(node1)
    assert second.attempts == 2
    assert second.next_attempt_at - second.last_error_at == sync.backoff(2) > sync.backoff(1)

    with RecordedMI() as server:
        settings.OPENSIPS_MI_URL = server.template
        assert tasks.reload_engine(node1.pk, retry=True) == "node1: reloaded address"
    done = row(node1)
    assert (done.attempts, done.pending_modules) == (0, [])
    assert done.last_error == second.last_error  # the last error stays on record, dated
    assert done.last_success_at > first.last_error_at


def test_an_error_answer_is_recorded_as_not_retryable_and_still_retried(nodes, mi):
    mi.replies["reg_reload"] = recorded("profile_get_size_unknown")  # any JSON-RPC error
    sync.request_reload("registrant")
    tasks.reload_engine(nodes[0].pk)
    failed = row(nodes[0])
    assert failed.last_error == "not retryable: MI reg_reload: 404 Profile not found"
    assert failed.next_attempt_at is not None and failed.pending_registrant


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_during_the_reload_stays_pending(nodes, mi):
    node1 = nodes[0]
    sync.request_reload("address")
    changed = threading.Event()

    def change_during_reload(params):
        # Runs in the MI server's thread, while reload_node waits for this answer: a change
        # commits from another connection, as a service on another node would.
        try:
            sync.request_reload("address", "drouting")
        finally:
            connection.close()
            changed.set()
        return recorded("address_reload")

    mi.replies["address_reload"] = change_during_reload
    outcome = sync.reload_node(node1)

    assert changed.is_set()
    assert (outcome.reloaded, outcome.still_pending) == (("address",), True)
    state = row(node1)
    assert state.pending_modules == ["address", "drouting"]
    assert state.last_success_at is not None

    mi.replies["address_reload"] = recorded("address_reload")
    assert sync.reload_node(node1).still_pending is False
    assert row(node1).pending_modules == []


def test_the_sweep_queues_due_retries_once(nodes, queue, dead_mi):
    node1, node2, _ = nodes
    sync.request_reload("drouting")
    tasks.reload_engine(node1.pk)  # fails: retry due in 5 s
    assert queue() == []  # the change's own tasks never ran: its transaction never committed

    assert tasks.retry_engine_sync() == 0  # nothing due yet
    later = timezone.now() + timedelta(minutes=2)
    assert sync.requeue_due(later) == 2  # node1's retry, and node2 whose task never ran
    assert sync.requeue_due(later) == 0  # claimed: a second sweep queues nothing
    assert queue() == [("node1", TASK, (node1.pk, True)), ("node2", TASK, (node2.pk, True))]
    assert row(node1).next_attempt_at > later


def test_the_sweep_skips_disabled_nodes_and_rows_with_nothing_pending(nodes, queue, mi):
    node1, node2, disabled = nodes
    sync.request_reload("address")
    tasks.reload_engine(node1.pk)
    node2.enabled = False
    node2.save()
    assert sync.requeue_due(timezone.now() + timedelta(hours=1)) == 0
    assert disabled.engine_syncs.count() == 0


def test_reload_now_reloads_every_module_and_is_audited(nodes, mi):
    node1 = nodes[0]
    outcome = sync.reload_now(node1, actor=Scope.system())
    assert outcome.reloaded == ("address", "drouting", "registrant")
    assert [r["method"] for r in mi.requests] == ["address_reload", "dr_reload", "reg_reload"]
    entry = AuditEntry.objects.get(action="node.engine_reloaded")
    assert entry.object_id == str(node1.pk)
    assert entry.data["modules"] == ["address", "drouting", "registrant"]


def test_a_new_node_is_marked_by_the_next_change(nodes, mi):
    sync.request_reload("address")
    node4 = NodeFactory(name="node4", management_address="127.0.0.1")
    sync.request_reload("drouting")
    assert row(node4).pending_modules == ["drouting"]


def test_changes_arriving_all_the_time_never_push_back_a_failing_nodes_retry(nodes, dead_mi):
    node1 = nodes[0]
    sync.request_reload("address")
    tasks.reload_engine(node1.pk)  # fails: the sweep retries it after the backoff
    due = row(node1).next_attempt_at
    for _ in range(3):
        sync.request_reload("drouting")
    assert row(node1).next_attempt_at == due
    assert due <= timezone.now() + sync.backoff(1)
