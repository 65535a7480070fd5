"""One hub per server process: reads the live figures once a tick and pushes each audience its view.

Why per process, and not one publisher for the cluster through the channel layer:

- The sockets of a process are that process's own; the hub calls their `push` directly, so a
  view never travels through the channel layer and cannot reach a socket of another scope,
  another process or another node. With the in-memory layer (one process, `make run`) there
  is nothing else to do; with Redis each node's layer is its own (apps.cluster.topology).
- Every node reads the shared database, so every node's hub sees the same calls, CDRs and
  alerts: no node has to publish for the others, and none can publish twice (a cluster-wide
  publisher would need a lease, and a node losing it would freeze every dashboard).
- The cost is one read per tick per process with sockets, whatever the number of browsers:
  a handful of indexed queries (open reservations, the last 10 s of reservations; CDR
  windows, alerts and node names every SLOW_EVERY ticks or at once on a change).

The hub runs as an asyncio task started with the first socket and stopped with the last. It
also listens to the change-event group (apps.core.events.CHANGES): an alert raised or a
node changed is read and pushed at once, and a "peers.Peer" change re-reads which customers
each audience may see. A database error in a tick is logged, the sockets are told since when
the figures are stale, and the hub goes on.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from apps.core.events import CHANGES
from apps.live import events, figures
from apps.tenancy.scope import Kind, Scope

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# CDR windows, alerts and node names: every this many ticks (~10 s), or at once on a change.
SLOW_EVERY = 10
# Changes that make the next tick re-read the slow part (and come at once).
SLOW_KINDS = {"fraud.Alert", "nodes.Node", "cdr.Cdr"}
VISIBILITY_KINDS = {"peers.Peer", "tenancy.Reseller"}
REJOIN_SECONDS = 600


class Hub:
    """The figures of this process's sockets: one read per tick, one view per audience."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = timezone.now,
        tick_seconds: float = TICK_SECONDS,
        autorun: bool = True,
    ):
        self.clock = clock
        # False: nothing ticks unless told (tests drive `tick` themselves).
        self.autorun = autorun
        self.tick_seconds = tick_seconds
        # audience key -> (Audience, {socket, ...}); a socket has `async push(payload)`.
        self.audiences: dict[tuple, figures.Audience] = {}
        self.sockets: dict[tuple, set] = {}
        # audience key -> the last figures message sent to it (a socket joining gets it at once).
        self.last_sent: dict[tuple, dict] = {}
        self.snapshot: figures.Snapshot | None = None
        self.stale_since: datetime | None = None
        self.ticks = 0
        self.slow_due = True
        self.visibility_due = False
        self.task: asyncio.Task | None = None
        self.listener: asyncio.Task | None = None
        self.listening = False  # the listener has joined the change-event group
        self.wake = asyncio.Event()

    # --- sockets -------------------------------------------------------------------------

    async def join(self, socket, scope: Scope) -> None:
        """Add `socket` to its scope's audience; the first socket starts the hub's loop."""
        key = figures.audience_key(scope)
        if key not in self.audiences:
            self.audiences[key] = await database_sync_to_async(figures.audience_for)(scope)
        self.sockets.setdefault(key, set()).add(socket)
        socket.audience_key = key
        if key in self.last_sent:
            # Its audience's figures have not changed since they were sent: the next tick
            # would not send them, so the newcomer gets them now.
            await socket.push(self.last_sent[key])
        else:
            self.wake.set()  # a new audience: a tick now rather than up to a second later
        if self.autorun and self.task is None:
            self.wake = asyncio.Event()
            self.task = asyncio.ensure_future(self.run())
            self.listener = asyncio.ensure_future(self.listen())

    async def leave(self, socket) -> None:
        """Forget `socket`; the last one stops the loop."""
        key = getattr(socket, "audience_key", None)
        members = self.sockets.get(key)
        if members is not None:
            members.discard(socket)
            if not members:
                self.sockets.pop(key, None)
                self.audiences.pop(key, None)
                self.last_sent.pop(key, None)
        if not self.sockets:
            await self.stop()

    async def stop(self) -> None:
        for task in (self.task, self.listener):
            if task is not None:
                task.cancel()
        for task in (self.task, self.listener):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.task = self.listener = None

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bug in a view must not stop every dashboard of the process
                logger.exception("live figures: a tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.tick_seconds)
            self.wake.clear()

    async def listen(self) -> None:
        """Take the change events of apps.core.events: wake the loop for what the views show."""
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel()
        await layer.group_add(CHANGES, channel)
        self.listening = True
        try:
            while True:
                try:
                    event = await asyncio.wait_for(layer.receive(channel), REJOIN_SECONDS)
                except TimeoutError:
                    # Layers drop a group member after their group_expiry (a day by default):
                    # a hub running for weeks joins again now and then.
                    await layer.group_add(CHANGES, channel)
                    continue
                self.changed(event.get("kind", ""))
        finally:
            self.listening = False
            # The layer may have gone with the process: nothing to leave then.
            with contextlib.suppress(Exception):
                await layer.group_discard(CHANGES, channel)

    def changed(self, kind: str) -> None:
        """A change event: re-read what `kind` touches at the next tick, which comes at once."""
        if kind in VISIBILITY_KINDS:
            self.visibility_due = True
        if kind in SLOW_KINDS:
            self.slow_due = True
        self.wake.set()

    async def tick(self) -> None:
        """Read once, compute each audience's view once, push it to its sockets if it changed."""
        now = self.clock()
        try:
            await database_sync_to_async(self.read)(now)
        except Exception:
            logger.exception("live figures: reading the database failed; the views show them stale")
            if self.stale_since is None:
                self.stale_since = now
            await self.broadcast_stale()
            return
        self.stale_since = None
        for key, audience in list(self.audiences.items()):
            if audience.kind is Kind.CUSTOMER and audience.peer_id not in self.snapshot.watched:
                continue  # joined while this tick read: its calls were not read, the next tick has them
            payload = figures.view(self.snapshot, audience)
            if payload == (self.last_sent.get(key) or {}).get("figures"):
                continue
            self.last_sent[key] = events.figures_message(now, payload)
            await self.send(key, self.last_sent[key])

    def read(self, now: datetime) -> None:
        """The database side of a tick (in a thread): the figures, and visibility when it changed."""
        slow = self.slow_due or self.ticks % SLOW_EVERY == 0
        if self.visibility_due:
            self.visibility_due = False
            for key, audience in list(self.audiences.items()):
                scope = Scope(audience.kind, reseller_id=audience.reseller_id, peer_id=audience.peer_id)
                refreshed = figures.audience_for(scope)
                if key in self.audiences:  # its last socket may have left meanwhile
                    self.audiences[key] = refreshed
        watching = [a.peer_id for a in self.audiences.values() if a.kind is Kind.CUSTOMER and a.peer_id]
        self.snapshot = figures.read(now, previous=self.snapshot, slow=slow, watching=watching)
        if slow:
            self.slow_due = False
        self.ticks += 1

    async def broadcast_stale(self) -> None:
        message = events.stale_message(self.stale_since)
        for key in list(self.sockets):
            await self.send(key, message)
        # Sent again as soon as the database answers, even if nothing changed meanwhile.
        self.last_sent.clear()

    async def send(self, key: tuple, message: dict) -> None:
        for socket in list(self.sockets.get(key, ())):
            try:
                await socket.push(message)
            except Exception:  # a socket closing under us: its disconnect removes it
                logger.debug("live figures: a socket could not be sent to", exc_info=True)


HUB: Hub | None = None


def current() -> Hub:
    """This process's hub (made on first use, inside the server's event loop)."""
    global HUB
    if HUB is None:
        HUB = Hub()
    return HUB
