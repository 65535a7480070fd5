"""A small SIP client for the namespaced cluster tests, run on the test network's bridge.

    python -m tests.cluster.sip_probe SOURCE_ADDRESS TARGET_ADDRESS BOUND_SECONDS
    python -m tests.cluster.sip_probe SOURCE_ADDRESS TARGET_ADDRESS --invites COUNT

The first form sends one OPTIONS every 50 ms (each a new transaction) from SOURCE_ADDRESS to
TARGET_ADDRESS:5060 over UDP; it prints the seconds until the first 200 and exits 0, or exits
1 when BOUND_SECONDS pass without one. The second sends COUNT INVITEs one after the other
and prints, as JSON, their final answers by code, where the 302s sent them and how long the
answers took.
"""

import json
import socket
import sys
import time
import uuid


def options(source: str, port: int, target: str) -> bytes:
    branch, tag, call_id = (uuid.uuid4().hex for _ in range(3))
    return (
        f"OPTIONS sip:{target}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{source}>;tag={tag}\r\n"
        f"To: <sip:{target}>\r\n"
        f"Call-ID: {call_id}@{source}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def main(source: str, target: str, bound: float) -> int:
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(0.05)
        port = sock.getsockname()[1]
        while time.monotonic() - started < bound:
            sock.sendto(options(source, port, target), (target, 5060))
            try:
                while True:
                    reply = sock.recv(65535)
                    if reply.startswith(b"SIP/2.0 200"):
                        print(f"{time.monotonic() - started:.3f}")
                        return 0
            except (TimeoutError, ConnectionRefusedError):
                continue
    return 1


def invites(source: str, target: str, count: int) -> dict:
    """Send `count` INVITEs to TARGET_ADDRESS:5060 one after the other, ACK each final answer;
    return {"codes": {code: n}, "contacts": {host:port: n}} (contacts of the 302s) and the
    time from INVITE to final answer, p50_ms and p99_ms."""
    codes, contacts, waited = {}, {}, []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        for n in range(count):
            branch, tag, call_id = (uuid.uuid4().hex for _ in range(3))
            head = (
                f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{branch}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:100@{source}>;tag={tag}\r\n"
            )
            uri = f"sip:4930{n:07d}@{target}:5060"
            sent = time.monotonic()
            sock.sendto(
                (
                    f"INVITE {uri} SIP/2.0\r\n{head}To: <{uri}>\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: 1 INVITE\r\nContact: <sip:100@{source}:{port}>\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                (target, 5060),
            )
            while True:
                reply = sock.recv(65535).decode(errors="replace")
                code = int(reply.split(" ", 2)[1])
                if code >= 200:
                    break
            waited.append((time.monotonic() - sent) * 1000)
            codes[code] = codes.get(code, 0) + 1
            lines = reply.split("\r\n")
            to = next(line for line in lines if line.lower().startswith(("to:", "t:")))
            for line in lines:
                if line.lower().startswith(("contact:", "m:")) and code == 302:
                    where = line.split("@", 1)[1].split(">", 1)[0].split(";", 1)[0]
                    contacts[where] = contacts.get(where, 0) + 1
            sock.sendto(
                (
                    f"ACK {uri} SIP/2.0\r\n{head}{to}\r\nCall-ID: {call_id}\r\n"
                    "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                (target, 5060),
            )
    waited.sort()
    percentiles = (
        {"p50_ms": waited[len(waited) // 2], "p99_ms": waited[int(len(waited) * 0.99)]} if waited else {}
    )
    return {"codes": codes, "contacts": contacts, **percentiles}


if __name__ == "__main__":
    if sys.argv[3] == "--invites":
        print(json.dumps(invites(sys.argv[1], sys.argv[2], int(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
