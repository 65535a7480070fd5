"""A supplier's registrar for the shared-IP tests: answers every REGISTER with 200 OK.

    python -m tests.cluster.registrar ADDRESS PORT LOG

Each REGISTER's arrival (seconds since the epoch) and source go to LOG, one line each.
"""

import socket
import sys
import time


def main(address: str, port: int, log_path: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, port))
        print("ready", flush=True)
        while True:
            data, source = sock.recvfrom(65535)
            request = data.decode(errors="replace")
            if not request.startswith("REGISTER "):
                continue
            with open(log_path, "a") as log:
                log.write(f"{time.time():.3f} {source[0]}:{source[1]}\n")
            headers = [
                line
                for line in request.split("\r\n")
                if line.lower().startswith(
                    ("via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:", "contact:", "m:")
                )
            ]
            reply = (
                "SIP/2.0 200 OK\r\n" + "\r\n".join(headers) + "\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(reply.encode(), source)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
