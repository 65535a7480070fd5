"""The rsync driver of file sync: push a file to a node, check it is there, delete it there.

Plain Python, no ORM: the files app decides what to copy where; this module runs rsync
with timeouts and says whether a failure is worth retrying.

A target is where one node keeps its files, holding `recordings/` and `captures/`:

- an rsync daemon module, `rsync://host:port/module[/path]` (tests, on loopback);
- SSH, `user@host:/path` (production; BatchMode so a missing key fails at once instead of
  waiting for a password nobody types);
- a local directory, `/path` (one machine, or a shared mount).

Verification is rsync's own: after the push, a dry run with `--checksum --itemize-changes`
compares the whole content of the remote file with the local one (rsync's strong checksum
of both sides) and must find nothing to transfer, and `--list-only` must show the expected
size. The local file is checked against its recorded SHA-256 before anything is sent, so
a file changed after it was registered is never spread as if it were the original.
"""

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engines import EngineError

RSYNC_BIN = "rsync"
SSH_COMMAND = "ssh -o BatchMode=yes -o ConnectTimeout=5"

# rsync's exit codes (rsync(1), EXIT VALUES) and whether running again can help.
EXIT_CODES: dict[int, tuple[str, bool]] = {
    1: ("syntax or usage error", False),
    2: ("protocol incompatibility", False),
    3: ("errors selecting input/output files or directories", False),
    4: ("requested action not supported", False),
    # A daemon refusing a connection (max connections, restarting); an unknown module too,
    # which an operator fixes while retries wait.
    5: ("error starting client-server protocol", True),
    6: ("daemon unable to append to log file", False),
    10: ("error in socket I/O", True),
    11: ("error in file I/O", True),
    12: ("error in rsync protocol data stream", True),
    13: ("errors with program diagnostics", False),
    14: ("error in IPC code", True),
    20: ("received SIGUSR1 or SIGINT", True),
    21: ("some error returned by waitpid()", True),
    22: ("error allocating core memory buffers", True),
    23: ("partial transfer due to error", True),
    # The source vanished while it was sent: a retry cannot bring it back.
    24: ("partial transfer due to vanished source files", False),
    25: ("the --max-delete limit stopped deletions", False),
    30: ("timeout in data send/receive", True),
    35: ("timeout waiting for daemon connection", True),
    # ssh's own failures (host down, connection refused) come back as 255.
    255: ("remote shell failed", True),
}

SSH_TARGET = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*@[^/\s]+:/")
SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
LIST_LINE = re.compile(r"^(?P<mode>[-dlpscb][rwxsStT-]{9})\s+(?P<size>[0-9,.]+)\s+\S+\s+\S+\s+(?P<name>.+)$")


