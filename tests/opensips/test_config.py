"""A node's opensips.cfg rendered from the database, and checked by OpenSIPS itself."""

import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.nodes.models import ClusterSettings
from apps.opensips.config import mysql_url, render
from engines.opensips.install_layout import holds_modules
from tests.factories import NodeFactory
from tests.opensips.live import require_opensips

pytestmark = pytest.mark.django_db


def install(prefix: Path, modules: str = "lib64/opensips/modules") -> Path:
    """A fake OpenSIPS installed under `prefix`: its binary, and tm.so where `modules` says."""
    (prefix / "sbin").mkdir(parents=True)
    binary = prefix / "sbin" / "opensips"
    binary.write_text("")
    (prefix / modules).mkdir(parents=True)
    (prefix / modules / "tm.so").write_text("")
    return binary


def mpath(text: str) -> str:
    """The one module path the cfg names."""
    found = re.findall(r'^mpath="(.*)"$', text, flags=re.MULTILINE)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def node(settings, tmp_path):
    settings.OPENSIPS_MODULES_DIR = ""
    settings.OPENSIPS_BIN = str(install(tmp_path / "opensips"))
    settings.OPENSIPS_DB_URL = "mysql://opensips:secret@db.example:3306/smartswitch"
    settings.CALL_CONTROL_URL = "http://127.0.0.1:8000/call-control/v1/"
    settings.OPENSIPS_MI_URL = "http://{address}:8888/mi"
    return NodeFactory(name="edge1", management_address="10.1.0.1", sip_address="198.51.100.1")


@pytest.fixture
def dedicated():
    return ClusterSettings.load()


@pytest.fixture
def distributing():
    cluster = ClusterSettings.load()
    cluster.shared_ip = "198.51.100.100"
    cluster.distribute_shared_ip = True
    cluster.save()
    return cluster


@pytest.fixture
def shared():
    cluster = ClusterSettings.load()
    cluster.origination_mode = ClusterSettings.OriginationMode.SHARED
    cluster.shared_ip = "198.51.100.100"
    cluster.save()
    return cluster


def cfg(node, cluster) -> str:
    return render(node, cluster)["opensips/opensips.cfg"]


def test_dedicated_mode_listens_on_the_bind_address_and_advertises_the_nodes_own(node, dedicated):
    text = cfg(node, dedicated)
    assert "socket=udp:0.0.0.0:5060 as 198.51.100.1:5060" in text
    assert "socket=tcp:0.0.0.0:5060 as 198.51.100.1:5060" in text
    assert "198.51.100.100" not in text
    assert "clusterer" not in text.split("####### Routing logic")[0].replace("# MI `clusterer", "")


def test_a_distributed_shared_ip_gets_a_socket_of_its_own_and_call_control_is_told(node, distributing):
    text = cfg(node, distributing)
    assert "socket=udp:198.51.100.100:5060\n" in text
    assert "socket=udp:0.0.0.0:5060 as 198.51.100.1:5060" in text
    assert "$json(cc_req/local_ip) = $socket_in(ip);" in text


def test_dedicated_mode_may_bind_one_address(node, dedicated):
    dedicated.bind_address = "198.51.100.1"
    dedicated.save()
    assert "socket=udp:198.51.100.1:5060 as 198.51.100.1:5060" in cfg(node, dedicated)


def test_shared_mode_listens_on_the_shared_ip_and_shares_the_vip_tag(node, shared):
    NodeFactory(name="edge2", management_address="10.1.0.2", sip_address="198.51.100.2")
    text = cfg(node, shared)
    assert "socket=udp:198.51.100.100:5060\n" in text
    assert " as 198.51.100.1" not in text
    assert '"uac_registrant", "enable_clustering", 1' in text
    assert f"cluster_id=1,node_id={node.pk},url=bin:10.1.0.1:5566" in text
    assert "url=bin:10.1.0.2:5566" in text
    assert '"sharing_tag", "vip/1=backup"' in text


