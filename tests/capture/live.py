"""A real OpenSIPS 3.6 relaying one SIPp call to another, tracing it as HEP to our listener.

The cfg is the smallest that traces the way docs/CAPTURE.md tells the product's cfg to:
tm + dialog + tracer + proto_hep, trace() with scope "d" on the initial INVITE.
"""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.opensips.live import modules_dir, require_opensips, require_sipp
from tests.ports import free_port

__all__ = ["call", "require_opensips", "require_sipp", "start_relay", "stop"]

CFG = """\
log_level=3
stderror_enabled=yes
syslog_enabled=no
udp_workers=2
socket=udp:127.0.0.1:{sip_port}
socket=hep_udp:127.0.0.1:{hep_port}
mpath="{modules}"
loadmodule "proto_udp.so"
loadmodule "proto_hep.so"
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "dialog.so"
loadmodule "tracer.so"
modparam("proto_hep", "hep_id", "[capture] 127.0.0.1:{listener_port}; transport=udp; version=3")
modparam("tracer", "trace_id", "[capture]uri=hep:capture")

route {{
    if (!mf_process_maxfwd_header(10)) {{ sl_send_reply(483, "Too Many Hops"); exit; }}
    if (has_totag()) {{
        # SIPp's uac sends no Route set and addresses ACK and BYE to us: the dialog is
        # found by its tags, and only the uac sends in-dialog requests here.
        match_dialog();
        $du = "sip:127.0.0.1:{uas_port}";
        t_relay();
        exit;
    }}
    if (is_method("INVITE")) {{
        create_dialog();
        trace("capture", "d", "sip");
        record_route();
    }}
    $du = "sip:127.0.0.1:{uas_port}";
    t_relay();
}}
"""


@dataclass
class Relay:
    sip_port: int
    uas_port: int
    process: subprocess.Popen
    log: Path


def start_relay(directory: Path, listener_port: int) -> Relay:
    """OpenSIPS on loopback relaying to a SIPp uas, both started here; skips without them."""
    binary = require_opensips()
    require_sipp()
    sip_port, uas_port, hep_port = free_port(), free_port(), free_port()
    cfg = directory / "opensips.cfg"
    cfg.write_text(
        CFG.format(
            sip_port=sip_port,
            hep_port=hep_port,
            uas_port=uas_port,
            listener_port=listener_port,
            modules=modules_dir(binary),
        )
    )
    log = directory / "opensips.log"
    with open(log, "w") as out:
        process = subprocess.Popen(  # noqa: S603 - the tester's OpenSIPS, our own cfg
            [str(binary), "-F", "-f", str(cfg), "-m", "64", "-M", "8", "-w", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 15
    while "Listening on" not in log.read_text() and "INFO:core:main" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"OpenSIPS did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    time.sleep(0.5)
    return Relay(sip_port, uas_port, process, log)


def sipp(*args: str, directory: Path, name: str) -> subprocess.Popen:
    command = ["timeout", "-k", "2", "30", require_sipp(), *args, "-nostdin", "-mp", str(free_port())]
    with open(directory / f"{name}.log", "w") as out:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603


def call(
    relay: Relay, directory: Path, *, call_id: str, hold_ms: int = 300, uas_scenario: str = "uas"
) -> int:
    """One call from a SIPp uac through `relay` to a SIPp uas; returns the uac's exit code."""
    uas = sipp(
        "-sn",
        uas_scenario,
        "-i",
        "127.0.0.1",
        "-p",
        str(relay.uas_port),
        "-m",
        "1",
        directory=directory,
        name="uas",
    )
    time.sleep(0.3)
    uac = sipp(
        f"127.0.0.1:{relay.sip_port}", "-sn", "uac", "-i", "127.0.0.1", "-p", str(free_port()),
        "-s", "4930123456", "-m", "1", "-d", str(hold_ms), "-cid_str", call_id,
        "-recv_timeout", "8000", "-timeout", "20", "-timeout_error",
        directory=directory, name="uac",
    )  # fmt: skip
    code = uac.wait(timeout=40)
    uas.wait(timeout=40)
    return code


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
