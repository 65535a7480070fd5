"""FreeSWITCH 1.10.12's ESL replies and events, recorded, and a server on loopback that answers with them.

Recorded from a real 1.10.12 (mod_commands, mod_sofia, mod_loopback) with one loopback call
up (`originate loopback/tone/public &park()`, its A leg recorded with uuid_record):

- status.txt, show_channels.json (the call's two legs), show_channels_empty.json,
  uuid_buglist.xml (the A leg's recording), sofia_xmlstatus*.xml (profile "smartswitch"
  with a gateway "far");
- event_*.txt: the bodies of `event plain` events as sent on the wire (URL-encoded values):
  the A leg's CHANNEL_ANSWER, RECORD_STOP, CHANNEL_HANGUP_COMPLETE, and the CUSTOM
  sofia::profile_start of `sofia profile smartswitch restart`.

The live tests in tests/engines/test_freeswitch_esl_live.py check these shapes against a
real FreeSWITCH where one is installed.
"""

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

REPLIES = Path(__file__).parent
RECORDED_UUID = "4f8a7c1e-0d5b-4a39-9e2f-rec000000001"
RECORDED_CALL_ID = "rec-call-1@test"
RECORDED_FILE = "/var/lib/smartswitch/recordings/node1/2026/12/06/rec-call-1.wav"

# Replies FreeSWITCH 1.10.12 gave to commands it refused or could not find a channel for.
NO_SUCH_CHANNEL = "-ERR No such channel!\n"  # uuid_kill
CANNOT_LOCATE = "-ERR Cannot locate session!\n"  # uuid_record
NO_REPLY = "-ERR no reply\n"  # uuid_buglist of an unknown uuid (the api wrote nothing)
INVALID_PROFILE = "Invalid Profile!\n"  # sofia xmlstatus profile <unknown>
RECORD_USAGE = "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"


def recorded(name: str) -> str:
    """The recorded reply or event body in file `name`."""
    return (REPLIES / name).read_text()


def event_body(headers: dict[str, str]) -> str:
    """An `event plain` body for `headers`, URL-encoded as FreeSWITCH sends it."""
    return "".join(f"{name}: {quote(value, safe='')}\n" for name, value in headers.items())


class Silent:
    """A reply that never comes: FreeSWITCH took the command and hangs."""


class Cut:
    """A reply cut short: the headers promise a body, a piece of it comes, the connection closes."""


SILENT = Silent()
CUT = Cut()


Reply = str | Silent | Cut | Callable[[str], "str | Silent | Cut"]


class RecordedESL:
    """An ESL server on 127.0.0.1 (a random port) that answers like FreeSWITCH's mod_event_socket.

    `replies` maps an api command, or its first word, to its reply text (or Silent, Cut, or a
    function of the command). Commands without one answer as FreeSWITCH does for an unknown
    command. Every command received is kept in `commands` (auth's password too: tests check
    it is sent). `emit()` sends an event to every subscribed connection; `drop()` closes every
    connection, as a FreeSWITCH that stops does.
    """

    def __init__(self, password: str = "ClueCon", host: str = "127.0.0.1", port: int = 0) -> None:
        self.password = password
        self.replies: dict[str, Reply] = {}
        self.commands: list[str] = []
        self.connections_made = 0
        self._clients: list[tuple[socket.socket, list[bool]]] = []
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.socket(family, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(16)
        self.host = host
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> "RecordedESL":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        # A thread blocked in accept() keeps a closed socket listening: shut it down first.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self.drop()

    def drop(self) -> None:
        """Close every client connection (FreeSWITCH stopping)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for sock, _ in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return sum(1 for _, subscribed in self._clients if subscribed[0])

    def emit(self, body: str) -> None:
        """Send one event (an `event plain` body) to every subscribed connection."""
        data = body.encode()
        message = f"Content-Length: {len(data)}\nContent-Type: text/event-plain\n\n".encode() + data
        with self._lock:
            clients = [sock for sock, subscribed in self._clients if subscribed[0]]
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.sendall(message)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            subscribed = [False]
            with self._lock:
                self._clients.append((sock, subscribed))
                self.connections_made += 1
            threading.Thread(target=self._serve, args=(sock, subscribed), daemon=True).start()

    def _serve(self, sock: socket.socket, subscribed: list[bool]) -> None:
        try:
            sock.sendall(b"Content-Type: auth/request\n\n")
            reader = sock.makefile("rb")
            authenticated = False
            while True:
                command = self._read_command(reader)
                if command is None:
                    return
                self.commands.append(command)
                if not authenticated:
                    if command == f"auth {self.password}":
                        authenticated = True
                        self._command_reply(sock, "+OK accepted")
                        continue
                    self._command_reply(sock, "-ERR invalid")
                    self._disconnect(sock)
                    return
                if command.startswith("event plain"):
                    subscribed[0] = True
                    self._command_reply(sock, "+OK event listener enabled plain")
                elif command.startswith("api "):
                    if not self._api_reply(sock, command[4:]):
                        return
                elif command == "exit":
                    self._command_reply(sock, "+OK bye")
                    self._disconnect(sock)
                    return
                else:
                    self._command_reply(sock, "-ERR command not found")
        except OSError:
            return
        finally:
            sock.close()

    @staticmethod
    def _read_command(reader) -> str | None:
        lines = []
        while True:
            line = reader.readline()
            if not line:
                return None
            text = line.decode().rstrip("\r\n")
            if not text:
                if lines:
                    return "\n".join(lines)
                continue
            lines.append(text)

    @staticmethod
    def _command_reply(sock: socket.socket, text: str) -> None:
        sock.sendall(f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode())

    @staticmethod
    def _disconnect(sock: socket.socket) -> None:
        body = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
        sock.sendall(f"Content-Type: text/disconnect-notice\nContent-Length: {len(body)}\n\n".encode() + body)

    def _api_reply(self, sock: socket.socket, command: str) -> bool:
        reply = self.replies.get(command, self.replies.get(command.split(" ", 1)[0]))
        if callable(reply):
            reply = reply(command)
        if reply is None:
            reply = f"-ERR {command.split(' ', 1)[0]} Command not found!\n"
        if isinstance(reply, Silent):
            return True  # read on: the client gives up and closes, and the read ends
        if isinstance(reply, Cut):
            sock.sendall(b"Content-Type: api/response\nContent-Length: 1000\n\n" + b"x" * 10)
            sock.shutdown(socket.SHUT_RDWR)
            return False
        data = reply.encode()
        sock.sendall(f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode() + data)
        return True
