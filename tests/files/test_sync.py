"""File sync end to end: real rsync daemons, tasks run as each node's worker would run them."""

import os
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.core.errors import Conflict, DomainError
from apps.files import services, tasks
from apps.files.models import FileCopy, StoredFile
from apps.tenancy.scope import Scope
from tests.files.conftest import queued, run_queued

PUSH = "apps.files.tasks.push_file"


def copies(stored: StoredFile) -> dict[str, FileCopy]:
    return {copy.node.name: copy for copy in stored.copies.select_related("node")}


def test_a_registered_file_is_queued_on_its_origin_and_pushed_to_both_other_nodes(sync_cluster):
    relative = sync_cluster.make("call-1.wav")
    stored = services.register_file(kind="recording", relative_path=relative, call_id="abc@pbx")

    assert [(task["func"], task["args"]) for task in queued("node1")] == [
        (PUSH, (stored.pk, "node2")),
        (PUSH, (stored.pk, "node3")),
    ]
    assert queued("node2") == queued("node3") == []
    assert run_queued("node1") == ["present", "present"]

    original = (sync_cluster.recordings / relative).read_bytes()
    for node in ("node2", "node3"):
        assert sync_cluster.copy_on(node, relative).read_bytes() == original
    states = {
        name: (copy.state, copy.attempts, copy.verified_at is not None)
        for name, copy in copies(stored).items()
    }
    assert states == dict.fromkeys(("node1", "node2", "node3"), ("present", 0, True))
    backlog = services.backlog_by_node()
    counts = {name: (row["pending"], row["failed"], row["present"]) for name, row in backlog.items()}
    assert counts == dict.fromkeys(("node1", "node2", "node3"), (0, 0, 1))


def test_a_node_that_is_down_gets_a_failed_copy_and_reconcile_delivers_once_it_is_back(sync_cluster):
    sync_cluster.daemons["node3"].stop()
    relative = sync_cluster.make("call-2.wav")
    stored = services.register_file(kind="recording", relative_path=relative)
    run_queued("node1")

    node3 = copies(stored)["node3"]
    assert (copies(stored)["node2"].state, node3.state, node3.attempts) == ("present", "failed", 1)
    assert "Connection refused" in node3.last_error and "(10: error in socket I/O)" in node3.last_error
    first_retry = node3.next_attempt_at
    assert first_retry > timezone.now()
    backlog = services.backlog_by_node()["node3"]
    assert (backlog["failed"], backlog["oldest"]) == (1, stored.created_at)
    assert "Connection refused" in backlog["last_error"]

    # Still down: another attempt, and the next one waits longer (backoff doubles).
    assert tasks.push_file(stored.pk, "node3").startswith("failed")
    node3.refresh_from_db()
    assert node3.attempts == 2
    assert node3.next_attempt_at - timezone.now() > timedelta(seconds=45)

    sync_cluster.daemons["node3"].start()
    assert services.reconcile(sync_cluster.node3) == {"created": 0, "queued": 1, "verify": 0}
    assert run_queued("node1") == ["present"]
    node3.refresh_from_db()
    assert (node3.state, node3.last_error, node3.next_attempt_at) == ("present", "", None)
    assert (
        sync_cluster.copy_on("node3", relative).read_bytes()
        == (sync_cluster.recordings / relative).read_bytes()
    )
    assert services.backlog_by_node()["node3"]["failed"] == 0


def test_the_retry_sweep_resends_only_copies_whose_time_has_come(sync_cluster):
    sync_cluster.daemons["node2"].stop()
    stored = services.register_file(kind="recording", relative_path=sync_cluster.make("call-3.wav"))
    run_queued("node1")
    failed = copies(stored)["node2"]
    assert failed.state == "failed"

    assert services.queue_due_copies(sync_cluster.node1, now=timezone.now()) == 0
    later = failed.next_attempt_at + timedelta(seconds=1)
    assert services.queue_due_copies(sync_cluster.node1, now=later) == 1
    # Queued once: the sweep moved its time on, so the next sweep does not queue it again.
    assert services.queue_due_copies(sync_cluster.node1, now=later) == 0
    assert [task["args"] for task in queued("node1")] == [(stored.pk, "node2")]


