"""The OpenSIPS MI client: what it sends, how it reads OpenSIPS's replies and failures, and
that it never waits longer than its timeout. Then the same against a real OpenSIPS (and a
real call through it, with SIPp at both ends) where those are installed."""

import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engines import EngineError
from engines.opensips import DialogEnd, DialogState, MIClient, MIError, MIUnavailable, url_for
from tests.engines import (
    DIALOG_NOT_FOUND,
    METHOD_NOT_FOUND,
    NO_SUCH_DIALOG,
    OPERATION_FAILED,
    VERSION,
    Raw,
    RecordedMI,
)
from tests.opensips.live import modules_dir
from tests.ports import free_port


@pytest.fixture
def mi():
    with RecordedMI() as server:
        yield server


# --- Requests and replies --------------------------------------------------------------


def test_a_command_is_posted_as_json_rpc_with_named_params(mi):
    result = MIClient(mi.url).execute("dlg_list", {"callid": "a@b", "from_tag": "x"})

    assert result == "OK"
    [request] = mi.requests
    assert request["jsonrpc"] == "2.0"
    assert request["method"] == "dlg_list"
    assert request["params"] == {"callid": "a@b", "from_tag": "x"}
    assert isinstance(request["id"], str)  # python-opensips's request ids are strings
    # mi_http reads no body that is not sent as JSON.
    assert mi.meta == [("/mi", "application/json")]


def test_a_command_without_params_sends_an_empty_object_and_returns_the_result(mi):
    mi.replies["version"] = VERSION
    assert MIClient(mi.url).execute("version") == {"Server": "OpenSIPS (3.6.8 (x86_64/linux))"}
    assert mi.requests[0]["params"] == {}


def test_end_dialog_sends_the_call_id_as_dialog_id_and_reports_the_call_ended(mi):
    assert MIClient(mi.url).end_dialog("3c2a7f@pbx.example.com") is DialogEnd.ENDED
    assert [(r["method"], r["params"]) for r in mi.requests] == [
        ("dlg_end_dlg", {"dialog_id": "3c2a7f@pbx.example.com"})
    ]


def test_a_dialog_opensips_does_not_know_is_reported_gone_not_raised(mi):
    mi.replies["dlg_end_dlg"] = DIALOG_NOT_FOUND
    outcome = MIClient(mi.url).end_dialog("over@pbx")
    assert outcome is DialogEnd.GONE
    assert outcome == "gone"


def test_a_call_id_that_reads_as_a_dialog_id_is_ended_by_the_id_opensips_lists_for_it(mi):
    # OpenSIPS reads "<hex>.<hex>" as a dialog ID before trying it as a Call-ID: sending it
    # straight to dlg_end_dlg could end whichever call has that ID.
    mi.replies["dlg_list"] = {"result": {"Dialog": {"ID": "13f.2fb64e72", "callid": "1a.2b", "state": 4}}}
    assert MIClient(mi.url).end_dialog("1a.2b") is DialogEnd.ENDED
    assert [(r["method"], r["params"]) for r in mi.requests] == [
        ("dlg_list", {"callid": "1a.2b"}),
        ("dlg_end_dlg", {"dialog_id": "13f.2fb64e72"}),
    ]


def test_a_call_id_that_reads_as_a_dialog_id_and_is_not_listed_is_gone(mi):
    mi.replies["dlg_list"] = NO_SUCH_DIALOG
    assert MIClient(mi.url).end_dialog("1a.2b") is DialogEnd.GONE
    assert mi.calls("dlg_end_dlg") == []


def test_a_json_rpc_error_in_an_http_200_raises_mi_error_with_code_and_message(mi):
    mi.replies["dlg_restore_db"] = METHOD_NOT_FOUND
    with pytest.raises(MIError) as raised:
        MIClient(mi.url).execute("dlg_restore_db", {})
    error = raised.value
    assert (error.code, error.message, error.command, error.retryable) == (
        -32601,
        "Method not found",
        "dlg_restore_db",
        False,
    )
    assert str(error) == "MI dlg_restore_db: -32601 Method not found"
    assert isinstance(error, EngineError)


