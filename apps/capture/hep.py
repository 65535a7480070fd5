"""HEPv3 (the HOMER encapsulation protocol), as OpenSIPS's proto_hep and FreeSWITCH's sofia send it.

Pure: bytes in, dataclasses out, no I/O. A HEPv3 packet is "HEP3", a 16-bit total length,
then chunks of (vendor 16 bit, type 16 bit, length 16 bit incl. this 6-byte header, data).
Generic chunks have vendor 0; OpenSIPS puts its extra correlation (type 101) under vendor
0 too. Unknown chunks are skipped, so a sender adding chunks never breaks the listener.
"""

import ipaddress
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"HEP3"
HEADER = struct.Struct("!4sH")
CHUNK = struct.Struct("!HHH")
MAX_PACKET = 65535

# Generic chunk types (HEP3 spec, OpenSIPS modules/proto_hep/hep.h).
IP_FAMILY = 0x01
IP_PROTO = 0x02
IPV4_SRC = 0x03
IPV4_DST = 0x04
IPV6_SRC = 0x05
IPV6_DST = 0x06
SRC_PORT = 0x07
DST_PORT = 0x08
TIME_SEC = 0x09
TIME_USEC = 0x0A
PROTO_TYPE = 0x0B
CAPTURE_ID = 0x0C
PAYLOAD = 0x0F
COMPRESSED_PAYLOAD = 0x10
CORRELATION_ID = 0x11

AF_INET = 0x02
AF_INET6 = 0x0A
PROTO_UDP = 17
PROTO_TCP = 6
PROTO_TYPE_SIP = 0x01


class HepError(ValueError):
    """Not a HEPv3 packet we can use (wrong magic, truncated, missing chunks)."""


@dataclass(frozen=True)
class HepPacket:
    """One captured message: who sent it to whom, when, and its bytes."""

    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    # Microseconds since the epoch, as the capturing engine stamped it.
    timestamp_us: int
    payload: bytes
    ip_proto: int = PROTO_UDP
    proto_type: int = PROTO_TYPE_SIP
    capture_id: int = 0
    correlation_id: str = ""

    @property
    def is_sip(self) -> bool:
        return self.proto_type == PROTO_TYPE_SIP

    @property
    def family(self) -> int:
        return 6 if ":" in self.src_ip else 4


def parse(data: bytes) -> HepPacket:
    """Decode one HEPv3 datagram; raise HepError when it is not one we can use."""
    if len(data) < HEADER.size or data[:4] != MAGIC:
        raise HepError("not a HEPv3 packet (no HEP3 magic)")
    _magic, total = HEADER.unpack_from(data)
    if total > len(data) or total < HEADER.size:
        raise HepError(f"HEPv3 length {total} does not match the {len(data)} bytes received")
    chunks = dict(_chunks(data[:total]))
    try:
        family = chunks[IP_FAMILY][0]
        src_key, dst_key = (IPV6_SRC, IPV6_DST) if family == AF_INET6 else (IPV4_SRC, IPV4_DST)
        return HepPacket(
            src_ip=str(ipaddress.ip_address(chunks[src_key])),
            dst_ip=str(ipaddress.ip_address(chunks[dst_key])),
            src_port=_uint(chunks[SRC_PORT]),
            dst_port=_uint(chunks[DST_PORT]),
            timestamp_us=_uint(chunks[TIME_SEC]) * 1_000_000 + _uint(chunks.get(TIME_USEC, b"\0")),
            payload=_payload(chunks),
            ip_proto=_uint(chunks.get(IP_PROTO, bytes([PROTO_UDP]))),
            proto_type=_uint(chunks.get(PROTO_TYPE, bytes([PROTO_TYPE_SIP]))),
            capture_id=_uint(chunks.get(CAPTURE_ID, b"\0")),
            correlation_id=chunks.get(CORRELATION_ID, b"").decode("utf-8", "replace"),
        )
    except KeyError as missing:
        raise HepError(f"HEPv3 packet without chunk 0x{missing.args[0]:02x}") from None
    except ValueError as exc:
        raise HepError(f"HEPv3 packet with a bad address: {exc}") from None


def _chunks(data: bytes):
    """(type, data) of each generic chunk; later duplicates win, vendor chunks are skipped."""
    offset = HEADER.size
    while offset + CHUNK.size <= len(data):
        vendor, kind, length = CHUNK.unpack_from(data, offset)
        if length < CHUNK.size or offset + length > len(data):
            raise HepError(f"HEPv3 chunk 0x{kind:02x} runs past the packet")
        if vendor == 0:
            yield kind, data[offset + CHUNK.size : offset + length]
        offset += length


def _payload(chunks: dict) -> bytes:
    if PAYLOAD in chunks or COMPRESSED_PAYLOAD not in chunks:
        return chunks[PAYLOAD]
    try:
        # HOMER agents compress with zlib or gzip; wbits 47 accepts either header.
        return zlib.decompress(chunks[COMPRESSED_PAYLOAD], 47)
    except zlib.error as exc:
        raise HepError(f"HEPv3 compressed payload does not inflate: {exc}") from None


def _uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


def encode(packet: HepPacket) -> bytes:
    """The HEPv3 datagram for `packet`, laid out as OpenSIPS's proto_hep lays it out."""
    v6 = packet.family == 6
    chunks = [
        (IP_FAMILY, bytes([AF_INET6 if v6 else AF_INET])),
        (IP_PROTO, bytes([packet.ip_proto])),
        (IPV6_SRC if v6 else IPV4_SRC, ipaddress.ip_address(packet.src_ip).packed),
        (IPV6_DST if v6 else IPV4_DST, ipaddress.ip_address(packet.dst_ip).packed),
        (SRC_PORT, packet.src_port.to_bytes(2, "big")),
        (DST_PORT, packet.dst_port.to_bytes(2, "big")),
        (TIME_SEC, (packet.timestamp_us // 1_000_000).to_bytes(4, "big")),
        (TIME_USEC, (packet.timestamp_us % 1_000_000).to_bytes(4, "big")),
        (PROTO_TYPE, bytes([packet.proto_type])),
        (CAPTURE_ID, packet.capture_id.to_bytes(4, "big")),
        (PAYLOAD, packet.payload),
    ]
    if packet.correlation_id:
        chunks.append((CORRELATION_ID, packet.correlation_id.encode()))
    body = b"".join(CHUNK.pack(0, kind, CHUNK.size + len(data)) + data for kind, data in chunks)
    return HEADER.pack(MAGIC, HEADER.size + len(body)) + body
