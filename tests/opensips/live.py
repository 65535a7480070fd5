"""Finding OpenSIPS and SIPp on this machine, shared by the config and live tests.

Not a conftest: tests/opensips/conftest.py belongs to the MI tests; these modules import it.
"""

import os
import shutil
import socket
from pathlib import Path

import pytest


def opensips_binary() -> Path | None:
    """OPENSIPS_BIN, else `opensips` on PATH."""
    configured = os.environ.get("OPENSIPS_BIN")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    found = shutil.which("opensips")
    return Path(found) if found else None


def modules_dir(binary: Path) -> str:
    """OPENSIPS_MODULES_DIR, else the modules of a build tree beside the binary or of its install
    prefix (`make prefix=DIR install` puts them in DIR/lib64/opensips/modules), else ""."""
    configured = os.environ.get("OPENSIPS_MODULES_DIR")
    if configured:
        return configured
    here = binary.resolve().parent
    if (here / "modules" / "tm" / "tm.so").is_file():
        return f"{here / 'modules'}/"
    for lib in ("lib64", "lib", f"lib/{os.uname().machine}-linux-gnu"):
        installed = here.parent / lib / "opensips" / "modules"
        if (installed / "tm.so").is_file():
            return f"{installed}/"
    return ""


def require_opensips() -> Path:
    binary = opensips_binary()
    if binary is None:
        pytest.skip(
            "No OpenSIPS: put `opensips` on PATH or set OPENSIPS_BIN (and OPENSIPS_MODULES_DIR "
            "for a build tree without modules/ beside the binary)."
        )
    return binary


def require_sipp() -> str:
    found = shutil.which("sipp")
    if found is None:
        pytest.skip("No SIPp: install Debian's sip-tester package (binary `sipp`).")
    return found


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free on 127.0.0.1 for UDP and TCP alike (OpenSIPS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1")