def test_a_corrupted_copy_is_found_by_a_verifying_reconcile_and_sent_again(sync_cluster):
    relative = sync_cluster.make("call-4.wav")
    stored = services.register_file(kind="recording", relative_path=relative)
    run_queued("node1")
    copy = sync_cluster.copy_on("node2", relative)
    stat = copy.stat()
    damaged = bytearray(copy.read_bytes())
    damaged[500] ^= 0x01
    copy.write_bytes(bytes(damaged))
    # Same size and time as before: only a content checksum can tell.
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert services.reconcile(sync_cluster.node2, verify=True) == {"created": 0, "queued": 0, "verify": 1}
    [result] = run_queued("node1")
    assert result.startswith("repaired:") and "differs from the local file" in result
    assert copy.read_bytes() == (sync_cluster.recordings / relative).read_bytes()
    assert copies(stored)["node2"].state == "present"
    # An intact copy verifies without being sent again.
    assert tasks.push_file(stored.pk, "node2", verify=True) == "verified"


def test_a_file_changed_after_registration_is_not_spread_and_not_retried(sync_cluster):
    relative = sync_cluster.make("call-5.wav")
    stored = services.register_file(kind="recording", relative_path=relative)
    (sync_cluster.recordings / relative).write_bytes(b"overwritten by someone")
    run_queued("node1")

    node2 = copies(stored)["node2"]
    assert node2.state == "failed"
    assert "is not the file that was registered" in node2.last_error
    assert node2.next_attempt_at is None
    assert not sync_cluster.copy_on("node2", relative).exists()


def test_retention_deletes_old_files_on_every_node_and_keeps_the_tombstone(sync_cluster, settings):
    settings.RECORDING_RETENTION_DAYS = 30
    old = services.register_file(kind="recording", relative_path=sync_cluster.make("old.wav"))
    new = services.register_file(kind="recording", relative_path=sync_cluster.make("new.wav"))
    run_queued("node1")
    StoredFile.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))

    assert services.apply_retention() == 1
    assert sorted(task["args"][1] for task in queued("node1")) == ["node1", "node2", "node3"]
    assert run_queued("node1") == ["deleted", "deleted", "deleted"]

    old.refresh_from_db()
    assert old.deleted_at is not None and old.deleted_reason.startswith("retention")
    assert {copy.state for copy in copies(old).values()} == {"deleted"}
    assert not (sync_cluster.recordings / old.relative_path).exists()
    for node in ("node2", "node3"):
        assert not sync_cluster.copy_on(node, old.relative_path).exists()
        assert sync_cluster.copy_on(node, new.relative_path).exists()
    assert (sync_cluster.recordings / new.relative_path).exists()
    # Already applied: nothing more to delete.
    assert services.apply_retention() == 0


def test_a_deletion_missed_by_a_node_that_was_down_is_replayed_when_it_is_back(sync_cluster):
    stored = services.register_file(kind="recording", relative_path=sync_cluster.make("gone.wav"))
    run_queued("node1")
    sync_cluster.daemons["node3"].stop()
    services.delete_file(stored, actor=Scope.system(), reason="customer asked")
    run_queued("node1")
    assert copies(stored)["node3"].state == "failed"
    assert services.backlog_by_node()["node3"]["deleting"] == 1

    sync_cluster.daemons["node3"].start()
    services.reconcile(sync_cluster.node3)
    assert run_queued("node1") == ["deleted"]
    assert not sync_cluster.copy_on("node3", stored.relative_path).exists()
    assert services.backlog_by_node()["node3"]["deleting"] == 0


def test_running_a_task_twice_is_harmless(sync_cluster):
    relative = sync_cluster.make("twice.wav")
    stored = services.register_file(kind="recording", relative_path=relative)
    assert tasks.push_file(stored.pk, "node2") == "present"
    assert tasks.push_file(stored.pk, "node2") == "already present"
    assert copies(stored)["node2"].attempts == 0
    assert (
        sync_cluster.copy_on("node2", relative).read_bytes()
        == (sync_cluster.recordings / relative).read_bytes()
    )

    services.delete_file(stored, actor=Scope.system(), reason="test")
    services.delete_file(stored, actor=Scope.system(), reason="test again")
    assert tasks.push_file(stored.pk, "node2") == "deleted"
    assert tasks.push_file(stored.pk, "node2") == "already deleted"
    assert tasks.push_file(stored.pk, "node3") == "deleted"  # it never arrived: nothing to remove


def test_a_push_reaching_another_nodes_queue_changes_nothing(sync_cluster, settings):
    stored = services.register_file(kind="recording", relative_path=sync_cluster.make("elsewhere.wav"))
    settings.NODE_NAME = "node2"
    assert tasks.push_file(stored.pk, "node3").startswith("skipped")
    assert copies(stored)["node3"].state == "pending"


