"""FreeSWITCH's commands over ESL: status, channels, hang up, record, reload, sofia status.

Every command is `api <command>` on an inbound connection (connection.py), and completes or
fails within the client's timeout. Used as a context manager the client keeps one
connection for several commands (the admin page asks five questions: one TCP connection and
one `auth`); otherwise each command opens and closes its own.

Protocol facts this relies on, read in FreeSWITCH 1.10.12's mod_commands.c and mod_sofia.c
and checked against a running 1.10.12 (the live tests in tests/engines):

- `api` answers with an api/response whose body is the command's text. A refusal is text
  too: "-ERR ..." or "-USAGE: ..." (an unknown command: "-ERR <cmd> Command not found!").
- `uuid_kill` answers "+OK" or "-ERR No such channel!"; `uuid_record` "+OK Success" or
  "-ERR Cannot locate session!" for a uuid it does not know.
- `uuid_buglist` of a uuid it does not know writes nothing, and `api` answers "-ERR no reply".
- `reloadxml` always answers "+OK [<message>]": the message is "Success" or why the XML
  could not be read (the old configuration stays in force).
- `show channels` has no offset or limit: it always sends every channel, so a page is cut
  here. Each channel is about 1.5 kB of JSON.
- `uuid_record` splits its arguments on spaces: a path with a space cannot be recorded to.
"""

from enum import StrEnum
from types import TracebackType

from engines.freeswitch.connection import (
    ESLConnection,
    ESLError,
    ESLUnavailable,
    NoSuchChannel,
    command_name,
    open_connection,
    within,
)
from engines.freeswitch.state import (
    ChannelPage,
    SofiaEntry,
    SofiaGateway,
    SofiaProfile,
    Status,
    read_channels,
    read_recordings,
    read_sofia_gateways,
    read_sofia_profile,
    read_sofia_status,
    read_status,
)

DEFAULT_PORT = 8021
NO_REPLY = "-ERR no reply"


class CallEnd(StrEnum):
    """What became of a channel FreeSWITCH was asked to hang up."""

    ENDED = "ended"  # it was up; FreeSWITCH hung it up (BYE or CANCEL to its side)
    GONE = "gone"  # FreeSWITCH has no channel of that uuid: the call is over


def _no_spaces(value: str, what: str) -> str:
    if not value or any(char.isspace() for char in value):
        raise ValueError(f"An ESL {what} is one word without spaces, not {value!r}.")
    return value


