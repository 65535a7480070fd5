"""The rsync driver against real rsync daemons on loopback."""

import os
from pathlib import Path

import pytest

from engines.rsync import (
    ChecksumMismatch,
    Rsync,
    RsyncError,
    Target,
    check_relative_path,
    classify,
    sha256_of,
)
from tests.files.rsyncd import RsyncDaemon, rsync_missing
from tests.ports import free_port

pytestmark = pytest.mark.skipif(rsync_missing() is not None, reason=rsync_missing() or "")

RELATIVE = "node1/2026/11/26/call-1.wav"


@pytest.fixture
def daemon(tmp_path):
    daemon = RsyncDaemon(tmp_path / "remote").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "local"
    path = root / RELATIVE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF" + os.urandom(4096))
    return root


def facts(root: Path) -> dict:
    path = root / RELATIVE
    return {"size": path.stat().st_size, "sha256": sha256_of(path)}


def test_push_creates_the_dated_directories_and_the_copy_is_identical(daemon, source):
    rsync = Rsync(timeout=60)
    rsync.push(source, RELATIVE, Target(daemon.url), "recordings", **facts(source))

    copy = daemon.root / "recordings" / RELATIVE
    assert copy.read_bytes() == (source / RELATIVE).read_bytes()
    assert rsync.stat(Target(daemon.url), "recordings", RELATIVE).size == copy.stat().st_size


def test_pushing_twice_transfers_nothing_the_second_time(daemon, source):
    rsync = Rsync(timeout=60)
    first = rsync.push(source, RELATIVE, Target(daemon.url), "recordings", **facts(source))
    second = rsync.push(source, RELATIVE, Target(daemon.url), "recordings", **facts(source))

    assert any(line.startswith("<f") for line in first.changes)
    assert not any(line.startswith("<f") for line in second.changes)


def test_a_same_size_corruption_of_the_remote_copy_is_found_by_verify(daemon, source):
    rsync = Rsync(timeout=60)
    rsync.push(source, RELATIVE, Target(daemon.url), "recordings", **facts(source))
    copy = daemon.root / "recordings" / RELATIVE
    stat = copy.stat()
    corrupted = bytearray(copy.read_bytes())
    corrupted[100] ^= 0xFF
    copy.write_bytes(bytes(corrupted))
    # Same size and mtime: only a content checksum can tell.
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    with pytest.raises(ChecksumMismatch) as caught:
        rsync.verify(source, RELATIVE, Target(daemon.url), "recordings", size=stat.st_size)
    assert caught.value.retryable


def test_a_local_file_changed_after_registration_is_not_sent(daemon, source):
    registered = facts(source)
    (source / RELATIVE).write_bytes(b"something else")

    with pytest.raises(ChecksumMismatch) as caught:
        Rsync(timeout=60).push(source, RELATIVE, Target(daemon.url), "recordings", **registered)
    assert not caught.value.retryable
    assert not (daemon.root / "recordings" / RELATIVE).exists()


def test_a_target_that_is_down_is_a_retryable_socket_error(source):
    target = Target(f"rsync://127.0.0.1:{free_port()}/smartswitch")

    with pytest.raises(RsyncError) as caught:
        Rsync(timeout=60, io_timeout=5).push(source, RELATIVE, target, "recordings", **facts(source))
    assert caught.value.exit_code == 10
    assert caught.value.retryable
    assert "Connection refused" in str(caught.value)


def test_stat_of_a_missing_file_is_none(daemon):
    assert Rsync(timeout=60).stat(Target(daemon.url), "recordings", RELATIVE) is None


def test_delete_removes_only_that_file(daemon, source, tmp_path):
    rsync = Rsync(timeout=60)
    neighbour = daemon.root / "recordings" / "node1/2026/11/26/call-2.wav"
    rsync.push(source, RELATIVE, Target(daemon.url), "recordings", **facts(source))
    neighbour.write_bytes(b"keep me")
    empty = tmp_path / "empty"
    empty.mkdir()

    assert rsync.delete(Target(daemon.url), "recordings", RELATIVE, empty_dir=empty) is True
    assert not (daemon.root / "recordings" / RELATIVE).exists()
    assert neighbour.read_bytes() == b"keep me"
    # Deleting again is harmless.
    assert rsync.delete(Target(daemon.url), "recordings", RELATIVE, empty_dir=empty) is False


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (5, True),
        (10, True),
        (12, True),
        (23, True),
        (24, False),
        (30, True),
        (35, True),
        (1, False),
        (255, True),
    ],
)
def test_exit_codes_are_classified(code, retryable):
    error = classify(code, "rsync error: something\n", Target("/srv/files"))
    assert error.retryable is retryable
    assert error.exit_code == code
    assert "rsync error: something" in str(error)


@pytest.mark.parametrize("bad", ["", "/abs/file.wav", "node1/../etc/passwd", "node1/a*.wav", "node1/a b.wav"])
def test_unsafe_relative_paths_are_refused(bad):
    with pytest.raises(ValueError):
        check_relative_path(bad)


def test_targets_are_recognised_and_ssh_gets_batch_mode():
    rsync = Rsync()
    assert Target("rsync://10.0.0.2:873/smartswitch").is_daemon
    ssh = Target("smartswitch@10.0.0.2:/var/lib/smartswitch")
    assert ssh.is_ssh
    command = rsync.command(ssh, ["--list-only", ssh.join("recordings")])
    assert command[command.index("-e") + 1].startswith("ssh -o BatchMode=yes")
    assert command[-1] == "smartswitch@10.0.0.2:/var/lib/smartswitch/recordings"
    with pytest.raises(ValueError):
        Target("relative/dir")


@pytest.mark.parametrize(
    "url",
    ["-e sh -c id:x", "--rsync-path=evil:/x", "user@host:/path with space", "host:relative", "user@host:"],
)
def test_a_target_that_could_read_as_an_option_or_is_not_absolute_is_refused(url):
    with pytest.raises(ValueError, match="Sync target"):
        Target(url)