def test_a_node_added_later_gets_its_copies_through_reconcile(sync_cluster):
    from tests.factories import NodeFactory
    from tests.files.rsyncd import RsyncDaemon

    stored = services.register_file(kind="recording", relative_path=sync_cluster.make("before.wav"))
    run_queued("node1")
    node4 = NodeFactory(name="node4")
    daemon = RsyncDaemon(sync_cluster.recordings.parent.parent / "node4").start()
    try:
        services.set_node_storage(node4, actor=Scope.system(), sync_target=daemon.url)
        assert services.reconcile(node4) == {"created": 1, "queued": 1, "verify": 0}
        assert run_queued("node1") == ["present"]
        assert (daemon.root / "recordings" / stored.relative_path).exists()
    finally:
        daemon.stop()


def test_captures_land_in_the_captures_directory(sync_cluster):
    relative = sync_cluster.make("call.pcap", kind="capture")
    services.register_file(kind="capture", relative_path=relative)
    run_queued("node1")
    assert sync_cluster.copy_on("node2", relative, "captures").exists()
    assert not sync_cluster.copy_on("node2", relative, "recordings").exists()


def test_registering_is_idempotent_and_refuses_other_content_under_the_same_path(sync_cluster):
    relative = sync_cluster.make("same.wav", b"first")
    first = services.register_file(kind="recording", relative_path=relative)
    assert services.register_file(kind="recording", relative_path=relative).pk == first.pk
    (sync_cluster.recordings / relative).write_bytes(b"second")
    with pytest.raises(Conflict) as caught:
        services.register_file(kind="recording", relative_path=relative)
    assert caught.value.field == "relative_path"


@pytest.mark.parametrize(
    ("relative", "message"),
    [("node1/2026/01/01/missing.wav", "is not a file"), ("../etc/passwd", "segment '..'")],
)
def test_registering_a_bad_path_names_the_field(sync_cluster, relative, message):
    with pytest.raises(DomainError) as caught:
        services.register_file(kind="recording", relative_path=relative)
    assert caught.value.field == "relative_path"
    assert message in caught.value.message


def test_a_file_of_node1_must_live_under_node1(sync_cluster):
    path = sync_cluster.recordings / "node2" / "x.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    with pytest.raises(ValidationError) as caught:
        services.register_file(kind="recording", relative_path="node2/x.wav")
    assert caught.value.message_dict["relative_path"] == ["A file of node1 lives under node1/."]


def test_the_register_file_command_takes_an_absolute_path(sync_cluster, capsys):
    relative = sync_cluster.make("cli.wav")
    call_command("register_file", str(sync_cluster.recordings / relative), "--call-id", "cli@pbx")
    stored = StoredFile.objects.get(relative_path=relative)
    assert (stored.call_id, stored.origin.name) == ("cli@pbx", "node1")
    assert "queued to 2 node(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not below the recording directory"):
        call_command("register_file", "/etc/hostname")


def test_sync_files_now_does_what_is_owed_and_reports_the_backlog(sync_cluster, capsys):
    sync_cluster.daemons["node3"].stop()
    stored = services.register_file(kind="recording", relative_path=sync_cluster.make("now.wav"))
    with pytest.raises(CommandError, match="1 copies failed"):
        call_command("sync_files", "--now")
    out = capsys.readouterr().out
    assert f"file {stored.pk} -> node2: present" in out
    assert "node3: present 0, pending 0, failed 1" in out
    sync_cluster.daemons["node3"].start()
    call_command("sync_files", "--now", "--target", "node3")
    assert copies(stored)["node3"].state == "present"


def test_a_node_back_from_an_outage_asks_the_origins_for_what_it_is_owed(sync_cluster, settings):
    sync_cluster.daemons["node3"].stop()
    stored = services.register_file(kind="recording", relative_path=sync_cluster.make("away.wav"))
    run_queued("node1")
    sync_cluster.daemons["node3"].start()

    settings.NODE_NAME = "node3"  # node3's scheduler runs its catch-up task
    assert tasks.catch_up() == {"created": 0, "queued": 1, "verify": 0}
    assert [task["args"] for task in queued("node1")] == [(stored.pk, "node3")]
    assert queued("node3") == []
    settings.NODE_NAME = "node1"
    assert run_queued("node1") == ["present"]
    assert sync_cluster.copy_on("node3", stored.relative_path).exists()


def test_every_node_gets_the_file_sync_schedules(sync_cluster):
    from django_q.models import Schedule

    tasks.ensure_schedules()
    retry = Schedule.objects.filter(func="apps.files.tasks.retry_due_copies")
    assert sorted(retry.values_list("cluster", flat=True)) == ["node1", "node2", "node3"]
    retention = Schedule.objects.filter(name__startswith="Delete files past retention")
    assert {row.func for row in retention} == {"apps.cluster.tasks.run_singleton"}
    assert retention.count() == 3
