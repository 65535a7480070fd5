"""What keepalived's scripts talk to on a node, for the failover tests without OpenSIPS.

Run in a node's namespace: `python -m tests.cluster.standin LOG [--health-only]`. It answers MI requests
(JSON-RPC over HTTP, as mi_http does) on port 8888 with a result, writing each method and
its params to LOG, one JSON object per line, and GET /health/ on port 8001 with 200, as the
node's OpenSIPS and call control (smartswitch-callcontrol) would (--health-only: call
control's part, beside a real OpenSIPS). Stopping it is the node's services failing.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MI_PORT, HEALTH_PORT = 8888, 8001


def handler(log_path: str):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # MI
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock, open(log_path, "a") as log:
                log.write(json.dumps({"method": request["method"], "params": request.get("params")}) + "\n")
            self.answer({"jsonrpc": "2.0", "result": "OK", "id": request.get("id")})

        def do_GET(self):  # the web process's /health/
            self.answer({"status": "ok"})

        def answer(self, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main(log_path: str, *, health_only: bool = False) -> None:
    ports = (HEALTH_PORT,) if health_only else (MI_PORT, HEALTH_PORT)
    servers = [ThreadingHTTPServer(("0.0.0.0", port), handler(log_path)) for port in ports]  # noqa: S104
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], health_only="--health-only" in sys.argv[2:])
