"""FreeSWITCH's events over ESL: parsed into dataclasses, handed off without waiting, across restarts.

`EventListener.run()` holds one inbound connection subscribed with `event plain` (the only
format greenswitch reads) to the channel events the product uses, the CUSTOM subclasses
asked for, and HEARTBEAT. When FreeSWITCH goes away (restart, crash, network) it connects
again with exponential backoff and subscribes again; events that happened while it was
disconnected are lost, which the consumer must tolerate (a recording is found again by
file sync; a live view re-reads).

It never waits on its consumer: FreeSWITCH queues at most 100,000 events per listener and
drops a listener that falls 500 behind, so `on_event` must return at once. `EventQueue` is
such a consumer: a bounded, thread-safe queue that counts what it had to drop rather than
block the reader; a thread of the consumer's own does the slow work (the database).

A FreeSWITCH that hangs with the TCP connection open sends nothing: HEARTBEAT events come
every 20 s (switch.conf's event-heartbeat-interval), so a connection silent for
`idle_timeout` seconds is dropped and made again.

The listener runs on the gevent hub of the thread that calls run() (a management command's
main thread, or a test's thread); stop() may be called from any thread or a signal handler.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import gevent

from engines.freeswitch.connection import ESLConnection, ESLError, ESLUnavailable, open_connection, within

logger = logging.getLogger(__name__)

CHANNEL_EVENTS = ("CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "RECORD_STOP")
HEARTBEAT = "HEARTBEAT"
# mod_sofia's: a gateway's registration state changed, a profile (re)started.
DEFAULT_CUSTOM = ("sofia::gateway_state", "sofia::profile_start")


@dataclass(frozen=True)
class Event:
    """One FreeSWITCH event, its often-used headers named and every header kept."""

    name: str  # Event-Name: "CHANNEL_ANSWER", ..., "CUSTOM"
    subclass: str  # Event-Subclass of a CUSTOM event ("sofia::gateway_state"), else ""
    uuid: str  # Unique-ID: the channel's
    call_id: str  # variable_sip_call_id: the SIP Call-ID of the channel's leg
    at: datetime | None  # Event-Date-Timestamp (microseconds since the epoch)
    sequence: int | None  # Event-Sequence: FreeSWITCH's counter, reset by a restart
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The name a handler is chosen by: the subclass of a CUSTOM event, else its name."""
        return self.subclass if self.name == "CUSTOM" else self.name

    @property
    def direction(self) -> str:
        return self.headers.get("Call-Direction", "")

    @property
    def caller(self) -> str:
        return self.headers.get("Caller-Caller-ID-Number", "")

    @property
    def destination(self) -> str:
        return self.headers.get("Caller-Destination-Number", "")

    @property
    def hangup_cause(self) -> str:
        return self.headers.get("Hangup-Cause", "")

    @property
    def record_path(self) -> str:
        """RECORD_STOP: the file that was written."""
        return self.headers.get("Record-File-Path", "")

    def variable(self, name: str) -> str:
        """A channel variable carried by the event ("billsec", "sip_h_X-SS-Record"...)."""
        return self.headers.get(f"variable_{name}", "")


