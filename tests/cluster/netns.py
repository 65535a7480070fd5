"""Test hosts as network namespaces: one namespace per node, joined by a bridge.

The bridge lives in a namespace of its own (the hub), so the machine's own network is never
touched: each node namespace gets a veth pair whose far end is in the hub's bridge, an
address in TEST_NET (which exists only inside these namespaces) on its `eth0`, and its
loopback. Everything made is removed by `close()`, also when a test fails half-way.

Needs root (CAP_NET_ADMIN) and iproute2; `available()` says why not when it cannot run.
"""

import ipaddress
import os
import shutil
import subprocess
import time
import uuid

TEST_NET = ipaddress.ip_network("10.213.0.0/24")
IP = shutil.which("ip") or "/usr/sbin/ip"


def available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if not os.path.exists(IP):
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"ssprobe{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
    except RuntimeError as refused:
        return f"network namespaces cannot be made here: {refused}"
    ip("netns", "delete", probe)
    return None


def ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    command = [IP, *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)  # noqa: S603 - our arguments
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


class Hosts:
    """`count` node namespaces on one bridge; `address(i)` is node i's (1-based) address."""

    def __init__(self, count: int, *, hub_address: str | None = None) -> None:
        self.hub_address = hub_address  # the bridge's own address: a client on the test network
        self.prefix = f"ss{uuid.uuid4().hex[:6]}"
        self.hub = f"{self.prefix}hub"
        self.names = [f"{self.prefix}n{i}" for i in range(1, count + 1)]
        self.made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        for name in (self.hub, *self.names):
            ip("netns", "add", name)
            self.made.append(name)
            ip("link", "set", "lo", "up", namespace=name)
        ip("link", "add", "br0", "type", "bridge", namespace=self.hub)
        ip("link", "set", "br0", "up", namespace=self.hub)
        if self.hub_address:
            ip("addr", "add", f"{self.hub_address}/{TEST_NET.prefixlen}", "dev", "br0", namespace=self.hub)
        for i, name in enumerate(self.names, start=1):
            # Made in the node's namespace, its far end moved to the hub's bridge.
            ip("link", "add", "eth0", "type", "veth", "peer", "name", f"port{i}", namespace=name)
            ip("link", "set", f"port{i}", "netns", self.hub, namespace=name)
            ip("link", "set", f"port{i}", "master", "br0", namespace=self.hub)
            ip("link", "set", f"port{i}", "up", namespace=self.hub)
            ip("addr", "add", f"{self.address(i)}/{TEST_NET.prefixlen}", "dev", "eth0", namespace=name)
            ip("link", "set", "eth0", "up", namespace=name)
        # A veth link is up once both ends are: wait for it, or a daemon started now sees it down.
        deadline = time.monotonic() + 10
        for name in self.names:
            while "LOWER_UP" not in ip("-o", "link", "show", "eth0", namespace=name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"eth0 of {name} did not come up")
                time.sleep(0.02)

    def address(self, i: int) -> str:
        return str(TEST_NET.network_address + i)

    def run(self, i: int, command: list[str], **kwargs) -> subprocess.Popen:
        """Start `command` in node i's namespace."""
        return subprocess.Popen([IP, "netns", "exec", self.names[i - 1], *command], **kwargs)  # noqa: S603

    def run_hub(self, command: list[str], **kwargs) -> subprocess.Popen:
        """Start `command` in the hub's namespace (on the bridge: see hub_address)."""
        return subprocess.Popen([IP, "netns", "exec", self.hub, *command], **kwargs)  # noqa: S603

    def holds(self, i: int, address: str) -> bool:
        """Whether node i has `address` on its eth0."""
        return f" {address}/" in ip("-o", "addr", "show", "dev", "eth0", namespace=self.names[i - 1])

    def close(self) -> None:
        # Deleting a namespace deletes its links; its processes must be gone first (the
        # caller stops them), or the namespace lingers until they exit.
        for name in reversed(self.made):
            ip("netns", "delete", name, check=False)
        self.made.clear()
