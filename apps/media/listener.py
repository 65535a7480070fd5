"""One node's FreeSWITCH events, into recordings and the change-event path.

`NodeListener` runs in the `freeswitch_events` management command (one per node, its own
systemd unit). Two halves, so that the database never holds the ESL reader (FreeSWITCH
drops a listener that falls 500 events behind):

- the ESL half (engines.freeswitch.EventListener) runs on gevent in the command's main
  thread: it reads events and puts them, parsed, into a bounded EventQueue, never waiting;
- the consumer half runs on a thread of its own and does the slow work: a RECORD_STOP is
  registered with `apps.media.recordings.register_recording` (file sync copies it to every
  node), and every channel event or connection change marks the node's live state changed.

Live views learn of that through the change-event path's Channels groups
(docs/CHANGE_EVENTS.md): a ChangeEvent of kind "nodes.Node" with the node's id goes to
`changes` and `changes.nodes.Node`, and the node page re-reads FreeSWITCH. It is sent with
`apps.core.events.broadcast_changes`, not `announce`: nothing in the database changed, and
an announcement of nodes.Node would also make call control rebuild its snapshot
(nodes.Node is in SNAPSHOT_KINDS) on every answered call. Broadcasts are coalesced to one
per node every BROADCAST_SECONDS: a busy node answers dozens of calls a second, and a view
re-reads everything anyway.

Events of the time the listener was disconnected are lost. A recording whose RECORD_STOP
was missed stays on disk unregistered; `manage.py register_file` registers it by hand.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence

from django.conf import settings
from django.db import close_old_connections, connection

from apps.core.changes import Change
from apps.core.errors import DomainError
from apps.nodes.models import Node
from engines.freeswitch import ConnectionState, Event, EventListener, EventQueue

logger = logging.getLogger(__name__)

NODE_KIND = "nodes.Node"
# What the node page's live view re-reads at most this often.
BROADCAST_SECONDS = 0.5
# Events held while the consumer is busy (a slow database); past that they are dropped.
QUEUE_SIZE = 10_000
# A RECORD_STOP is tried again this many times when the database fails (a Galera
# conflict, a restart); register_recording is idempotent per path.
RECORD_ATTEMPTS = 3
RECORD_RETRY_SECONDS = 1.0

Register = Callable[..., object]
Broadcast = Callable[[Sequence[Change]], None]


def _register_recording(node: Node, *, call_id: str, path: str):
    # Imported when first needed: apps.media.recordings pulls in apps.files.
    from apps.media.recordings import register_recording

    return register_recording(node, call_id=call_id, path=path)


def _broadcast(changes: Sequence[Change]) -> None:
    from apps.core.events import broadcast_changes

    broadcast_changes(changes)


class NodeEvents:
    """The consumer half: takes what the ESL half queued and does the database work."""

    def __init__(
        self,
        node: Node,
        queue: EventQueue,
        *,
        register: Register = _register_recording,
        broadcast: Broadcast = _broadcast,
        interval: float = BROADCAST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        retry_seconds: float = RECORD_RETRY_SECONDS,
    ) -> None:
        self.node = node
        self.queue = queue
        self.register = register
        self.broadcast = broadcast
        self.interval = interval
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.changed = False
        self.last_broadcast = float("-inf")
        self.recorded = 0
        self.connected: bool | None = None

    def run(self, stop: threading.Event, *, drain_seconds: float = 5.0) -> None:
        """Consume until `stop` is set, then what is still queued (for at most `drain_seconds`)."""
        try:
            while not stop.is_set():
                self.consume(self.queue.get(timeout=0.2))
            deadline = self.clock() + drain_seconds
            while self.queue.qsize() and self.clock() < deadline:
                self.consume(self.queue.get(timeout=0))
            self.flush(force=self.changed)
        finally:
            connection.close()  # this thread's own database connection

    def consume(self, item: Event | ConnectionState | None) -> None:
        """Handle one queued event or connection change, then broadcast if it is time."""
        if isinstance(item, Event):
            if item.name == "RECORD_STOP":
                self.record(item)
            self.changed = True
        elif isinstance(item, ConnectionState):
            # FreeSWITCH up or down is news on its own: not held back by the interval.
            self.connected = item.connected
            self.changed = True
            self.flush(force=True)
            return
        self.flush()

    def record(self, event: Event) -> None:
        """Register the recording a RECORD_STOP names, trying again if the database fails."""
        if not event.record_path:
            logger.warning("RECORD_STOP of %s on %s names no file", event.uuid, self.node)
            return
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            close_old_connections()  # a connection the database dropped is replaced
            try:
                self.register(self.node, call_id=event.call_id, path=event.record_path)
            except Exception as exc:
                if isinstance(exc, DomainError) or attempt == RECORD_ATTEMPTS:
                    # A file outside the node's tree, or gone: retrying cannot help.
                    logger.error(
                        "recording %s of call %s on %s not registered: %s",
                        event.record_path,
                        event.call_id,
                        self.node,
                        exc,
                    )
                    return
                time.sleep(self.retry_seconds * attempt)
            else:
                self.recorded += 1
                return

    def flush(self, *, force: bool = False) -> None:
        """Tell live views the node's state changed, at most once every `interval` seconds."""
        now = self.clock()
        if not self.changed or (not force and now - self.last_broadcast < self.interval):
            return
        self.changed = False
        self.last_broadcast = now
        self.broadcast([Change(NODE_KIND, frozenset({self.node.pk}), frozenset({"freeswitch"}))])


class NodeListener:
    """Both halves for one node: run() until stop() (from a signal handler or another thread)."""

    def __init__(
        self,
        node: Node,
        *,
        register: Register = _register_recording,
        broadcast: Broadcast = _broadcast,
        queue_size: int = QUEUE_SIZE,
        **listener_options,
    ) -> None:
        self.node = node
        self.queue = EventQueue(queue_size)
        self.events = NodeEvents(node, self.queue, register=register, broadcast=broadcast)
        listener_options.setdefault("timeout", getattr(settings, "FREESWITCH_ESL_TIMEOUT", 2.0))
        self.listener = EventListener(
            node.management_address,
            node.esl_port,
            node.esl_password,
            on_event=self.queue.put,
            on_state=self.queue.put,
            **listener_options,
        )
        self._stop = threading.Event()

    def run(self) -> None:
        """Listen on this thread (gevent), consume on another; return after stop()."""
        consumer = threading.Thread(
            target=self.events.run, args=(self._stop,), name=f"freeswitch-events-{self.node}", daemon=True
        )
        consumer.start()
        try:
            self.listener.run()
        finally:
            self._stop.set()
            consumer.join(10)
        if self.queue.dropped:
            logger.warning(
                "%s FreeSWITCH events of %s were dropped: the consumer fell behind",
                self.queue.dropped,
                self.node,
            )

    def stop(self) -> None:
        self.listener.stop()
        self._stop.set()