def test_end_dialog_raises_the_errors_that_are_not_a_missing_dialog(mi):
    mi.replies["dlg_end_dlg"] = OPERATION_FAILED
    with pytest.raises(MIError, match="500 Operation failed") as raised:
        MIClient(mi.url).end_dialog("up@pbx")
    assert raised.value.code == 500


@pytest.mark.parametrize(
    ("reply", "code", "retryable"),
    [
        (Raw(400), 400, False),  # mi_http found no request in the body
        (Raw(200, b"<html>not OpenSIPS</html>"), -32700, False),
        (Raw(200, b'{"jsonrpc": "2.0", "id": 1}'), -32700, False),
        (Raw(200, b'["OK"]'), -32700, False),
        (Raw(200, b'{"jsonrpc": "2.0", "result": "OK", "id": -1}'), -32603, False),  # not our id
    ],
    ids=["http-400", "not-json", "no-result", "not-an-object", "other-id"],
)
def test_a_reply_that_is_not_a_json_rpc_answer_to_our_request_is_an_mi_error(mi, reply, code, retryable):
    mi.replies["uptime"] = reply
    with pytest.raises(MIError) as raised:
        MIClient(mi.url).execute("uptime", {})
    assert (raised.value.code, raised.value.retryable) == (code, retryable)


# --- Unreachable engines and timeouts ---------------------------------------------------


def test_a_refused_connection_is_mi_unavailable():
    url = f"http://127.0.0.1:{free_port()}/mi"
    with pytest.raises(MIUnavailable, match="Connection refused") as raised:
        MIClient(url, timeout=1).execute("uptime", {})
    assert raised.value.retryable is True
    assert url in str(raised.value)


def test_an_engine_that_never_answers_is_mi_unavailable_within_the_timeout():
    # The kernel accepts the connection into the backlog; nothing ever reads or answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/mi"
        started = time.monotonic()
        with pytest.raises(MIUnavailable, match=r"no answer within 0\.3s"):
            MIClient(url, timeout=0.3).end_dialog("stuck@pbx")
        assert 0.25 <= time.monotonic() - started < 1.0


def test_an_engine_that_trickles_its_reply_cannot_hold_the_caller_past_the_timeout():
    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):  # one byte every 0.1 s: each read is quick, the whole is not
                if stop.wait(0.1):
                    return
                self.wfile.write(b" ")
                self.wfile.flush()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(MIUnavailable, match="no answer within"):
            MIClient(f"http://127.0.0.1:{server.server_address[1]}/mi", timeout=0.5).execute("uptime", {})
        assert time.monotonic() - started < 1.2
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("10.0.0.7", "http://10.0.0.7:8888/mi"),
        ("2001:db8::7", "http://[2001:db8::7]:8888/mi"),
        ("[2001:db8::7]", "http://[2001:db8::7]:8888/mi"),
    ],
)
def test_the_mi_url_of_a_node_puts_an_ipv6_address_in_brackets(address, url):
    assert url_for("http://{address}:8888/mi", address) == url


