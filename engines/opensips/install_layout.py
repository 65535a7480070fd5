"""Where an OpenSIPS install keeps its modules: the directory a cfg's `mpath` must name.

OpenSIPS has no usable built-in module path: without `mpath` it hands "signaling.so" to
dlopen(), which searches only the linker's paths, and 3.6 stops with "could not open module
<signaling.so>". So every rendered cfg names the directory, found here from the binary the
node runs (its install prefix, or a build tree's modules/ beside it) or, failing that, from
the layouts the distributions' packages use.
"""

import platform
import shutil
import sysconfig
from collections.abc import Sequence
from pathlib import Path

# A module every cfg loads: a directory holding it (directly, or in a build tree's tm/tm.so)
# holds the modules.
MARKER = "tm"

# Where the distributions' layouts are looked for; tests point it at a temporary tree.
ROOT = Path("/")


class ModulesNotFound(LookupError):
    """No directory holding OpenSIPS's modules was found; `tried` lists, in order, where."""

    def __init__(self, tried: Sequence[Path], binary: Path | None) -> None:
        self.tried = tuple(tried)
        self.binary = binary
        source = f"the binary {binary}" if binary else "no opensips binary (OPENSIPS_BIN empty, none on PATH)"
        super().__init__(
            f"OpenSIPS's modules ({MARKER}.so…) not found; looked with {source} in: "
            + ", ".join(str(path) for path in self.tried)
            + ". Set OPENSIPS_MODULES_DIR to the directory holding them, or OPENSIPS_BIN to "
            "the opensips the node runs."
        )


def multiarch() -> str:
    """Debian's multiarch triplet of this machine (x86_64-linux-gnu, aarch64-linux-gnu…)."""
    return sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"


def find_binary(configured: str = "", *, path: str | None = None) -> Path | None:
    """The opensips the node runs: `configured` (OPENSIPS_BIN) when set, else the one on PATH."""
    if configured:
        return Path(configured)
    found = shutil.which("opensips", path=path)
    return Path(found) if found else None


def candidates(binary: Path | None, *, root: Path | None = None, arch: str | None = None) -> list[Path]:
    """Directories that may hold the modules, the binary's own first, then the distributions'."""
    root = ROOT if root is None else root
    arch = arch or multiarch()
    found: list[Path] = []
    if binary is not None:
        # A symlinked binary (/usr/local/bin/opensips -> /opt/opensips/sbin/opensips) is
        # looked at both where it is linked and where it lives.
        for where in dict.fromkeys((binary.absolute().parent, binary.resolve().parent)):
            prefix = where.parent
            found += [
                where / "modules",  # a build tree: modules/<name>/<name>.so beside the binary
                prefix / "lib64" / "opensips" / "modules",  # `make prefix=DIR install`
                prefix / "lib" / "opensips" / "modules",
                prefix / "lib" / arch / "opensips" / "modules",
            ]
    usr = root / "usr"
    found += [
        usr / "lib" / arch / "opensips" / "modules",  # Debian and Ubuntu packages
        usr / "lib64" / "opensips" / "modules",  # RPM packages
        usr / "lib" / "opensips" / "modules",
        usr / "local" / "lib64" / "opensips" / "modules",  # OpenSIPS's default install prefix
        usr / "local" / "lib" / "opensips" / "modules",
    ]
    return list(dict.fromkeys(found))


def holds_modules(directory: Path) -> bool:
    """Whether `directory` holds OpenSIPS modules, installed (tm.so) or built (tm/tm.so)."""
    return (directory / f"{MARKER}.so").is_file() or (directory / MARKER / f"{MARKER}.so").is_file()


def find_modules_dir(binary: Path | None, *, root: Path | None = None, arch: str | None = None) -> Path:
    """The first of `candidates` holding the modules; ModulesNotFound naming them all else."""
    tried = candidates(binary, root=root, arch=arch)
    for directory in tried:
        if holds_modules(directory):
            return directory
    raise ModulesNotFound(tried, binary)


def modules_dir(configured: str = "", *, binary: str = "", path: str | None = None) -> str:
    """The `mpath` to render: `configured` (OPENSIPS_MODULES_DIR) as given when set, else the
    directory found from `binary` (OPENSIPS_BIN; empty: `opensips` on `path`, default PATH),
    with a trailing slash; ModulesNotFound when nothing is found."""
    if configured:
        return configured
    directory = find_modules_dir(find_binary(binary, path=path))
    return f"{directory}/"
