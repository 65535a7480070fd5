"""OpenSIPS management interface (MI) over HTTP: JSON-RPC 2.0 to `httpd` + `mi_http`.

Written over the standard library's `http.client` rather than with python-opensips
(PyPI `opensips`, read at 0.1.11): its HTTP connector calls `urllib.request.urlopen`
without a timeout and offers no way to pass one (only `socket.setdefaulttimeout`, which
would change every socket of the process, database connections included), so an engine
that accepts the connection and never answers would hang a billing worker for ever. It
also turns every failure into one exception class with a message string, dropping the
JSON-RPC error code we need to tell "no such dialog" from a real error, and disables
certificate checks for https. The protocol is a few lines, so they are here.

Protocol facts this relies on, read in OpenSIPS 3.6.8's modules/mi_http and modules/dialog
and checked against a running 3.6.8 (the live tests in tests/engines):

- A command's error comes back as HTTP 200 with `{"error": {"code", "message"}}` in the
  body; HTTP 400/405/500 only mean a malformed request or a reply OpenSIPS could not
  build.
- Parameters are sent named (a JSON object): some commands (`dlg_list`) refuse
  positional ones.
- The body must be sent as `Content-Type: application/json`: without it mi_http reads no
  request and answers 400 with an empty body (seen with 3.6.8).
- `mi_http` reads at most `post_buf_size` bytes of a request (1024 by default).

`http.client` also ignores the *_proxy environment variables that `urllib` obeys, so an
MI request never leaves through a proxy configured for something else on the node.
"""

import http.client
import itertools
import json
import re
import ssl
import time
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from engines import EngineError

# dlg_end_dlg answers 404 "Requested Dialog not found" (MI_DIALOG_NOT_FOUND in
# modules/dialog/dlg_req_within.h) when no active dialog has that ID or Call-ID, and
# dlg_list answers 404 "No such dialog": either way the call is over for OpenSIPS.
DIALOG_NOT_FOUND = 404

# `dlg_end_dlg` takes a dialog's internal ID ("<hash entry>.<hash id>", reversed hex) or
# its Call-ID, and tries the ID reading first (get_dlg_by_dialog_id in dlg_hash.c). A
# Call-ID of that shape could therefore end another call: such Call-IDs are first looked
# up with `dlg_list` and the dialog is ended by the ID that lookup returns.
_LOOKS_LIKE_DIALOG_ID = re.compile(r"[0-9A-Fa-f]+\.[0-9A-Fa-f]+")

_request_ids = itertools.count(1)


class MIUnavailable(EngineError):
    """OpenSIPS could not be reached or did not answer in time; trying later can help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class MIError(EngineError):
    """OpenSIPS answered the command with an error (JSON-RPC or HTTP)."""

    def __init__(self, code: int, message: str, *, command: str, retryable: bool = False) -> None:
        super().__init__(f"MI {command}: {code} {message}", retryable=retryable)
        self.code = code
        self.message = message
        self.command = command


class DialogEnd(StrEnum):
    """What became of a dialog OpenSIPS was asked to end."""

    ENDED = "ended"  # it was up; OpenSIPS sent the BYEs (or a CANCEL before answer)
    GONE = "gone"  # OpenSIPS has no active dialog of that Call-ID: the call is over


def url_for(template: str, address: str) -> str:
    """The MI URL of the engine at `address` (an IPv6 address goes in brackets)."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return template.format(address=host)


def _error_parts(error: Any) -> tuple[int, str]:
    if not isinstance(error, dict):
        return -32603, str(error)
    try:
        code = int(error.get("code", -32603))
    except (TypeError, ValueError):
        code = -32603
    return code, str(error.get("message", ""))


def _dialog_id(dlg_list_result: Any) -> str:
    try:
        return str(dlg_list_result["Dialog"]["ID"])
    except (KeyError, TypeError):
        raise MIError(-32603, "reply has no Dialog ID", command="dlg_list") from None


class MIClient:
    """JSON-RPC calls to one OpenSIPS; every call completes or fails within `timeout` seconds."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"An MI URL is http:// or https:// with a host, not {url!r}.")
        if timeout <= 0:
            raise ValueError("The MI timeout is a positive number of seconds.")
        self.url = url
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def __repr__(self) -> str:
        return f"MIClient({self.url!r}, timeout={self.timeout})"

    def execute(self, command: str, params: dict[str, Any] | None = None) -> Any:
        """Run `command` with named `params` and return its JSON-RPC result."""
        request_id = next(_request_ids)
        body = json.dumps(
            {"jsonrpc": "2.0", "method": command, "params": params or {}, "id": request_id}
        ).encode()
        status, raw = self._post(body, command)
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None
        if isinstance(reply, dict) and reply.get("error") is not None:
            code, message = _error_parts(reply["error"])
            raise MIError(code, message, command=command)
        if status != 200:
            # mi_http's own failures (400 bad request, 500 reply not built) carry no body.
            raise MIError(status, f"HTTP status {status}", command=command, retryable=status >= 500)
        if not isinstance(reply, dict) or "result" not in reply:
            raise MIError(-32700, f"not a JSON-RPC reply: {raw[:100]!r}", command=command)
        if reply.get("id") != request_id:
            raise MIError(-32603, f"reply to request {reply.get('id')!r}, not {request_id}", command=command)
        return reply["result"]

    def end_dialog(self, call_id: str) -> DialogEnd:
        """End the call with this SIP Call-ID (BYE both ways); GONE if OpenSIPS has no such call."""
        dialog_id = call_id
        try:
            if _LOOKS_LIKE_DIALOG_ID.fullmatch(call_id):
                dialog_id = _dialog_id(self.execute("dlg_list", {"callid": call_id}))
            self.execute("dlg_end_dlg", {"dialog_id": dialog_id})
        except MIError as exc:
            if exc.code == DIALOG_NOT_FOUND:
                return DialogEnd.GONE
            raise
        return DialogEnd.ENDED

    def _post(self, body: bytes, command: str) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.timeout

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            return left

        if self._https:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request(
                "POST", self._path, body, {"Content-Type": "application/json", "Connection": "close"}
            )
            # The socket timeout bounds each read; the deadline bounds them together, so an
            # engine that trickles its reply cannot hold the caller past `timeout`. (Keep
            # the socket: getresponse() drops the connection's reference to it.)
            sock = connection.sock
            sock.settimeout(remaining())
            response = connection.getresponse()
            chunks = []
            while True:
                sock.settimeout(remaining())
                chunk = response.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return response.status, b"".join(chunks)
        except TimeoutError:
            raise MIUnavailable(f"MI {command} at {self.url}: no answer within {self.timeout}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise MIUnavailable(f"MI {command} at {self.url}: {exc or type(exc).__name__}") from exc
        finally:
            connection.close()