class ESLClient:
    """`api` commands to one FreeSWITCH; each completes or fails within `timeout` seconds."""

    def __init__(
        self, host: str, port: int = DEFAULT_PORT, password: str = "", *, timeout: float = 2.0
    ) -> None:
        if not host:
            raise ValueError("An ESL client needs FreeSWITCH's address.")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"An ESL port is between 1 and 65535, not {port}.")
        if timeout <= 0:
            raise ValueError("The ESL timeout is a positive number of seconds.")
        self.host = host.strip("[]")  # an IPv6 address as a node stores it, or bracketed
        self.port = int(port)
        self.password = password
        self.timeout = timeout
        self._connection: ESLConnection | None = None

    def __repr__(self) -> str:
        return f"ESLClient({self.host!r}, {self.port}, timeout={self.timeout})"

    # --- Connection ---------------------------------------------------------------------

    def __enter__(self) -> "ESLClient":
        self._connection = open_connection(self.host, self.port, self.password, timeout=self.timeout)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def api(self, command: str) -> str:
        """Run `api <command>` and return its text; a -ERR or -USAGE answer raises ESLError."""
        if "\n" in command or "\r" in command:
            raise ValueError("An ESL command is one line.")
        text = self._exchange(f"api {command}")
        if text.startswith(("-ERR", "-USAGE")):
            reply = text.strip()
            if reply.startswith(("-ERR No such channel", "-ERR Cannot locate session")):
                raise NoSuchChannel(reply, command=command)
            raise ESLError(reply, command=command)
        return text

    def _exchange(self, line: str) -> str:
        if self._connection is not None:
            # A session is one connection: once lost (or given up on) every later command
            # fails at once, so a dead FreeSWITCH costs a page one timeout, not one each.
            if not self._connection.alive:
                raise ESLUnavailable(
                    f"ESL connection to {self._connection.address} is closed (lost or given up on)"
                )
            return self._send(self._connection, line)
        # One deadline for the whole exchange: connect, auth, command and reply.
        address = f"{self.host}:{self.port}"

        def connect_and_send() -> str:
            connection = open_connection(self.host, self.port, self.password, timeout=self.timeout)
            try:
                return self._send(connection, line, deadline=False)
            finally:
                connection.close()

        return within(self.timeout, command_name(line), address, connect_and_send)

    def _send(self, connection: ESLConnection, line: str, *, deadline: bool = True) -> str:
        def send() -> str:
            reply = connection.request(line)
            return getattr(reply, "data", None) or reply.headers.get("Reply-Text", "")

        try:
            return within(self.timeout, command_name(line), connection.address, send) if deadline else send()
        except ESLUnavailable:
            # A reply may still be on its way: it would answer the next command. Never reuse.
            connection.close()
            raise

    # --- Commands -----------------------------------------------------------------------

    def status(self) -> Status:
        """Version, uptime, channels now and the most FreeSWITCH allows."""
        return self._read("status", read_status)

    def channels(self, *, offset: int = 0, limit: int | None = None) -> ChannelPage:
        """The channels FreeSWITCH holds, oldest first: `limit` of them from `offset`, and the total."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit are not negative.")
        total, channels = self._read("show channels as json", read_channels)
        end = None if limit is None else offset + limit
        return ChannelPage(total=total, channels=channels[offset:end])

    def hang_up(self, uuid: str, cause: str | None = None) -> CallEnd:
        """Hang up channel `uuid` (with a cause such as NORMAL_CLEARING); GONE if it is not there."""
        command = f"uuid_kill {_no_spaces(uuid, 'uuid')}"
        if cause:
            command += f" {_no_spaces(cause, 'hangup cause')}"
        try:
            self.api(command)
        except NoSuchChannel:
            return CallEnd.GONE
        return CallEnd.ENDED

    def start_recording(self, uuid: str, path: str, *, limit_seconds: int | None = None) -> None:
        """Record channel `uuid` into `path` (FreeSWITCH creates the file; its format by suffix)."""
        command = f"uuid_record {_no_spaces(uuid, 'uuid')} start {_no_spaces(path, 'path')}"
        if limit_seconds:
            command += f" {int(limit_seconds)}"
        self.api(command)

    def stop_recording(self, uuid: str, path: str = "all") -> None:
        """Stop recording channel `uuid` into `path` ("all": every recording of it)."""
        self.api(f"uuid_record {_no_spaces(uuid, 'uuid')} stop {_no_spaces(path, 'path')}")

    def recordings(self, uuid: str) -> list[str]:
        """The files channel `uuid` is being recorded to now (none when it is gone)."""
        try:
            return self._read(f"uuid_buglist {_no_spaces(uuid, 'uuid')}", read_recordings)
        except ESLError as exc:
            # uuid_buglist writes nothing for a uuid it cannot find, and `api` then answers this.
            if exc.reply == NO_REPLY:
                return []
            raise

    def reload_xml(self) -> None:
        """Make FreeSWITCH read its XML configuration again; ESLError when it cannot."""
        reply = self.api("reloadxml").strip()
        if reply != "+OK [Success]":
            raise ESLError(reply, command="reloadxml")

    def sofia_status(self) -> list[SofiaEntry]:
        """Every running SIP profile, alias and gateway (`sofia xmlstatus`)."""
        return self._read("sofia xmlstatus", read_sofia_status)

    def sofia_profile(self, name: str) -> SofiaProfile | None:
        """One SIP profile's addresses and codecs; None when no such profile runs."""
        return self._read(f"sofia xmlstatus profile {_no_spaces(name, 'profile name')}", read_sofia_profile)

    def sofia_gateways(self) -> list[SofiaGateway]:
        """Every gateway of every running profile, with its registration and ping state."""
        return self._read("sofia xmlstatus gateway", read_sofia_gateways)

    def _read(self, command: str, reader):
        text = self.api(command)
        try:
            return reader(text)
        except ValueError as exc:
            raise ESLError(f"unreadable reply ({exc})", command=command) from None