def test_an_engine_on_an_ipv6_address_is_reached():
    try:
        server = RecordedMI("::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        assert MIClient(url_for(server.template, "::1")).end_dialog("v6@pbx") is DialogEnd.ENDED
    assert server.calls("dlg_end_dlg") == [{"dialog_id": "v6@pbx"}]


@pytest.mark.parametrize(
    ("url", "timeout"),
    [("ftp://10.0.0.1/mi", 2), ("http:///mi", 2), ("10.0.0.1:8888/mi", 2), ("http://10.0.0.1:8888/mi", 0)],
)
def test_a_client_refuses_urls_and_timeouts_it_cannot_use(url, timeout):
    with pytest.raises(ValueError):
        MIClient(url, timeout=timeout)


# --- A real OpenSIPS ------------------------------------------------------------------------

OPENSIPS_BIN = os.environ.get("OPENSIPS_BIN") or shutil.which("opensips")
SIPP_BIN = shutil.which("sipp")
MODULES = ("proto_udp", "httpd", "mi_http", "tm", "sl", "rr", "sipmsgops", "dialog")

# Just enough to hold a call as a dialog (ended with BYEs on timeout or over MI) and
# relay it to one far end; SIPp's ACK and BYE carry no Route, so match_dialog routes them.
OPENSIPS_CFG = """\
log_level = 3
stderror_enabled = yes
syslog_enabled = no
udp_workers = 2
socket = udp:127.0.0.1:{sip_port}
{mpath}
{loadmodules}
modparam("httpd", "ip", "127.0.0.1")
modparam("httpd", "port", {mi_port})
modparam("dialog", "profiles_with_value", "peer")

route {{
    if (has_totag()) {{
        if (loose_route() || match_dialog())
            t_relay();
        exit;
    }}
    if (is_method("INVITE")) {{
        create_dialog("B");
        set_dlg_profile("peer", "42");
        $dlg_val(peer) = "42";
        record_route();
        $du = "sip:127.0.0.1:{far_end_port}";
        t_relay();
    }}
    exit;
}}
"""


class LiveOpenSIPS:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.sip_port = free_port()
        self.far_end_port = free_port()
        mi_port = free_port()
        modules = modules_dir(Path(binary))
        cfg = workdir / "opensips.cfg"
        cfg.write_text(
            OPENSIPS_CFG.format(
                sip_port=self.sip_port,
                far_end_port=self.far_end_port,
                mi_port=mi_port,
                mpath=f'mpath = "{modules}"',
                loadmodules="\n".join(f'loadmodule "{name}.so"' for name in MODULES),
            )
        )
        self.log = workdir / "opensips.log"
        self.url = f"http://127.0.0.1:{mi_port}/mi"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the engine binary the tester named
                [binary, "-F", "-f", str(cfg), "-m", "64", "-M", "8"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                start_new_session=True,
            )

    def wait_ready(self, seconds: float = 15) -> None:
        client = MIClient(self.url, timeout=0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                if "could not open module" in tail or "failed to load module" in tail.lower():
                    pytest.skip(
                        f"this OpenSIPS lacks a module the test needs ({', '.join(MODULES)}):\n{tail}"
                    )
                pytest.fail(f"OpenSIPS exited with {self.process.returncode}:\n{tail}")
            try:
                client.execute("version", {})
                return
            except MIUnavailable:
                time.sleep(0.1)
        pytest.fail(f"OpenSIPS's MI did not answer within {seconds}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the main process stops its workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=5)


@pytest.fixture
def opensips(tmp_path):
    if not OPENSIPS_BIN:
        pytest.skip("OpenSIPS not found: set OPENSIPS_BIN or put opensips on PATH")
    engine = LiveOpenSIPS(OPENSIPS_BIN, tmp_path)
    try:
        engine.wait_ready()
        yield engine
    finally:
        engine.stop()


def test_a_real_opensips_answers_version_and_uptime(opensips):
    client = MIClient(opensips.url, timeout=2)
    assert client.execute("version", {})["Server"].startswith("OpenSIPS (")
    assert set(client.execute("uptime", {})) >= {"Now", "Up since", "Up time"}
    assert client.version().startswith("OpenSIPS (3.")
    assert client.uptime().seconds >= 0


def test_a_real_opensips_answers_the_commands_as_recorded(opensips):
    client = MIClient(opensips.url, timeout=2)
    stats = client.statistics(["dialog:", "core:", "tm:"])
    assert stats["dialog:active_dialogs"] == 0
    assert "core:rcv_requests" in stats and "tm:UAS_transactions" in stats
    assert client.dialogs() == []
    assert client.dialogs(context=False) == []
    assert client.profile_size("peer", "42") == 0
    with pytest.raises(MIError) as raised:
        client.profile_size("no_such_profile")
    assert (raised.value.code, raised.value.message) == (404, "Profile not found")
    # This OpenSIPS has no usrloc, drouting or uac_registrant: those commands are unknown.
    with pytest.raises(MIError) as raised:
        client.reload("drouting")
    assert raised.value.code == -32601


def test_a_real_opensips_reports_unknown_dialogs_and_commands_as_recorded(opensips):
    client = MIClient(opensips.url, timeout=2)
    assert client.end_dialog("never-seen@pbx") is DialogEnd.GONE
    assert client.end_dialog("1a.2b") is DialogEnd.GONE  # looked up with dlg_list first
    with pytest.raises(MIError) as raised:
        client.execute("dlg_end_dlg", {"dialog_id": "never-seen@pbx"})
    assert (raised.value.code, raised.value.message) == (
        DIALOG_NOT_FOUND["error"]["code"],
        DIALOG_NOT_FOUND["error"]["message"],
    )
    with pytest.raises(MIError) as raised:
        client.execute("dlg_list", {"callid": "1a.2b"})
    assert (raised.value.code, raised.value.message) == (404, NO_SUCH_DIALOG["error"]["message"])
    with pytest.raises(MIError) as raised:
        client.execute("no_such_command", {})
    assert (raised.value.code, raised.value.message) == (-32601, METHOD_NOT_FOUND["error"]["message"])


# The caller and the callee of the call OpenSIPS ends: each waits for the BYE and
# answers it, so each SIPp exits 0 only if the call was really ended on its side.
UAC_XML = """\
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call ended by the switch">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: [service] <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

  ]]></send>
</scenario>
"""

UAS_XML = """\
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer and wait for the BYE">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

  ]]></send>
</scenario>
"""


def _sipp(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - SIPp from PATH, our own arguments
        [
            SIPP_BIN,
            *args,
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-recv_timeout",
            "20000",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=(tmp_path / f"{name}.out").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_real_call_is_ended_on_both_sides_by_its_call_id(opensips, tmp_path):
    if not SIPP_BIN:
        pytest.skip("SIPp not found: install the sip-tester package")
    (tmp_path / "uac.xml").write_text(UAC_XML)
    (tmp_path / "uas.xml").write_text(UAS_XML)
    client = MIClient(opensips.url, timeout=2)
    callee = _sipp(tmp_path, "uas", "-sf", "uas.xml", "-p", str(opensips.far_end_port))
    caller = None
    try:
        time.sleep(0.5)  # let the callee bind its port
        caller = _sipp(
            tmp_path,
            "uac",
            "-sf",
            "uac.xml",
            f"127.0.0.1:{opensips.sip_port}",
            "-s",
            "999",
            "-p",
            str(free_port()),
            "-cid_str",
            "online-billing-%u@test",
        )
        deadline = time.monotonic() + 10
        while True:  # until the call is answered (dialog state 4, confirmed)
            try:
                if client.execute("dlg_list", {"callid": "online-billing-1@test"})["Dialog"]["state"] == 4:
                    break
            except MIError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "uac.out").read_text(errors="replace")
            time.sleep(0.1)

        [dialog] = client.dialogs(page_size=1)
        assert (dialog.call_id, dialog.state, dialog.values, dialog.profiles) == (
            "online-billing-1@test",
            DialogState.CONFIRMED,
            {"peer": "42"},
            (("peer", "42"),),
        )
        assert dialog.to_uri.startswith("sip:999@")
        assert client.statistics(["dialog:"])["dialog:active_dialogs"] == 1
        assert client.profile_size("peer", "42") == 1

        assert client.end_dialog("online-billing-1@test") is DialogEnd.ENDED

        assert caller.wait(timeout=15) == 0, (tmp_path / "uac.out").read_text(errors="replace")
        assert callee.wait(timeout=15) == 0, (tmp_path / "uas.out").read_text(errors="replace")
        assert client.end_dialog("online-billing-1@test") is DialogEnd.GONE
    finally:
        for process in (caller, callee):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait(timeout=5)
