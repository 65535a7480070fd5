"""Registering a finished recording (RECORD_STOP) and finding it again from its CDR."""

import hashlib
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.billing.models import Reservation
from apps.cdr.models import Cdr
from apps.core.errors import DomainError
from apps.files import services as files
from apps.files.models import FileCopy, StoredFile
from apps.media import recordings
from apps.media.recordings import RecordingRefused, register_recording
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory, NodeFactory, make_peer

CALL_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def rec_dir(tmp_path, settings):
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    settings.NODE_NAME = "node1"
    return settings.RECORDINGS_DIR


@pytest.fixture
def node1(db):
    return NodeFactory(name="node1")


def write(root, relative: str, content: bytes = b"RIFF....WAVEfmt audio") -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def test_a_recording_is_registered_with_its_size_hash_and_call(rec_dir, node1):
    NodeFactory(name="node2")
    content = b"RIFF" + bytes(range(200))
    path = write(rec_dir, "node1/2026/03/02/abc.wav", content)

    stored = register_recording(node1, call_id="abc@10.0.0.9", path=path)

    assert stored.kind == StoredFile.Kind.RECORDING
    assert stored.origin == node1
    assert stored.relative_path == "node1/2026/03/02/abc.wav"
    assert stored.call_id == "abc@10.0.0.9"
    assert stored.size == len(content)
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    # Copied to every node by the file sync: present here, owed to node2.
    states = dict(FileCopy.objects.filter(file=stored).values_list("node__name", "state"))
    assert states == {"node1": "present", "node2": "pending"}


def test_a_second_record_stop_for_the_same_file_adds_nothing(rec_dir, node1):
    path = write(rec_dir, "node1/2026/03/02/abc.wav")
    first = register_recording(node1, call_id="abc", path=path)
    # Even if FreeSWITCH had touched the file since: the first registration stands.
    write(rec_dir, "node1/2026/03/02/abc.wav", b"something else")

    again = register_recording(node1, call_id="abc", path=path)

    assert again.pk == first.pk
    assert StoredFile.objects.count() == 1
    assert FileCopy.objects.count() == 1


def test_a_path_relative_to_the_recordings_directory_is_read_from_it(rec_dir, node1):
    write(rec_dir, "node1/2026/03/02/rel.wav")

    stored = register_recording(node1, call_id="rel", path="node1/2026/03/02/rel.wav")

    assert stored.relative_path == "node1/2026/03/02/rel.wav"


@pytest.mark.parametrize(
    "where",
    [
        "node2/2026/03/02/x.wav",  # another node's tree
        "node1/../node2/2026/x.wav",  # out of it by ..
        "x.wav",  # the recordings root itself
        "node1",  # the node's directory, not a file in it
    ],
)
def test_a_file_outside_the_nodes_tree_is_refused(rec_dir, node1, where):
    write(rec_dir, "node2/2026/03/02/x.wav")
    write(rec_dir, "node2/2026/x.wav")
    write(rec_dir, "x.wav")

    with pytest.raises(RecordingRefused, match="is not below"):
        register_recording(node1, call_id="x", path=rec_dir / where)

    assert not StoredFile.objects.exists()


def test_an_absolute_path_elsewhere_is_refused(rec_dir, node1, tmp_path):
    outside = write(tmp_path, "elsewhere/node1/secret.wav")

    with pytest.raises(RecordingRefused):
        register_recording(node1, call_id="x", path=outside)


def test_a_link_out_of_the_tree_is_refused(rec_dir, node1, tmp_path):
    secret = write(tmp_path, "secret.txt", b"not audio")
    link = rec_dir / "node1" / "2026" / "link.wav"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)

    with pytest.raises(RecordingRefused):
        register_recording(node1, call_id="x", path=link)


def test_the_nodes_directory_may_be_a_link_to_another_disk(rec_dir, node1, tmp_path):
    disk = tmp_path / "disk2"
    write(disk, "2026/03/02/big.wav")
    rec_dir.mkdir()
    (rec_dir / "node1").symlink_to(disk)

    stored = register_recording(node1, call_id="big", path=rec_dir / "node1/2026/03/02/big.wav")

    assert stored.relative_path == "node1/2026/03/02/big.wav"


def test_a_missing_file_is_refused_with_a_reason(rec_dir, node1):
    with pytest.raises(DomainError, match="is not a file on this node"):
        register_recording(node1, call_id="x", path=rec_dir / "node1/2026/03/02/none.wav")


