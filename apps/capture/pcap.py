"""Classic libpcap files of SIP messages, with IP and UDP headers made up from HEP's addresses.

HEP carries the SIP text and the addresses it travelled between, not the packet itself,
so each message becomes one raw IP packet (LINKTYPE_RAW: IPv4 or IPv6 by its version
nibble) holding a UDP datagram with correct lengths and checksums; tshark and Wireshark
then decode it as SIP. A message that came over TCP or TLS is written as UDP too: the
ladder and the SIP dissector need the message, not a TCP stream to reassemble.
"""

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

GLOBAL_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
SNAPLEN = 262144
IPV4 = struct.Struct("!BBHHHBBH4s4s")
IPV6 = struct.Struct("!IHBB16s16s")
UDP = struct.Struct("!HHHH")
UDP_PROTO = 17
# The largest UDP payload an IPv4 packet can carry; longer messages are cut (never seen in SIP).
MAX_PAYLOAD = 65535 - IPV4.size - UDP.size


class PcapError(ValueError):
    """Not a pcap file this module reads."""


@dataclass(frozen=True)
class Message:
    """One message of a capture: when, from where to where, and its bytes."""

    timestamp_us: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes


def write(out: BinaryIO, messages: Iterable[Message]) -> int:
    """Write a pcap of `messages` (in the order given) to `out`; returns the bytes written."""
    written = out.write(GLOBAL_HEADER.pack(MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))
    for message in messages:
        packet = ip_packet(message)
        seconds, micros = divmod(message.timestamp_us, 1_000_000)
        written += out.write(RECORD_HEADER.pack(seconds, micros, len(packet), len(packet)))
        written += out.write(packet)
    return written


def ip_packet(message: Message) -> bytes:
    """The IPv4 or IPv6 packet carrying `message` as a UDP datagram."""
    src = ipaddress.ip_address(message.src_ip)
    dst = ipaddress.ip_address(message.dst_ip)
    if src.version != dst.version:
        # An IPv4-mapped peer of a dual-stack socket: write both as IPv6.
        src, dst = _as_v6(src), _as_v6(dst)
    payload = message.payload[:MAX_PAYLOAD]
    length = UDP.size + len(payload)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, UDP_PROTO, length)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", length, UDP_PROTO)
    header = UDP.pack(message.src_port, message.dst_port, length, 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF  # 0 means "no checksum" in UDP
    datagram = UDP.pack(message.src_port, message.dst_port, length, checksum) + payload
    if src.version == 4:
        ip = IPV4.pack(0x45, 0, IPV4.size + length, 0, 0x4000, 64, UDP_PROTO, 0, src.packed, dst.packed)
        ip = ip[:10] + _checksum(ip).to_bytes(2, "big") + ip[12:]
        return ip + datagram
    return IPV6.pack(6 << 28, length, UDP_PROTO, 64, src.packed, dst.packed) + datagram


def _as_v6(address) -> ipaddress.IPv6Address:
    if address.version == 6:
        return address
    return ipaddress.IPv6Address(f"::ffff:{address}")


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def read(source: BinaryIO) -> Iterator[Message]:
    """The UDP messages of a classic pcap file (raw IP or Ethernet), in file order."""
    head = source.read(GLOBAL_HEADER.size)
    if len(head) < GLOBAL_HEADER.size:
        raise PcapError("too short for a pcap file")
    magic = int.from_bytes(head[:4], "little")
    if magic == MAGIC_US:
        order = "<"
    elif magic == int.from_bytes(MAGIC_US.to_bytes(4, "little"), "big"):
        order = ">"
    else:
        raise PcapError("not a classic microsecond pcap file")
    linktype = struct.unpack(f"{order}I", head[20:24])[0]
    if linktype not in (LINKTYPE_RAW, LINKTYPE_ETHERNET):
        raise PcapError(f"link type {linktype} is neither raw IP nor Ethernet")
    record = struct.Struct(f"{order}IIII")
    while len(header := source.read(record.size)) == record.size:
        seconds, micros, captured, _original = record.unpack(header)
        frame = source.read(captured)
        if len(frame) < captured:
            break  # a file still being written, or cut: what came before stands
        if linktype == LINKTYPE_ETHERNET:
            frame = frame[14:]
        message = _udp_message(seconds * 1_000_000 + micros, frame)
        if message is not None:
            yield message


def _udp_message(timestamp_us: int, packet: bytes) -> Message | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        header_length = (packet[0] & 0x0F) * 4
        if len(packet) < header_length + UDP.size or packet[9] != UDP_PROTO:
            return None
        src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
    elif version == 6:
        header_length = IPV6.size
        if len(packet) < header_length + UDP.size or packet[6] != UDP_PROTO:
            return None
        src, dst = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
    else:
        return None
    src_port, dst_port, length, _checksum_value = UDP.unpack_from(packet, header_length)
    start = header_length + UDP.size
    payload = packet[start : header_length + length]
    return Message(timestamp_us, str(src), src_port, str(dst), dst_port, payload)
