"""Where OpenSIPS's modules are found, on the layouts installs and packages use.

Each test builds a layout in a temporary directory; the distributions' paths are looked for
under a temporary root, so what this machine has installed changes nothing.
"""

from pathlib import Path

import pytest

from engines.opensips import ModulesNotFound, find_binary, find_modules_dir, modules_dir
from engines.opensips.install_layout import candidates

ARCH = "aarch64-linux-gnu"  # not this machine's, on purpose: the triplet is a parameter


def module(directory: Path, name: str = "tm.so") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text("")
    return directory


def binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    """An empty filesystem root for the distributions' layouts."""
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


def found(opensips: Path | None, root: Path) -> Path:
    return find_modules_dir(opensips, root=root, arch=ARCH)


@pytest.mark.parametrize(
    "modules", ["lib64/opensips/modules", "lib/opensips/modules", f"lib/{ARCH}/opensips/modules"]
)
def test_an_install_prefix_holds_the_modules_of_its_binary(tmp_path, root, modules):
    # `make prefix=/opt/opensips install` puts them in lib64/opensips/modules.
    opensips = binary(tmp_path / "opt/opensips/sbin/opensips")
    module(tmp_path / "opt/opensips" / modules)
    assert found(opensips, root) == tmp_path / "opt/opensips" / modules


def test_a_build_tree_holds_them_in_modules_beside_the_binary(tmp_path, root):
    opensips = binary(tmp_path / "src/opensips/opensips")
    module(tmp_path / "src/opensips/modules/tm")  # modules/tm/tm.so: OpenSIPS looks there too
    assert found(opensips, root) == tmp_path / "src/opensips/modules"


def test_a_symlinked_binary_is_followed_to_its_prefix(tmp_path, root):
    real = binary(tmp_path / "opt/opensips/sbin/opensips")
    module(tmp_path / "opt/opensips/lib64/opensips/modules")
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    (tmp_path / "usr/local/bin/opensips").symlink_to(real)
    assert (
        found(tmp_path / "usr/local/bin/opensips", root) == tmp_path / "opt/opensips/lib64/opensips/modules"
    )


@pytest.mark.parametrize(
    "modules",
    [f"usr/lib/{ARCH}/opensips/modules", "usr/lib64/opensips/modules"],
    ids=["debian-ubuntu", "rpm"],
)
def test_a_distribution_package_holds_them_in_its_layout(root, modules):
    module(root / modules)
    assert found(None, root) == root / modules
    # The packages' /usr/sbin/opensips: its prefix (/usr) is the distribution's.
    assert found(binary(root / "usr/sbin/opensips"), root) == root / modules


def test_the_binarys_own_modules_come_before_a_distribution_package(tmp_path, root):
    module(root / f"usr/lib/{ARCH}/opensips/modules")
    opensips = binary(tmp_path / "opt/opensips/sbin/opensips")
    module(tmp_path / "opt/opensips/lib64/opensips/modules")
    assert found(opensips, root) == tmp_path / "opt/opensips/lib64/opensips/modules"


def test_a_directory_without_the_modules_does_not_count(tmp_path, root):
    opensips = binary(tmp_path / "opt/opensips/sbin/opensips")
    (tmp_path / "opt/opensips/lib64/opensips/modules").mkdir(parents=True)  # empty
    module(tmp_path / "opt/opensips/lib/opensips/modules")
    assert found(opensips, root) == tmp_path / "opt/opensips/lib/opensips/modules"


def test_nothing_found_names_every_place_looked_at(tmp_path, root):
    opensips = tmp_path / "opt/opensips/sbin/opensips"
    with pytest.raises(ModulesNotFound) as raised:
        found(opensips, root)
    assert raised.value.tried == tuple(candidates(opensips, root=root, arch=ARCH))
    message = str(raised.value)
    for place in (
        tmp_path / "opt/opensips/lib64/opensips/modules",
        tmp_path / "opt/opensips/sbin/modules",
        root / f"usr/lib/{ARCH}/opensips/modules",
        root / "usr/lib64/opensips/modules",
    ):
        assert str(place) in message
    assert str(opensips) in message
    assert "OPENSIPS_MODULES_DIR" in message


def test_nothing_found_without_a_binary_says_there_was_none(root):
    with pytest.raises(ModulesNotFound, match="no opensips binary"):
        found(None, root)


def test_the_binary_is_opensips_bin_else_the_one_on_path(tmp_path):
    on_path = binary(tmp_path / "bin/opensips")
    on_path.chmod(0o755)
    configured = str(tmp_path / "elsewhere/sbin/opensips")  # taken as given, found or not
    assert find_binary(configured, path=str(tmp_path / "bin")) == Path(configured)
    assert find_binary("", path=str(tmp_path / "bin")) == on_path
    assert find_binary("", path=str(tmp_path / "nowhere")) is None


def test_the_configured_directory_is_used_as_given(tmp_path):
    assert modules_dir("/srv/opensips/modules", binary=str(tmp_path / "none")) == "/srv/opensips/modules"


def test_a_detected_directory_is_rendered_with_a_trailing_slash(tmp_path, monkeypatch, root):
    monkeypatch.setattr("engines.opensips.install_layout.ROOT", root)
    opensips = binary(tmp_path / "opt/opensips/sbin/opensips")
    module(tmp_path / "opt/opensips/lib64/opensips/modules")
    assert modules_dir("", binary=str(opensips)) == f"{tmp_path}/opt/opensips/lib64/opensips/modules/"
    on_path = binary(tmp_path / "bin/opensips")
    on_path.chmod(0o755)
    module(tmp_path / "lib/opensips/modules")
    assert modules_dir("", path=str(tmp_path / "bin")) == f"{tmp_path}/lib/opensips/modules/"
