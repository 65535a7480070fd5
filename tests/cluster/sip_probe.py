"""Send SIP OPTIONS to an address until one is answered 200; print the seconds it took.

    python -m tests.cluster.sip_probe SOURCE_ADDRESS TARGET_ADDRESS BOUND_SECONDS

One OPTIONS every 50 ms (each a new transaction) from SOURCE_ADDRESS to TARGET_ADDRESS:5060
over UDP; exits 0 on the first 200, 1 when BOUND_SECONDS pass without one.
"""

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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
