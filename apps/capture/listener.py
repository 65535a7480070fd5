"""The HEP capture listener: one per node, on a loopback or management address.

OpenSIPS (tracer + proto_hep) and FreeSWITCH (sofia capture-server) send every traced
SIP message as a HEPv3 UDP datagram. The receive loop only parses and groups (no
database, no disk): a finished call goes to a bounded queue and a writer thread writes
its pcap and registers it with the file sync. If the writer falls behind, finished calls
are dropped and counted rather than letting the socket buffer overflow with live calls.
"""

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from apps.capture.collector import Collector, FinishedCall
from apps.capture.hep import MAX_PACKET, HepError, parse

logger = logging.getLogger(__name__)

RECEIVE_BUFFER = 4 * 1024 * 1024  # about 4000 SIP messages of burst while the loop is busy
# How often the loop looks for finished calls when no packet comes.
TICK = 0.25


@dataclass(frozen=True)
class ListenerSettings:
    """Where the listener listens and how much it holds; read from Django settings."""

    address: str = "127.0.0.1"
    port: int = 9060
    linger: float = 3.0
    idle: float = 7200.0
    max_calls: int = 5000
    max_messages: int = 500
    queue_size: int = 1000
    only_traced: bool = True

    @classmethod
    def from_django(cls) -> "ListenerSettings":
        return cls(
            address=getattr(settings, "CAPTURE_HEP_ADDRESS", cls.address),
            port=int(getattr(settings, "CAPTURE_HEP_PORT", cls.port)),
            linger=float(getattr(settings, "CAPTURE_LINGER_SECONDS", cls.linger)),
            idle=float(getattr(settings, "CAPTURE_IDLE_SECONDS", cls.idle)),
            max_calls=int(getattr(settings, "CAPTURE_MAX_CALLS", cls.max_calls)),
            max_messages=int(getattr(settings, "CAPTURE_MAX_MESSAGES", cls.max_messages)),
        )


@dataclass
class Counters:
    """What the listener did, for its log line and the tests."""

    received: int = 0
    malformed: int = 0
    written: int = 0
    write_errors: int = 0
    queue_full: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Writer(threading.Thread):
    """Writes finished calls off the receive path: `save` does the disk and database work."""

    def __init__(self, save: Callable[[FinishedCall], object], counters: Counters, size: int) -> None:
        super().__init__(name="capture-writer", daemon=True)
        self.save = save
        self.counters = counters
        self.queue: queue.Queue[FinishedCall | None] = queue.Queue(maxsize=size)

    def offer(self, call: FinishedCall) -> None:
        """Queue `call` without ever blocking the receive loop."""
        try:
            self.queue.put_nowait(call)
        except queue.Full:
            self.counters.queue_full += 1
            logger.warning("capture writer behind: call %s not written", call.call_id)

    def run(self) -> None:
        while (call := self.queue.get()) is not None:
            try:
                self.save(call)
                self.counters.written += 1
            except Exception:
                self.counters.write_errors += 1
                logger.exception("capture of %s not saved", call.call_id)
            finally:
                close_old_connections()

    def stop(self, timeout: float) -> None:
        """Write what is queued, then end (waits at most `timeout` seconds)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout)
        self.join(timeout)


class Listener:
    """The receive loop: datagrams in, finished calls out to the writer."""

    def __init__(
        self,
        config: ListenerSettings,
        save: Callable[[FinishedCall], object],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.counters = Counters()
        self.collector = Collector(
            linger=config.linger,
            idle=config.idle,
            max_calls=config.max_calls,
            max_messages=config.max_messages,
        )
        self.writer = Writer(save, self.counters, config.queue_size)
        self.stopping = threading.Event()
        self.sock = self._bind()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((self.config.address, self.config.port))
        sock.settimeout(TICK)
        return sock

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def serve(self) -> None:
        """Receive until stop(); then write every call still held (a restart loses nothing held)."""
        self.writer.start()
        try:
            while not self.stopping.is_set():
                self.receive_once()
                self._hand_over(self.collector.due(now=self.clock()))
        finally:
            self._hand_over(self.collector.drain())
            self.writer.stop(timeout=30)
            self.sock.close()

    def receive_once(self) -> None:
        try:
            data = self.sock.recv(MAX_PACKET)
        except TimeoutError:
            return
        except OSError:
            if self.stopping.is_set():
                return
            raise
        self.counters.received += 1
        try:
            packet = parse(data)
        except HepError as exc:
            self.counters.malformed += 1
            logger.debug("not HEP: %s", exc)
            return
        self._hand_over(self.collector.add(packet, now=self.clock()))

    def _hand_over(self, finished: list[FinishedCall]) -> None:
        for call in finished:
            self.counters.by_reason[call.reason] = self.counters.by_reason.get(call.reason, 0) + 1
            if call.messages:
                self.writer.offer(call)

    def stop(self) -> None:
        self.stopping.set()
