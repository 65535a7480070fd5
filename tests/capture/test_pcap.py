"""pcap files of captured calls: read back by us and decoded as SIP by tshark, in order."""

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from apps.capture import hep, pcap
from apps.capture.collector import in_causal_order
from apps.capture.services import _message
from tests.capture.calls import answered_call

RECORDED = Path(__file__).parent / "recorded" / "opensips-call.hex"


def recorded_call() -> list[hep.HepPacket]:
    """The 13 HEP packets OpenSIPS 3.6.8 sent for one SIPp call through it (tests/capture/live.py)."""
    return [hep.parse(bytes.fromhex(line)) for line in RECORDED.read_text().split()]


def tshark_sip(path: Path) -> list[str]:
    """`tshark -r path -Y sip`: each SIP message's method or status line, in file order."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("No tshark: install Debian's tshark package.")
    result = subprocess.run(  # noqa: S603 - tshark from PATH on our own file
        [tshark, "-r", str(path), "-Y", "sip",
         "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
         "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "udp.checksum.status",
         "-e", "ip.checksum.status"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [line for line in result.stdout.splitlines() if line.strip()]


def write(tmp_path: Path, packets) -> Path:
    path = tmp_path / "call.pcap"
    with open(path, "wb") as out:
        pcap.write(out, [_message(p) for p in packets])
    return path


def test_what_is_written_reads_back_the_same():
    messages = [_message(p) for p in answered_call()]
    messages.append(pcap.Message(1, "::1", 5060, "2001:db8::1", 5070, b"OPTIONS sip:x SIP/2.0\r\n\r\n"))
    out = io.BytesIO()
    size = pcap.write(out, messages)

    assert size == len(out.getvalue())
    assert list(pcap.read(io.BytesIO(out.getvalue()))) == messages


def test_something_else_than_a_pcap_is_refused():
    with pytest.raises(pcap.PcapError):
        list(pcap.read(io.BytesIO(b"RIFF" + bytes(40))))


def test_tshark_decodes_every_message_as_sip_with_good_checksums_in_order(tmp_path):
    rows = tshark_sip(write(tmp_path, answered_call()))

    # method, status, UDP checksum status, IP checksum status (1 = good)
    assert [tuple(row.split("\t")) for row in rows] == [
        ("INVITE", "", "1", "1"),
        ("INVITE", "", "1", "1"),
        ("", "180", "1", "1"),
        ("", "180", "1", "1"),
        ("", "200", "1", "1"),
        ("", "200", "1", "1"),
        ("ACK", "", "1", "1"),
        ("ACK", "", "1", "1"),
        ("BYE", "", "1", "1"),
        ("BYE", "", "1", "1"),
        ("", "200", "1", "1"),
        ("", "200", "1", "1"),
    ]


def test_an_opensips_call_is_written_with_each_relayed_request_before_its_reply(tmp_path):
    rows = tshark_sip(write(tmp_path, in_causal_order(recorded_call())))

    summary = [row.split("\t")[0] or row.split("\t")[1] for row in rows]
    assert summary == [
        "INVITE",
        "100",
        "INVITE",
        "180",
        "180",
        "200",
        "200",
        "ACK",
        "ACK",
        "BYE",
        "BYE",
        "200",
        "200",
    ]
