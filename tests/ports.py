"""Ports for the servers the tests start on loopback (OpenSIPS, SIPp, FreeSWITCH stand-ins,
rsync, named, Redis, MariaDB, uvicorn).

Binding port 0 and closing the socket hands back a port of the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 on Debian), which every outgoing
connection on the machine draws from too: between the probe and the server's own bind,
another xdist worker's database or HTTP client could take it, and OpenSIPS then failed to
start with "Address already in use". Ports are drawn at random below that range instead,
and checked free for TCP and UDP alike (OpenSIPS listens on both).
"""

import random
import socket
from pathlib import Path

LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_everywhere(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free for TCP and UDP, outside the ephemeral range."""
    top = _ephemeral_start()
    if top - LOWEST < 1_000:  # the ephemeral range starts low here: take what the kernel gives
        return [_kernel_port() for _ in range(count)]
    ports: list[int] = []
    for _ in range(100 * count):
        port = random.randrange(LOWEST, top)
        if port not in ports and _free_everywhere(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free port on 127.0.0.1")


def free_port() -> int:
    """A loopback port free for TCP and UDP, outside the ephemeral range."""
    return free_ports(1)[0]


def _kernel_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
        if _free_everywhere(port):
            return port
    raise RuntimeError("no free port on 127.0.0.1")
