"""One inbound ESL connection to FreeSWITCH, on greenswitch, with the deadlines greenswitch lacks.

greenswitch (PyPI `greenswitch`, pinned at 0.0.19, the design card's choice) speaks the
protocol: it reads FreeSWITCH's framing (headers, a blank line, a body of Content-Length
bytes), pairs each command/reply and api/response with the command that waits for it, and
queues events for handlers. It runs on gevent: a connection is two greenlets (a reader and
an event dispatcher) on the hub of the thread that opened it. Nothing here monkey-patches
the process, so a connection opened in a Django request thread or a management command
runs its greenlets only while that thread waits in a gevent call (our command's reply, the
listener's sleep), and the rest of the process (database, threads) is untouched.

What greenswitch 0.0.19 does not do, and what this module adds (read in greenswitch/esl.py):

- No timeouts. `connect()` waits for the auth/request greeting for ever, `send()` waits for
  its reply for ever (`AsyncResult.get()` without a timeout), and `stop()` sends `exit` and
  waits for that too. Every wait here runs under one `gevent.Timeout`: it fires in the
  waiting greenlet wherever it is blocked (connecting, writing, waiting for the reply),
  which is the one deadline per exchange the MI client has. After a timeout the connection
  is closed, never reused: greenswitch pairs replies with commands by order, so the late
  reply to the timed-out command would be taken as the answer to the next one.
- A FreeSWITCH that goes away is not noticed by a waiting command: the reader greenlet ends
  but the commands' AsyncResults are never set. Here the reader's end fails every waiting
  command at once (ESLUnavailable "closed the connection"), so a restart costs a command
  nothing but that error, not its whole timeout.
- A body cut short by a closed socket makes `_read_socket` loop for ever without yielding
  (`sock.read()` returns b"" at once at EOF; the FIXME in its source): the process spins
  at 100 % CPU and no gevent timeout can fire. `_read_socket` is replaced by one that
  treats a short read as a closed connection.
- It connects over IPv4 only (`socket.AF_INET`): create_connection takes either family.
- A wrong password raises a bare ValueError and an ACL refusal (text/rude-rejection) a
  NotConnectedError: here both are ESLError (not retryable: the configuration is wrong).

Events are parsed by greenswitch from `event plain` only (it has no JSON or XML reader):
the listener subscribes with `event plain`.
"""

import contextlib
import logging
from collections.abc import Callable

import gevent
import gevent.socket
from greenswitch.esl import ESLEvent, InboundESL

from engines import EngineError

logger = logging.getLogger(__name__)


class ESLUnavailable(EngineError):
    """FreeSWITCH could not be reached, went away, or did not answer in time; retrying can help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class ESLError(EngineError):
    """FreeSWITCH answered, and refused: a -ERR or -USAGE reply, a wrong password, an ACL."""

    def __init__(self, reply: str, *, command: str) -> None:
        super().__init__(f"ESL {command}: {reply}", retryable=False)
        self.reply = reply
        self.command = command


class NoSuchChannel(ESLError):
    """The channel (uuid) named in the command does not exist (any more) in FreeSWITCH."""


class _Closed(ConnectionError):
    """Raised into the commands waiting on a connection whose reader has ended."""


def command_name(command: str) -> str:
    # Never put the password of `auth` into a message or a log.
    return "auth" if command.startswith("auth ") else command


class ESLConnection(InboundESL):
    """greenswitch's InboundESL with deadlines, a reader that fails waiting commands when it
    ends, a bounded read, and IPv6. Open it with `open_connection`."""

    def __init__(self, host: str, port: int, password: str, *, timeout: float) -> None:
        super().__init__(host, port, password, timeout=timeout)
        self.address = f"{host}:{port}"

    @property
    def alive(self) -> bool:
        """The reader still runs: FreeSWITCH has not closed the connection."""
        reader = self._receive_events_greenlet
        return self.connected and reader is not None and not reader.dead

    def open(self) -> None:
        """Connect, wait for the greeting and authenticate (the caller holds the deadline)."""
        self.sock = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.settimeout(None)  # reads wait for events for ever; the deadlines are gevent's
        self.sock_file = self.sock.makefile("rb")
        self.connected = True
        self.start_event_handlers()
        self._auth_request_event.wait()
        if not self.connected:
            # text/rude-rejection: the client's address is not in the ESL ACL.
            raise ESLError("connection refused by FreeSWITCH's ESL ACL", command="connect")
        reply = self.request(f"auth {self.password}")
        text = reply.headers.get("Reply-Text", "")
        if not text.startswith("+OK"):
            raise ESLError(text or "authentication refused", command="auth")

    def request(self, command: str) -> ESLEvent:
        """Send one command and return FreeSWITCH's reply (command/reply or api/response)."""
        try:
            return self.send(command)
        except _Closed:
            raise ESLUnavailable(f"FreeSWITCH at {self.address} closed the connection") from None
        except OSError as exc:
            raise ESLUnavailable(f"ESL {command_name(command)} at {self.address}: {exc}") from exc
        except Exception as exc:  # greenswitch's NotConnectedError
            if not self.alive:
                raise ESLUnavailable(f"FreeSWITCH at {self.address} closed the connection") from exc
            raise

    def receive_events(self) -> None:
        try:
            super().receive_events()
        except Exception as exc:  # a reply greenswitch cannot read: the stream is lost
            logger.warning("ESL connection to %s lost: %s", self.address, exc)
        finally:
            self.connected = False
            self._run = False
            waiting, self._commands_sent = self._commands_sent, []
            for result in waiting:
                result.set_exception(_Closed())

    @staticmethod
    def _read_socket(sock, length: int) -> str:
        data = sock.read(length)
        if len(data) < length:
            raise _Closed(f"connection closed {length - len(data)} bytes short of a body")
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Drop the connection now, without the `exit` greenswitch's stop() waits for."""
        self._run = False
        self.connected = False
        greenlets = [g for g in (self._receive_events_greenlet, self._process_events_greenlet) if g]
        gevent.killall(greenlets, block=True, timeout=1)
        for closable in (getattr(self, "sock_file", None), getattr(self, "sock", None)):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()


def within(seconds: float, what: str, address: str, action: Callable[[], object]):
    """Run `action` (gevent waits inside) and give up after `seconds`: ESLUnavailable."""
    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        return action()
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise ESLUnavailable(f"ESL {what} at {address}: no answer within {seconds}s") from None
    finally:
        timer.close()


def open_connection(host: str, port: int, password: str, *, timeout: float) -> ESLConnection:
    """An authenticated connection within `timeout` seconds, or ESLUnavailable / ESLError."""
    connection = ESLConnection(host, port, password, timeout=timeout)
    try:
        within(timeout, "connect", connection.address, connection.open)
    except ESLError:
        connection.close()
        raise
    except OSError as exc:
        connection.close()
        raise ESLUnavailable(f"ESL connect to {connection.address}: {exc or type(exc).__name__}") from exc
    except BaseException:
        connection.close()
        raise
    return connection