def _number(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def read_event(headers: Mapping[str, str]) -> Event:
    """An Event from the headers of an `event plain` event (greenswitch has URL-decoded them)."""
    stamp = _number(headers.get("Event-Date-Timestamp"))
    return Event(
        name=headers.get("Event-Name", ""),
        subclass=headers.get("Event-Subclass", ""),
        uuid=headers.get("Unique-ID", ""),
        call_id=headers.get("variable_sip_call_id", ""),
        at=datetime.fromtimestamp(stamp / 1_000_000, UTC) if stamp else None,
        sequence=_number(headers.get("Event-Sequence")),
        headers=dict(headers),
    )


def subscription(events: Iterable[str], custom: Iterable[str]) -> str:
    """The `event plain` command for `events` and CUSTOM `custom` subclasses."""
    names = list(dict.fromkeys([*events, HEARTBEAT]))
    subclasses = list(custom)
    if subclasses:
        names += ["CUSTOM", *subclasses]
    return "event plain " + " ".join(names)


def backoff(attempt: int, *, first: float, most: float) -> float:
    """Seconds to wait before connecting again after `attempt` failures in a row."""
    return min(most, first * 2 ** max(attempt - 1, 0))


class EventQueue:
    """A bounded hand-off from the ESL reader to a consumer thread: put never waits.

    When the consumer falls `maxsize` events behind, new events are dropped and counted
    (`dropped`): losing an event is better than FreeSWITCH dropping the whole listener.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self.dropped = 0

    def __call__(self, item: object) -> None:
        self.put(item)

    def put(self, item: object) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False

    def get(self, timeout: float | None = None):
        """The next item, or None after `timeout` seconds without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._queue.qsize()


@dataclass(frozen=True)
class ConnectionState:
    """Told to `on_state` whenever the listener connects or loses FreeSWITCH."""

    connected: bool
    reason: str = ""  # why it is not connected
    attempt: int = 0  # failures in a row


class EventListener:
    """Subscribe to FreeSWITCH's events and pass each, parsed, to `on_event`; reconnect for ever."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        on_event: Callable[[Event], object],
        on_state: Callable[[ConnectionState], object] | None = None,
        events: Iterable[str] = CHANNEL_EVENTS,
        custom: Iterable[str] = DEFAULT_CUSTOM,
        timeout: float = 2.0,
        backoff_first: float = 0.5,
        backoff_most: float = 30.0,
        idle_timeout: float = 60.0,
        poll: float = 0.1,
    ) -> None:
        self.host = host.strip("[]")
        self.port = int(port)
        self.password = password
        self.on_event = on_event
        self.on_state = on_state
        self.command = subscription(events, custom)
        self.timeout = timeout
        self.backoff_first = backoff_first
        self.backoff_most = backoff_most
        self.idle_timeout = idle_timeout
        self.poll = poll
        self.connections = 0  # successful subscriptions so far (a restart adds one)
        self._stop = threading.Event()
        self._last_seen = 0.0

    def __repr__(self) -> str:
        return f"EventListener({self.host!r}, {self.port})"

    def stop(self) -> None:
        """Make run() return within `poll` seconds; safe from another thread or a signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Listen until stop(): connect, subscribe, hand events over; on loss, back off and again."""
        failures = 0
        while not self.stopping:
            connection = None
            try:
                connection = self._subscribe()
                failures = 0
                self.connections += 1
                self._tell(ConnectionState(True))
                reason = self._listen(connection)
            except (ESLUnavailable, ESLError) as exc:
                reason = str(exc)
            finally:
                if connection is not None:
                    connection.close()
            if self.stopping:
                break
            failures += 1
            self._tell(ConnectionState(False, reason, failures))
            self._sleep(backoff(failures, first=self.backoff_first, most=self.backoff_most))

    def _subscribe(self) -> ESLConnection:
        connection = open_connection(self.host, self.port, self.password, timeout=self.timeout)
        try:
            reply = within(
                self.timeout, "event", connection.address, lambda: connection.request(self.command)
            )
            text = reply.headers.get("Reply-Text", "")
            if not text.startswith("+OK"):
                raise ESLError(text, command=self.command)
            connection.register_handle("*", self._handle)
        except BaseException:
            connection.close()
            raise
        self._last_seen = time.monotonic()
        return connection

    def _listen(self, connection: ESLConnection) -> str:
        """Wait while events flow; the reason the connection ended ("" when stopped)."""
        while not self.stopping:
            if not connection.alive:
                return f"FreeSWITCH at {connection.address} closed the connection"
            if time.monotonic() - self._last_seen > self.idle_timeout:
                return f"FreeSWITCH at {connection.address} sent nothing for {self.idle_timeout}s"
            gevent.sleep(self.poll)  # the reader and dispatcher greenlets run meanwhile
        return ""

    def _handle(self, raw) -> None:
        """greenswitch's handler for every event: parse, hand over, never raise or wait."""
        self._last_seen = time.monotonic()
        headers = raw.headers
        if headers.get("Content-Type") != "text/event-plain" or headers.get("Event-Name") == HEARTBEAT:
            return  # a disconnect notice, a heartbeat: liveness only
        try:
            self.on_event(read_event(headers))
        except Exception:
            logger.exception("FreeSWITCH event consumer failed on %s", headers.get("Event-Name"))

    def _tell(self, state: ConnectionState) -> None:
        if state.connected:
            logger.info("listening to FreeSWITCH at %s:%s", self.host, self.port)
        else:
            logger.warning(
                "FreeSWITCH at %s:%s: %s (attempt %s)", self.host, self.port, state.reason, state.attempt
            )
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                logger.exception("FreeSWITCH listener's state callback failed")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            gevent.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
