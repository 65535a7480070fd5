"""SIP messages and HEP packets of made-up calls, for the capture tests."""

from apps.capture.hep import HepPacket

CUSTOMER = ("127.0.0.2", 5062)
SWITCH = ("127.0.0.1", 5060)
SUPPLIER = ("127.0.0.3", 5070)
OTHER_SUPPLIER = ("127.0.0.4", 5070)
MEDIA = ("127.0.0.1", 5080)
T0 = 1_900_000_000_000_000  # microseconds; HEP timestamps, never compared with today


def request(method: str, call_id: str, *, cseq: int = 1, extra: str = "") -> bytes:
    return (
        f"{method} sip:4930123456@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1\r\n"
        "From: <sip:441234@127.0.0.2>;tag=a1\r\n"
        "To: <sip:4930123456@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method if method != 'ACK' else 'ACK'}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response(code: int, reason: str, call_id: str, method: str = "INVITE", *, cseq: int = 1) -> bytes:
    return (
        f"SIP/2.0 {code} {reason}\r\n"
        "Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1\r\n"
        "From: <sip:441234@127.0.0.2>;tag=a1\r\n"
        "To: <sip:4930123456@127.0.0.1>;tag=b2\r\n"
        f"i: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def hep(src, dst, payload: bytes, ms: int, *, correlation: str = "", capture_id: int = 1) -> HepPacket:
    """The packet an engine would send for `payload` going from `src` to `dst`, `ms` after T0."""
    return HepPacket(
        src_ip=src[0],
        src_port=src[1],
        dst_ip=dst[0],
        dst_port=dst[1],
        timestamp_us=T0 + ms * 1000,
        payload=payload,
        capture_id=capture_id,
        correlation_id=correlation,
    )


def answered_call(call_id: str = "a-leg@test") -> list[HepPacket]:
    """A signalling-only call customer → switch → supplier, answered and hung up by the customer,
    as OpenSIPS's tracer sends it (the Call-ID as correlation id)."""
    return [
        hep(CUSTOMER, SWITCH, request("INVITE", call_id), 0, correlation=call_id),
        hep(SWITCH, SUPPLIER, request("INVITE", call_id), 2, correlation=call_id),
        hep(SUPPLIER, SWITCH, response(180, "Ringing", call_id), 20, correlation=call_id),
        hep(SWITCH, CUSTOMER, response(180, "Ringing", call_id), 21, correlation=call_id),
        hep(SUPPLIER, SWITCH, response(200, "OK", call_id), 500, correlation=call_id),
        hep(SWITCH, CUSTOMER, response(200, "OK", call_id), 501, correlation=call_id),
        hep(CUSTOMER, SWITCH, request("ACK", call_id), 510, correlation=call_id),
        hep(SWITCH, SUPPLIER, request("ACK", call_id), 511, correlation=call_id),
        hep(CUSTOMER, SWITCH, request("BYE", call_id, cseq=2), 5000, correlation=call_id),
        hep(SWITCH, SUPPLIER, request("BYE", call_id, cseq=2), 5001, correlation=call_id),
        hep(SUPPLIER, SWITCH, response(200, "OK", call_id, "BYE", cseq=2), 5010, correlation=call_id),
        hep(SWITCH, CUSTOMER, response(200, "OK", call_id, "BYE", cseq=2), 5011, correlation=call_id),
    ]
