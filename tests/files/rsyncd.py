"""Real rsync daemons on loopback for file-sync tests: one per node, each with its own tree."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.ports import free_port

MODULE = "smartswitch"


def rsync_missing() -> str | None:
    """Why these tests cannot run here, or None."""
    return None if shutil.which("rsync") else "rsync is not installed (Debian package rsync)"


class RsyncDaemon:
    """`rsync --daemon` serving `root` as module `smartswitch` on 127.0.0.1:`port`."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"rsync://127.0.0.1:{self.port}/{MODULE}"

    def start(self) -> "RsyncDaemon":
        config = self.root.parent / f"rsyncd-{self.port}.conf"
        # uid/gid: a daemon started by root would otherwise write as "nobody".
        identity = "uid = 0\ngid = 0\n" if os.geteuid() == 0 else ""
        config.write_text(f"use chroot = no\n{identity}[{MODULE}]\npath = {self.root}\nread only = no\n")
        self.process = subprocess.Popen(  # noqa: S603
            [
                shutil.which("rsync"),
                "--daemon",
                "--no-detach",
                f"--config={config}",
                "--address=127.0.0.1",
                f"--port={self.port}",
                f"--log-file={self.root.parent / f'rsyncd-{self.port}.log'}",
            ]
        )
        # Ready when it accepts connections; waiting on a condition, not asserting a time.
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"rsync daemon on port {self.port} exited with {self.process.returncode}"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError(f"rsync daemon on port {self.port} never accepted connections")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Killed, not terminated: rsync takes 0.4 s to leave on SIGTERM and holds no state
            # worth a clean exit; a node's target going away is what the tests want anyway.
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