def test_an_empty_recording_is_registered_and_known_to_be_empty(rec_dir, node1):
    path = write(rec_dir, "node1/2026/03/02/empty.wav", b"")
    cdr = CdrFactory(node=node1, call_id="empty", created_at=CALL_START)
    stored = register_recording(node1, call_id="empty", path=path)
    StoredFile.objects.filter(pk=stored.pk).update(created_at=CALL_START + timedelta(seconds=61))

    assert stored.size == 0
    [listed] = recordings.recordings_for_cdr(cdr)
    assert listed.is_empty and listed.here


# --- which files belong to which CDR ---------------------------------------------------


def stored_file(node, call_id, at, *, kind="recording", name=None, deleted=False):
    return StoredFile.objects.create(
        kind=kind,
        origin=node,
        relative_path=f"{node.name}/2026/03/02/{name or call_id}-{kind}-{at:%m%d%H%M%S}.wav",
        size=1000,
        sha256="0" * 64,
        call_id=call_id,
        created_at=at,
        deleted_at=at if deleted else None,
    )


def test_a_cdr_has_the_files_of_its_call_made_on_its_node_during_it(node1):
    node2 = NodeFactory(name="node2")
    cdr = CdrFactory(node=node1, call_id="c1", created_at=CALL_START)  # ends 60 s later
    recording = stored_file(node1, "c1", CALL_START + timedelta(seconds=61))
    capture = stored_file(node1, "c1", CALL_START + timedelta(minutes=5), kind="capture")
    # Not this call's: another node, before the call, long after it, another Call-ID, deleted.
    stored_file(node2, "c1", CALL_START + timedelta(seconds=61))
    stored_file(node1, "c1", CALL_START - timedelta(days=1))
    stored_file(node1, "c1", CALL_START + timedelta(days=1))
    stored_file(node1, "c2", CALL_START + timedelta(seconds=61))
    stored_file(node1, "c1", CALL_START + timedelta(seconds=62), name="gone", deleted=True)

    assert list(recordings.files_for_cdr(cdr)) == [recording, capture]
    assert [f.pk for f in recordings.recordings_for_cdr(cdr)] == [recording.pk]


def test_a_file_that_comes_before_its_cdr_is_linked_once_the_cdr_is_in(node1):
    recording = stored_file(node1, "early", CALL_START + timedelta(seconds=61))

    cdr = CdrFactory(node=node1, call_id="early", created_at=CALL_START)

    assert list(recordings.files_for_cdr(cdr)) == [recording]


def test_another_customers_call_with_the_same_call_id_does_not_get_the_recording(node1):
    # The callee of a recorded call knows its Call-ID and could send a call of its own with it.
    victim = CdrFactory(node=node1, call_id="known", created_at=CALL_START)
    recording = stored_file(node1, "known", CALL_START + timedelta(seconds=61))
    copycat = CdrFactory(node=node1, call_id="known", created_at=CALL_START + timedelta(hours=2))

    assert list(recordings.files_for_cdr(victim)) == [recording]
    assert list(recordings.files_for_cdr(copycat)) == []


def test_a_cdr_without_node_or_call_id_has_no_files(node1):
    stored_file(node1, "", CALL_START)

    assert not recordings.files_for_cdr(CdrFactory(node=None, call_id="x", created_at=CALL_START)).exists()
    assert not recordings.files_for_cdr(CdrFactory(node=node1, call_id="", created_at=CALL_START)).exists()


def test_call_lists_know_which_calls_have_a_recording_in_one_query(node1, django_assert_num_queries):
    recorded = CdrFactory(node=node1, call_id="r", created_at=CALL_START)
    captured = CdrFactory(node=node1, call_id="c", created_at=CALL_START)
    CdrFactory(node=node1, call_id="n", created_at=CALL_START)
    stored_file(node1, "r", CALL_START + timedelta(seconds=60))
    stored_file(node1, "c", CALL_START + timedelta(seconds=60), kind="capture")

    with django_assert_num_queries(1):
        flags = {cdr.call_id: cdr.has_recording for cdr in recordings.with_recording(Cdr.objects.all())}

    assert flags == {"r": True, "c": False, "n": False}
    assert recorded.pk and captured.pk


