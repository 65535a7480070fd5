"""OpenSIPS management interface (MI) over HTTP: JSON-RPC 2.0 to `httpd` + `mi_http`.

python-opensips (PyPI `opensips`, pinned at 0.1.11, GPL-3.0 like this project) builds the
requests and reads the replies (`opensips.mi.jsonrpc_helper`), under our own transport.
Its HTTP connection class (`opensips.mi.http.HTTP`, also 0.1.11) is not used: it calls
`urllib.request.urlopen` without a timeout and has no way to pass one (only
`socket.setdefaulttimeout`, which would change every socket of the process, database
connections included), so an engine that accepts the connection and never answers would
hang a worker for ever; it turns every failure, refused connection or JSON-RPC error alike,
into one exception with a message string, so "retry later" and "no such dialog" cannot be
told apart; and it disables certificate checks for https. The transport here is
`http.client` with one deadline for the whole exchange, and errors are classified:
MIUnavailable (refused, reset, timeout, HTTP 5xx without a JSON-RPC error: retry) or
MIError (OpenSIPS answered with an error: its code and message; retrying will not help).

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
import json
import re
import ssl
import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from opensips.mi import jsonrpc_helper

from engines import EngineError
from engines.opensips.state import (
    Contact,
    Dialog,
    GatewayStatus,
    Registrant,
    Uptime,
    read_contacts,
    read_dialog,
    read_gateways,
    read_registrants,
    read_ul_dump,
    read_uptime,
)

# dlg_end_dlg answers 404 "Requested Dialog not found" (MI_DIALOG_NOT_FOUND in
# modules/dialog/dlg_req_within.h) when no active dialog has that ID or Call-ID, and
# dlg_list answers 404 "No such dialog": either way the call is over for OpenSIPS.
# ul_show_contact answers 404 "AOR not found", profile_get_size 404 "Profile not found".
DIALOG_NOT_FOUND = 404
NOT_FOUND = 404

# `dlg_end_dlg` takes a dialog's internal ID ("<hash entry>.<hash id>", reversed hex) or
# its Call-ID, and tries the ID reading first (get_dlg_by_dialog_id in dlg_hash.c). A
# Call-ID of that shape could therefore end another call: such Call-IDs are first looked
# up with `dlg_list` and the dialog is ended by the ID that lookup returns.
_LOOKS_LIKE_DIALOG_ID = re.compile(r"[0-9A-Fa-f]+\.[0-9A-Fa-f]+")

# The module whose tables changed -> the MI command that makes OpenSIPS read them again.
# usrloc needs none: registrations are written by OpenSIPS itself.
RELOAD_COMMANDS = {
    "address": "address_reload",  # permissions: who may send calls
    "drouting": "dr_reload",  # gateways, carriers, rules
    "registrant": "reg_reload",  # uac_registrant: outbound registrations
}

# Dialogs asked for per dlg_list request: the reply must fit httpd's buf_size (about
# 1 kB a dialog with its context; 4 MB in our opensips.cfg).
DIALOG_PAGE = 500


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


def _error_code(code: Any) -> int:
    try:
        return int(code)
    except (TypeError, ValueError):
        return -32603


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
        request = jsonrpc_helper.get_command(command, params or {})
        request_id = json.loads(request)["id"]
        status, raw = self._post(request.encode(), command)
        text = raw.decode("utf-8", errors="replace")
        try:
            reply = json.loads(text)
        except ValueError:
            reply = None
        has_error = isinstance(reply, dict) and reply.get("error") is not None
        if status >= 500 and not has_error:
            # mi_http answers 500 with no body when it could not build a reply (out of
            # memory, a reply over buf_size): the engine is struggling, not refusing.
            raise MIUnavailable(f"MI {command} at {self.url}: HTTP status {status}")
        if status != 200 and not has_error:
            # 400 (no request found in the body), 404 (wrong path), 405: our request is wrong.
            raise MIError(status, f"HTTP status {status}", command=command)
        if not isinstance(reply, dict) or ("result" not in reply and not has_error):
            raise MIError(-32700, f"not a JSON-RPC reply: {raw[:100]!r}", command=command)
        if not has_error and reply.get("id") != request_id:
            raise MIError(-32603, f"reply to request {reply.get('id')!r}, not {request_id}", command=command)
        try:
            return jsonrpc_helper.get_reply(text)
        except jsonrpc_helper.JSONRPCError as exc:
            raise MIError(_error_code(exc.code), str(exc.message or ""), command=command) from None

    # --- Commands ----------------------------------------------------------------------

    def version(self) -> str:
        """OpenSIPS's version line, e.g. "OpenSIPS (3.6.8 (x86_64/linux))"."""
        return str((self.execute("version") or {}).get("Server", ""))

    def uptime(self) -> Uptime:
        return read_uptime(self.execute("uptime"))

    def reload(self, module: str) -> None:
        """Make OpenSIPS read `module`'s tables again ("address", "drouting" or "registrant")."""
        try:
            command = RELOAD_COMMANDS[module]
        except KeyError:
            raise ValueError(
                f"No MI reload for module {module!r}; known: {sorted(RELOAD_COMMANDS)}."
            ) from None
        self.execute(command)

    def statistics(self, groups: Iterable[str] = ("dialog:", "core:", "tm:", "usrloc:")) -> dict[str, int]:
        """Counters by "group:name"; a group is asked for as "group:" (every counter in it)."""
        result = self.execute("get_statistics", {"statistics": list(groups)}) or {}
        return {str(name): value for name, value in result.items() if isinstance(value, int)}

    def dialogs(
        self, *, page_size: int = DIALOG_PAGE, context: bool = True, limit: int | None = None
    ) -> list[Dialog]:
        """Every dialog OpenSIPS holds (the first `limit`), read page by page, with their values."""
        command = "dlg_list_ctx" if context else "dlg_list"
        dialogs: dict[str, Dialog] = {}
        index = 0
        while True:
            if limit is not None and len(dialogs) >= limit:
                return list(dialogs.values())[:limit]
            counter = page_size if limit is None else min(page_size, limit - len(dialogs))
            result = self.execute(command, {"index": index, "counter": counter}) or {}
            page = result.get("Dialogs") or []
            for item in page:
                dialog = read_dialog(item)
                # Calls that end between two pages shift the rest down: one may be listed twice.
                dialogs.setdefault(dialog.id, dialog)
            index += len(page)
            if not page or index >= int(result.get("count") or 0):
                return list(dialogs.values())

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

    def profile_size(self, profile: str, value: str | None = None) -> int:
        """How many dialogs are in `profile` (with `value`, for a profile with values)."""
        params = {"profile": profile} if value is None else {"profile": profile, "value": value}
        result = self.execute("profile_get_size", params) or {}
        return int((result.get("Profile") or {}).get("count") or 0)

    def registrations(self) -> list[Contact]:
        """Every registered contact (usrloc's ul_dump)."""
        return read_ul_dump(self.execute("ul_dump"))

    def contact(self, aor: str, *, table: str = "location") -> list[Contact]:
        """The contacts registered for `aor`; none when it is not registered."""
        try:
            result = self.execute("ul_show_contact", {"table_name": table, "aor": aor}) or {}
        except MIError as exc:
            if exc.code == NOT_FOUND:
                return []
            raise
        return read_contacts(str(result.get("AOR", aor)), result.get("Contacts"), domain=table)

    def gateway_status(self) -> list[GatewayStatus]:
        """drouting's gateways and whether each is in use (dr_gw_status)."""
        return read_gateways(self.execute("dr_gw_status"))

    def registrants(self) -> list[Registrant]:
        """uac_registrant's outbound registrations and their state (reg_list)."""
        return read_registrants(self.execute("reg_list"))

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
