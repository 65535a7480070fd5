"""HEPv3 decoding: packets laid out by hand from the HEP3 spec, and one OpenSIPS 3.6 sent."""

import struct
import zlib
from pathlib import Path

import pytest

from apps.capture import hep

RECORDED = Path(__file__).parent / "recorded"


def chunk(kind: int, data: bytes, vendor: int = 0) -> bytes:
    return struct.pack("!HHH", vendor, kind, 6 + len(data)) + data


def packet(*chunks: bytes) -> bytes:
    body = b"".join(chunks)
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


SIP = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: abc\r\n\r\n"
V4 = [
    chunk(0x01, b"\x02"),
    chunk(0x02, b"\x11"),
    chunk(0x03, bytes([10, 0, 0, 1])),
    chunk(0x04, bytes([10, 0, 0, 2])),
    chunk(0x07, struct.pack("!H", 5060)),
    chunk(0x08, struct.pack("!H", 5070)),
    chunk(0x09, struct.pack("!I", 1_900_000_000)),
    chunk(0x0A, struct.pack("!I", 123_456)),
    chunk(0x0B, b"\x01"),
    chunk(0x0C, struct.pack("!I", 7)),
]


def test_an_ipv4_packet_by_the_spec_gives_addresses_ports_time_and_payload():
    decoded = hep.parse(packet(*V4, chunk(0x0F, SIP), chunk(0x11, b"corr-1")))

    assert (decoded.src_ip, decoded.src_port, decoded.dst_ip, decoded.dst_port) == (
        "10.0.0.1",
        5060,
        "10.0.0.2",
        5070,
    )
    assert decoded.timestamp_us == 1_900_000_000_123_456
    assert decoded.payload == SIP
    assert decoded.is_sip and decoded.ip_proto == 17 and decoded.capture_id == 7
    assert decoded.correlation_id == "corr-1"


def test_an_ipv6_packet_is_read_from_the_ipv6_chunks():
    v6 = [
        chunk(0x01, b"\x0a"),
        chunk(0x05, bytes(15) + b"\x01"),
        chunk(0x06, b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02"),
        chunk(0x07, struct.pack("!H", 5060)),
        chunk(0x08, struct.pack("!H", 5061)),
        chunk(0x09, struct.pack("!I", 1)),
        chunk(0x0F, SIP),
    ]
    decoded = hep.parse(packet(*v6))

    assert (decoded.src_ip, decoded.dst_ip, decoded.family) == ("::1", "2001:db8::2", 6)
    assert decoded.correlation_id == ""


def test_vendor_chunks_and_unknown_chunks_are_skipped():
    decoded = hep.parse(packet(*V4, chunk(0x11, b"not mine", vendor=3), chunk(0x77, b"??"), chunk(0x0F, SIP)))

    assert decoded.payload == SIP
    assert decoded.correlation_id == ""


def test_a_compressed_payload_is_inflated():
    decoded = hep.parse(packet(*V4, chunk(0x10, zlib.compress(SIP))))

    assert decoded.payload == SIP


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"HEP2" + bytes(20), "magic"),
        (packet(*V4)[:-3], "length"),
        (packet(*V4), "0x0f"),
        (b"HEP3" + struct.pack("!H", 12) + struct.pack("!HHH", 0, 0x0F, 200), "runs past"),
        (
            packet(
                chunk(0x01, b"\x02"),
                chunk(0x03, b"\x01\x02"),
                chunk(0x04, bytes(4)),
                *V4[4:],
                chunk(0x0F, SIP),
            ),
            "address",
        ),
    ],
)
def test_what_is_not_a_usable_hepv3_packet_is_refused_saying_why(data, reason):
    with pytest.raises(hep.HepError, match=reason):
        hep.parse(data)


def test_encode_lays_a_packet_out_so_that_parse_gives_it_back():
    original = hep.HepPacket("127.0.0.1", 5060, "::1", 5080, 1_900_000_000_000_001, SIP, correlation_id="c")
    v4 = hep.HepPacket("127.0.0.1", 5060, "127.0.0.2", 5080, 1_900_000_000_000_001, SIP, correlation_id="c")

    assert hep.parse(hep.encode(v4)) == v4
    assert hep.parse(hep.encode(original)).dst_ip == "::1"


@pytest.mark.skipif(not (RECORDED / "opensips-invite.hep").exists(), reason="no recorded OpenSIPS packet")
def test_a_packet_recorded_from_opensips_3_6_tracer_decodes():
    decoded = hep.parse((RECORDED / "opensips-invite.hep").read_bytes())

    assert decoded.is_sip
    assert decoded.payload.startswith(b"INVITE ")
    # OpenSIPS's dialog tracing puts the Call-ID in the correlation chunk by default.
    assert decoded.correlation_id
    assert f"Call-ID: {decoded.correlation_id}".encode() in decoded.payload
