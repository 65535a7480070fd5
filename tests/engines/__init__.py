"""Engine tests, and an MI server on loopback that answers with replies recorded from OpenSIPS.

The replies below were captured from OpenSIPS 3.6.8 (httpd + mi_http + dialog); the live
tests in test_opensips_mi.py check them against a real OpenSIPS where one is installed.
"""

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OK = {"result": "OK"}
VERSION = {"result": {"Server": "OpenSIPS (3.6.8 (x86_64/linux))"}}
# dlg_end_dlg of a Call-ID or dialog ID with no active dialog.
DIALOG_NOT_FOUND = {"error": {"code": 404, "message": "Requested Dialog not found"}}
# dlg_list of a Call-ID with no active dialog.
NO_SUCH_DIALOG = {"error": {"code": 404, "message": "No such dialog"}}
METHOD_NOT_FOUND = {"error": {"code": -32601, "message": "Method not found"}}
# dlg_end_dlg when the BYEs could not be sent.
OPERATION_FAILED = {"error": {"code": 500, "message": "Operation failed"}}


@dataclass(frozen=True)
class Raw:
    """A reply sent as is, not wrapped in JSON-RPC: an HTTP status and a body."""

    status: int
    body: bytes = b""


Reply = dict | Raw | Callable[[dict], "dict | Raw"]


class RecordedMI:
    """An HTTP server on 127.0.0.1 (random port) answering MI requests like OpenSIPS's mi_http.

    `replies` maps a command to its reply: a JSON-RPC result or error (sent in an HTTP 200
    with the request's id, as OpenSIPS does), a `Raw` reply, or a function of the request's
    params returning either. Unlisted commands answer "OK". Every request is kept in
    `requests` as decoded JSON, with its path and content type in `meta`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.replies: dict[str, Reply] = {}
        self.requests: list[dict] = []
        self.meta: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = json.loads(body)
                server.requests.append(request)
                server.meta.append((self.path, self.headers.get("Content-Type", "")))
                reply = server.replies.get(request["method"], OK)
                if callable(reply):
                    reply = reply(request.get("params") or {})
                if isinstance(reply, Raw):
                    status, payload = reply.status, reply.body
                else:
                    status = 200
                    payload = json.dumps({"jsonrpc": "2.0", **reply, "id": request["id"]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

        self._server = Server((host, 0), Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/mi"

    @property
    def template(self) -> str:
        """An OPENSIPS_MI_URL that sends every node at {address} to this server's port."""
        return f"http://{{address}}:{self.port}/mi"

    def calls(self, method: str) -> list[dict]:
        """The params of every request of `method`, in order."""
        return [request["params"] for request in self.requests if request["method"] == method]

    def __enter__(self) -> "RecordedMI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
