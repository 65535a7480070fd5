"""Push to a real OpenSIPS: a gateway written to the shared `dr_gateways` table is in use
after the node's reload task ran, without restarting OpenSIPS; with OpenSIPS stopped the
change stays pending with the error shown; the node page reads the real OpenSIPS. Runs
with OPENSIPS_BIN (or opensips on PATH) and the test database on MariaDB, which OpenSIPS
reads its tables from."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from apps.nodes import sync, tasks
from apps.nodes.models import EngineSync
from apps.opensips.models import TABLE_VERSIONS, DrGateway, Version
from engines.opensips import MIClient, MIUnavailable
from tests.factories import NodeFactory
from tests.opensips import live
from tests.ports import free_port

OPENSIPS_BIN = os.environ.get("OPENSIPS_BIN") or shutil.which("opensips")

CFG = """\
log_level = 3
stderror_enabled = yes
syslog_enabled = no
udp_workers = 1
socket = udp:127.0.0.1:{sip_port}
{mpath}
loadmodule "proto_udp.so"
loadmodule "httpd.so"
loadmodule "mi_http.so"
loadmodule "db_mysql.so"
loadmodule "tm.so"
loadmodule "drouting.so"
modparam("httpd", "ip", "127.0.0.1")
modparam("httpd", "port", {mi_port})
modparam("drouting", "db_url", "{db_url}")
modparam("drouting", "persistent_state", 0)

route {{
    exit;
}}
"""


def _db_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"mysql://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}{port}/{db['NAME']}"


@pytest.fixture
def opensips(transactional_db, tmp_path, settings):
    if not OPENSIPS_BIN:
        pytest.skip("OpenSIPS not found: set OPENSIPS_BIN or put opensips on PATH")
    if connection.vendor != "mysql":
        pytest.skip(
            "OpenSIPS reads dr_gateways from MariaDB: run with DATABASE_URL=mysql://… "
            f"(the test database is {connection.vendor})"
        )
    # A transactional test empties every table after it, the version rows OpenSIPS checks too.
    for table in ("dr_gateways", "dr_rules", "dr_carriers", "dr_groups"):
        Version.objects.update_or_create(table_name=table, defaults={"table_version": TABLE_VERSIONS[table]})
    modules = live.modules_dir(Path(OPENSIPS_BIN))
    mi_port = free_port()
    cfg = tmp_path / "opensips.cfg"
    cfg.write_text(
        CFG.format(
            sip_port=free_port(),
            mi_port=mi_port,
            db_url=_db_url(),
            mpath=f'mpath = "{modules}"' if modules else "",
        )
    )
    log = tmp_path / "opensips.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the engine binary the tester named
            [OPENSIPS_BIN, "-F", "-f", str(cfg), "-m", "64", "-M", "8"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{mi_port}/mi"
    settings.OPENSIPS_MI_URL = f"http://{{address}}:{mi_port}/mi"
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            pytest.fail(f"OpenSIPS exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            MIClient(url, timeout=0.5).version()
            break
        except MIUnavailable:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)

    def stop():
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=5)

    process.stop = stop
    process.url = url
    try:
        yield process
    finally:
        stop()


def test_a_gateway_written_to_the_table_is_in_use_after_the_nodes_reload(opensips):
    node = NodeFactory(name="node1", management_address="127.0.0.1")
    client = MIClient(opensips.url)
    assert "gw-live" not in [gateway.id for gateway in client.gateway_status()]

    DrGateway.objects.create(gwid="gw-live", address="sip:127.0.0.1:5999", description="live test")
    sync.request_reload("drouting")  # commits: transactional test
    assert EngineSync.objects.get(node=node).pending_modules == ["drouting"]

    assert tasks.reload_engine(node.pk) == "node1: reloaded drouting"

    assert "gw-live" in [gateway.id for gateway in client.gateway_status()]
    state = EngineSync.objects.get(node=node)
    assert (state.pending_modules, state.attempts) == ([], 0)
    assert state.last_success_at is not None


def test_a_stopped_opensips_keeps_the_change_pending_with_the_error(opensips):
    node = NodeFactory(name="node1", management_address="127.0.0.1")
    opensips.stop()
    sync.request_reload("drouting")

    assert tasks.reload_engine(node.pk).startswith("node1: failed (MI dr_reload at")

    state = EngineSync.objects.get(node=node)
    assert state.pending_modules == ["drouting"]
    assert state.attempts == 1
    assert "Connection refused" in state.last_error
    assert state.next_attempt_at > state.last_error_at


def test_the_node_page_shows_the_real_opensips(opensips, client):
    node = NodeFactory(name="node1", management_address="127.0.0.1")
    client.force_login(get_user_model().objects.create_superuser("operator", "op@example.com", "x"))

    html = client.get(reverse("admin:nodes_node_change", args=[node.pk])).content.decode()

    assert "OpenSIPS (3." in html
    assert '<td id="active-calls">0</td>' in html and "No live calls." in html
    # This OpenSIPS loads neither usrloc nor uac_registrant: the page names what it refused.
    assert "OpenSIPS refused ul_dump: -32601 Method not found" in html
    assert "OpenSIPS refused reg_list: -32601 Method not found" in html