def test_mi_listens_on_the_management_address_only(node, dedicated):
    text = cfg(node, dedicated)
    assert 'modparam("httpd", "ip", "10.1.0.1")' in text
    assert 'modparam("httpd", "port", 8888)' in text
    assert 'modparam("mi_http", "root", "mi")' in text


def test_the_call_control_url_and_the_nodes_secret_are_in_the_file(node, dedicated):
    text = cfg(node, dedicated)
    assert '"http://127.0.0.1:8000/call-control/v1/authorize"' in text
    assert f"Authorization: Bearer {node.call_control_secret}" in text
    assert '$json(cc_req/node) = "edge1";' in text


def test_calls_end_by_themselves_after_the_ack_timeout_and_failed_pings(node, dedicated, settings):
    settings.OPENSIPS_ACK_TIMEOUT, settings.OPENSIPS_PING_INTERVAL = 7, 45
    text = cfg(node, dedicated)
    assert 'modparam("dialog", "options_ping_interval", 45)' in text
    # The answer starts the ACK deadline; the dialog's own timer stays the granted duration
    # (a short one would walk the dialog module's sorted timer list at every answer).
    assert "timer_route[ack_deadline, 1]" in text and "$var(due) = $Ts - 7;" in text
    assert "$DLG_timeout = 7;" not in text
    # Both parties pinged; every call (on-net too) gets its dialog in one place.
    assert text.count('create_dialog("BPp");') == 1
    # ... but FreeSWITCH's second leg of a call that needs media, which the first one's ends.
    assert text.count("create_dialog(") == 2
    assert text.count("create_dialog();") == 1
    # The caller hears 100 before call control is asked.
    authorize = text[text.index("route[authorize] {") :]
    assert authorize.index('send_reply(100, "Trying")') < authorize.index("rest_post(")


def test_the_modules_use_the_opensips_db_url(node, dedicated):
    text = cfg(node, dedicated)
    # dialog, acc, permissions, auth_db, usrloc, drouting and uac_registrant: one database.
    assert text.count('"db_url", "mysql://opensips:secret@db.example:3306/smartswitch"') == 7
    assert text.count('"db_url"') == 7


def test_each_node_keeps_its_dialogs_in_a_table_of_its_own(node, dedicated, settings):
    text = cfg(node, dedicated)
    assert f'modparam("dialog", "table_name", "dialog_{node.pk}")' in text
    # By default written at shutdown only: nothing per call.
    assert 'modparam("dialog", "db_mode", 3)' in text
    assert "db_update_period" not in text
    settings.OPENSIPS_DIALOG_FLUSH = 3
    text = cfg(node, dedicated)
    assert 'modparam("dialog", "db_mode", 2)' in text
    assert 'modparam("dialog", "db_update_period", 3)' in text
    # Without its values (max_duration, contacts, acc's context) a restored dialog could
    # neither end the call in time nor write its CDR.
    assert 'modparam("dialog", "db_flush_vals_profiles", 1)' in text


def test_the_file_descriptors_opensips_watches_are_bounded_by_the_setting(node, dedicated, settings):
    # Not the process's rlimit, which carriers raise high: OpenSIPS 3.6 walks its whole
    # table of descriptors at every add and removal (twice per call), so its size is CPU.
    assert "\nopen_files_limit=4096\n" in cfg(node, dedicated)
    settings.OPENSIPS_OPEN_FILES = 20000
    text = cfg(node, dedicated)
    assert "\nopen_files_limit=20000\n" in text
    assert text.count("open_files_limit=") == 1


def test_without_opensips_db_url_the_mariadb_database_is_used():
    database = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "smartswitch",
        "USER": "switch",
        "PASSWORD": "p@ss",
        "HOST": "10.1.0.9",
        "PORT": "3306",
    }
    assert mysql_url(database) == "mysql://switch:p%40ss@10.1.0.9:3306/smartswitch"