def test_a_deleted_recording_is_a_404_that_says_so(rf, rec_dir, node1):
    path = write(rec_dir, "node1/2026/03/02/del.wav")
    stored = register_recording(node1, call_id="del", path=path)
    files.delete_file(stored, actor=Scope.system(), reason="test")
    stored.refresh_from_db()

    response = recordings.serve_recording(rf.get("/"), stored, download=False)

    assert response.status_code == 404
    assert b"deleted" in response.content


def test_a_recording_not_yet_copied_here_is_a_409_that_says_so(rf, rec_dir, settings, node1):
    node2 = NodeFactory(name="node2")
    path = write(rec_dir, "node1/2026/03/02/far.wav")
    stored = register_recording(node1, call_id="far", path=path)
    settings.NODE_NAME = "node2"  # the user's browser reached node2, which has no copy yet
    settings.RECORDINGS_DIR = rec_dir.parent / "node2-recordings"

    response = recordings.serve_recording(rf.get("/"), stored, download=False)

    assert response.status_code == 409
    assert "still being copied to the server you reached" in response.content.decode()
    assert node2.pk


def test_a_copy_marked_present_but_missing_is_a_404_that_says_so(rf, rec_dir, node1):
    path = write(rec_dir, "node1/2026/03/02/lost.wav")
    stored = register_recording(node1, call_id="lost", path=path)
    (rec_dir / stored.relative_path).unlink()

    response = recordings.serve_recording(rf.get("/"), stored, download=False)

    assert response.status_code == 404
    assert "copy of the recording is missing" in response.content.decode()


def test_a_recording_is_served_as_wav_with_ranges(rf, rec_dir, node1):
    path = write(rec_dir, "node1/2026/03/02/play.wav", b"RIFF" + b"x" * 96)
    stored = register_recording(node1, call_id="play", path=path)

    response = recordings.serve_recording(rf.get("/", headers={"Range": "bytes=0-3"}), stored, download=True)

    assert response.status_code == 206
    assert b"".join(response.streaming_content) == b"RIFF"
    assert response["Content-Type"] == "audio/wav"
    assert response["Content-Disposition"] == 'attachment; filename="play.wav"'


# --- recordings whose RECORD_STOP was missed ----------------------------------------------


def finished_at(path: str, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_the_sweep_registers_a_finished_recording_nobody_registered_with_its_calls_id(rec_dir, node1):
    now = CALL_START + timedelta(minutes=10)
    customer = make_peer("Recorded")
    reservation = Reservation.objects.create(
        account=customer.account,
        customer=customer,
        node=node1,
        call_id="a84b4c76e66710@pc33",
        amount=Decimal("0.10"),
        max_duration=600,
        created_at=CALL_START,
        expires_at=CALL_START + timedelta(hours=1),
    )
    name = f"node1/2026/03/02/a84b4c76e66710_pc33-{reservation.pk}.wav"
    missed = write(rec_dir, name)
    finished_at(missed, CALL_START + timedelta(minutes=2))
    registered = write(rec_dir, "node1/2026/03/02/other-999.wav")
    register_recording(node1, call_id="other", path=registered)

    found = recordings.register_missed(node1, now=now)

    assert [stored.relative_path for stored in found] == [
        f"node1/2026/03/02/a84b4c76e66710_pc33-{reservation.pk}.wav"
    ]
    stored = StoredFile.objects.get(relative_path=found[0].relative_path)
    # As made when last written: the CDR of the call finds it (files_of_call's time window).
    assert (stored.call_id, stored.created_at) == ("a84b4c76e66710@pc33", CALL_START + timedelta(minutes=2))
    assert recordings.register_missed(node1, now=now) == []


def test_the_sweep_leaves_a_recording_still_being_written_and_old_days_alone(rec_dir, node1):
    now = CALL_START + timedelta(minutes=10)
    writing = write(rec_dir, "node1/2026/03/02/live-1.wav")
    finished_at(writing, now - timedelta(seconds=20))
    old = write(rec_dir, "node1/2026/02/20/old-2.wav")
    finished_at(old, CALL_START - timedelta(days=10))

    assert recordings.register_missed(node1, now=now) == []
    # A minute later the first one is finished; a name without a known reservation has no Call-ID.
    (stored,) = recordings.register_missed(node1, now=now + timedelta(minutes=1))
    assert (stored.relative_path, stored.call_id) == ("node1/2026/03/02/live-1.wav", "")