class RsyncError(EngineError):
    """rsync failed; `retryable` says whether running it again later can succeed."""

    def __init__(self, message: str, *, retryable: bool, exit_code: int | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.exit_code = exit_code


class ChecksumMismatch(RsyncError):
    """A file's content is not what was registered (locally) or not what was sent (remotely)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)


@dataclass(frozen=True)
class Target:
    """Where one node keeps its files: an rsync daemon URL, an SSH `user@host:/path`, or a path."""

    url: str

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("A sync target is an rsync:// URL, user@host:/path or an absolute path.")
        # It lands on rsync's command line: nothing that could read as an option or split.
        if self.url.startswith("-") or any(character.isspace() for character in self.url):
            raise ValueError(f"Sync target {self.url!r} may not start with '-' or contain spaces.")
        if not (self.is_daemon or self.is_ssh or self.url.startswith("/")):
            raise ValueError(
                f"Sync target {self.url!r}: use rsync://host:port/module, user@host:/path "
                "or an absolute path."
            )

    @property
    def is_daemon(self) -> bool:
        return self.url.startswith("rsync://")

    @property
    def is_ssh(self) -> bool:
        return not self.is_daemon and SSH_TARGET.match(self.url) is not None

    def join(self, *parts: str) -> str:
        """The target's address of `parts` below its root."""
        return "/".join([self.url.rstrip("/"), *(part.strip("/") for part in parts if part)])


@dataclass(frozen=True)
class RemoteFile:
    """What `--list-only` says of a remote file."""

    name: str
    size: int


@dataclass(frozen=True)
class Result:
    """One rsync run: its itemized changes, for logs and tests."""

    changes: list[str]


def check_relative_path(relative: str) -> PurePosixPath:
    """`relative` as a safe path below a kind's directory, or ValueError naming the bad part.

    Only plain segments: no `..`, no absolute paths, no glob characters, which rsync's
    include patterns (used to delete one file) would read as wildcards.
    """
    path = PurePosixPath(relative)
    if not relative or path.is_absolute():
        raise ValueError(f"Path {relative!r} must be relative, such as node1/2026/01/31/call.wav.")
    for segment in path.parts:
        if not SEGMENT.match(segment):
            raise ValueError(
                f"Path {relative!r}: segment {segment!r} may hold only letters, digits, '.', '_' and '-'."
            )
    return path


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Rsync:
    """Runs rsync against targets with an overall timeout and an I/O timeout."""

    def __init__(self, *, timeout: int = 600, io_timeout: int = 60, ssh_command: str = SSH_COMMAND) -> None:
        self.timeout = timeout
        self.io_timeout = io_timeout
        self.ssh_command = ssh_command

    # -- the three operations --

    def push(
        self, root: Path, relative: str, target: Target, directory: str, *, size: int, sha256: str
    ) -> Result:
        """Copy `root/relative` to `target/directory/relative` and prove it arrived intact.

        Raises ChecksumMismatch (not retryable) when the local file is no longer the one
        registered, and ChecksumMismatch (retryable) when the remote copy differs after the
        transfer.
        """
        path = check_relative_path(relative)
        source = root / path
        self._check_source(source, size=size, sha256=sha256)
        dest = target.join(directory) + "/"
        # root/./relative with --relative recreates the dated directories on the target.
        anchored = f"{root}/./{path}"
        result = self._run(target, ["-a", "--checksum", "--relative", "-i", anchored, dest])
        self.verify(root, relative, target, directory, size=size)
        return result

    def verify(self, root: Path, relative: str, target: Target, directory: str, *, size: int) -> RemoteFile:
        """Prove the remote copy has the local file's size and content, or raise."""
        path = check_relative_path(relative)
        anchored = f"{root}/./{path}"
        dest = target.join(directory) + "/"
        remote = self.stat(target, directory, relative)
        if remote is None:
            raise RsyncError(f"{relative} is not on {target.url} after the transfer.", retryable=True)
        if remote.size != size:
            raise ChecksumMismatch(
                f"{relative} on {target.url} has {remote.size} bytes, expected {size}.", retryable=True
            )
        # A dry run comparing whole-file checksums: any itemized file means the contents differ.
        dry = self._run(target, ["-a", "--checksum", "--relative", "-n", "-i", anchored, dest])
        differing = [line for line in dry.changes if line[:2] in ("<f", ">f")]
        if differing:
            raise ChecksumMismatch(
                f"{relative} on {target.url} differs from the local file ({differing[0].split()[0]}).",
                retryable=True,
            )
        return remote

    def stat(self, target: Target, directory: str, relative: str) -> RemoteFile | None:
        """What the target has at `directory/relative`, or None when it has nothing there."""
        check_relative_path(relative)
        address = target.join(directory, relative)
        try:
            result = self._run(target, ["--list-only", "--no-human-readable", address])
        except RsyncError as exc:
            # rsync says "No such file or directory" and exits 23 for a missing path.
            if exc.exit_code == 23 and "No such file or directory" in str(exc):
                return None
            raise
        for line in result.changes:
            match = LIST_LINE.match(line)
            if match and match["mode"].startswith("-"):
                return RemoteFile(name=match["name"], size=int(re.sub(r"[,.]", "", match["size"])))
        return None

    def delete(self, target: Target, directory: str, relative: str, *, empty_dir: Path) -> bool:
        """Delete `directory/relative` on the target; False when it was not there.

        rsync has no "remove this remote file": an empty source directory synced with
        --delete onto the file's directory, with a filter that includes only that name,
        deletes exactly that file and protects its neighbours (excluded files are never
        deleted without --delete-excluded).
        """
        path = check_relative_path(relative)
        if self.stat(target, directory, relative) is None:
            return False
        dest = target.join(directory, str(path.parent)) + "/"
        self._run(
            target,
            ["-r", "--delete", "-i", f"--include=/{path.name}", "--exclude=*", f"{empty_dir}/", dest],
        )
        if self.stat(target, directory, relative) is not None:
            raise RsyncError(f"{relative} is still on {target.url} after deleting it.", retryable=True)
        return True

    # -- running rsync --

    def _check_source(self, source: Path, *, size: int, sha256: str) -> None:
        if not source.is_file():
            raise RsyncError(f"{source} does not exist on this node.", retryable=False)
        if source.stat().st_size != size or sha256_of(source) != sha256:
            raise ChecksumMismatch(
                f"{source} is not the file that was registered (size or SHA-256 changed).", retryable=False
            )

    def command(self, target: Target, args: list[str]) -> list[str]:
        """The full rsync command line for `args` against `target`."""
        command = [RSYNC_BIN, f"--timeout={self.io_timeout}"]
        if target.is_daemon:
            command.append(f"--contimeout={min(self.io_timeout, 30)}")
        elif target.is_ssh:
            command += ["-e", self.ssh_command]
        return command + args

    def _run(self, target: Target, args: list[str]) -> Result:
        command = self.command(target, args)
        try:
            done = subprocess.run(  # noqa: S603 - a fixed binary and arguments, no shell
                command, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise RsyncError(f"{RSYNC_BIN} is not installed on this node.", retryable=False) from None
        except subprocess.TimeoutExpired:
            raise RsyncError(
                f"rsync to {target.url} took longer than {self.timeout}s and was stopped.", retryable=True
            ) from None
        if done.returncode != 0:
            raise classify(done.returncode, done.stderr, target)
        return Result(changes=[line for line in done.stdout.splitlines() if line.strip()])


def classify(exit_code: int, stderr: str, target: Target) -> RsyncError:
    """The RsyncError for an rsync exit code, with rsync's own last words."""
    meaning, retryable = EXIT_CODES.get(exit_code, (f"exit code {exit_code}", False))
    detail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:] if line.strip())
    message = f"rsync to {target.url} failed ({exit_code}: {meaning})"
    if detail:
        message += f": {detail}"
    return RsyncError(message, retryable=retryable, exit_code=exit_code)