@pytest.mark.parametrize("engine", ["django.db.backends.postgresql", "django.db.backends.sqlite3"])
def test_rendering_refuses_a_database_opensips_cannot_use(engine):
    with pytest.raises(CommandError, match="must be MariaDB/MySQL"):
        mysql_url({"ENGINE": engine, "NAME": "x"})


def test_render_node_config_says_why_it_cannot_render(node, dedicated, settings, tmp_path):
    settings.OPENSIPS_DB_URL = ""
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
        pytest.skip("The test database is MariaDB: rendering works without OPENSIPS_DB_URL.")
    with pytest.raises(CommandError, match="set OPENSIPS_DB_URL"):
        call_command("render_node_config", "--node", "edge1", "--out", str(tmp_path))


def test_the_command_writes_the_file_readable_by_the_group_only(node, dedicated, tmp_path):
    call_command("render_node_config", "--node", "edge1", "--out", str(tmp_path))
    written = tmp_path / "opensips" / "opensips.cfg"
    assert written.stat().st_mode & 0o777 == 0o640
    assert node.call_control_secret in written.read_text()


def test_without_opensips_modules_dir_the_cfg_names_the_modules_of_the_nodes_binary(
    node, dedicated, tmp_path
):
    assert mpath(cfg(node, dedicated)) == f"{tmp_path}/opensips/lib64/opensips/modules/"


def test_opensips_modules_dir_is_rendered_as_given(node, dedicated, settings):
    settings.OPENSIPS_MODULES_DIR = "/srv/opensips/modules/"
    assert mpath(cfg(node, dedicated)) == "/srv/opensips/modules/"


def test_render_node_config_names_where_it_looked_when_no_modules_are_found(
    node, dedicated, settings, tmp_path, monkeypatch
):
    # Nothing under the binary's prefix, nor in the distributions' layouts (under an empty root).
    monkeypatch.setattr("engines.opensips.install_layout.ROOT", tmp_path / "root")
    settings.OPENSIPS_BIN = str(tmp_path / "bare" / "sbin" / "opensips")
    with pytest.raises(CommandError) as raised:
        call_command("render_node_config", "--node", "edge1", "--out", str(tmp_path / "out"))
    message = str(raised.value)
    assert "OPENSIPS_MODULES_DIR" in message
    assert f"{tmp_path}/bare/lib64/opensips/modules" in message
    assert f"{tmp_path}/root/usr/lib64/opensips/modules" in message
    assert not (tmp_path / "out" / "opensips").exists()


@pytest.mark.parametrize("mode", ["dedicated", "shared", "distributing"])
def test_opensips_accepts_the_rendered_file(node, mode, request, tmp_path, settings):
    # Without OPENSIPS_MODULES_DIR, as on a fresh install: the modules are found from the binary.
    binary = require_opensips()
    settings.OPENSIPS_BIN = str(binary)
    text = cfg(node, request.getfixturevalue(mode))
    assert holds_modules(Path(mpath(text)))
    path = tmp_path / "opensips.cfg"
    path.write_text(text)
    check = subprocess.run(  # noqa: S603 - the engine binary the tester named
        [str(binary), "-C", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stderr[-3000:]


def test_every_invite_asks_call_control_and_accounts_are_user_at_domain(node, dedicated):
    text = cfg(node, dedicated)
    main = text[text.index("route {") : text.index("route[in_dialog]")]
    # No shortcut past call control for a registered callee (issue 14): it is call control
    # that answers with the account's AOR, and the lookup happens per target.
    assert "lookup(" not in main and "route(authorize);" in main
    assert 'modparam("usrloc", "use_domain", 1)' in text
    assert "$json(cc_req/callee_domain) = $rd;" in text
    assert 'lookup("location", , $var(aor))' in text
    # Suppliers' gateways (address group 2) deliver calls to our DIDs.
    assert "check_source_address(2, $avp(peer_ctx))" in text
