"""Finding OpenSIPS and SIPp on this machine, shared by the config and live tests.

Not a conftest: tests/opensips/conftest.py belongs to the MI tests; these modules import it.
"""

import os
import shutil
from pathlib import Path

import pytest

from engines.opensips.install_layout import ModulesNotFound
from engines.opensips.install_layout import modules_dir as find_modules_dir


def opensips_binary() -> Path | None:
    """OPENSIPS_BIN, else `opensips` on PATH."""
    configured = os.environ.get("OPENSIPS_BIN")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    found = shutil.which("opensips")
    return Path(found) if found else None


def modules_dir(binary: Path) -> str:
    """OPENSIPS_MODULES_DIR, else the modules the product finds for `binary` (the renderer's
    own detection, engines.opensips.install_layout); skips, saying where it looked, when none."""
    try:
        return find_modules_dir(os.environ.get("OPENSIPS_MODULES_DIR", ""), binary=str(binary))
    except ModulesNotFound as error:
        pytest.skip(str(error))


def require_opensips() -> Path:
    binary = opensips_binary()
    if binary is None:
        pytest.skip(
            "No OpenSIPS: put `opensips` on PATH or set OPENSIPS_BIN (and OPENSIPS_MODULES_DIR "
            "where its modules are not found from it: engines.opensips.install_layout)."
        )
    return binary


def require_sipp() -> str:
    found = shutil.which("sipp")
    if found is None:
        pytest.skip("No SIPp: install Debian's sip-tester package (binary `sipp`).")
    return found
