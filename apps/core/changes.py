"""Announce what a service changed: the one path from every writer to what mirrors or caches it.

Zulip's send_event_on_commit is the model. A service that writes something other parts
keep a copy of (call control's snapshot, the OpenSIPS tables, live views) says so itself,
whatever ORM call it used, save(), update(), bulk_create() or raw SQL:

    announce("peers.Peer", ids=[peer.pk], fields=["suspended_at", "suspended_reason"])

Model signals are not that path: update() and bulk_create() never send them, and a
suspended customer that call control never heard of kept calling.

Consumers are registered here and nowhere else, by dotted path, imported on first use (core
imports no other app). There are two phases:

IN_TRANSACTION  called at once with the one change, inside the announcing transaction:
                what they write (the OpenSIPS tables and their reload marks) commits with
                the models, and a write conflict replays both (apps.core.db). An error
                here is the service's error and rolls everything back.
AFTER_COMMIT    called once per committed transaction with every change it announced,
                merged per kind (call control's generation counter, the nodes' schedule
                rows, the Channels groups). A rolled-back transaction announces nothing.
                Outside a transaction they run at once. An error is logged and the next
                consumer still runs: the change is committed and the service has succeeded.

A savepoint rolled back after the transaction's last announcement may leave its changes in
the batch: consumers then re-read something that did not change, which costs a rebuild and
is never wrong. docs/CHANGE_EVENTS.md tells the whole story.
"""

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

IN_TRANSACTION = ("apps.opensips.provisioning.provision_change",)
AFTER_COMMIT = (
    "apps.callcontrol.generation.changes_committed",
    "apps.cluster.schedules.nodes_changed",
    "apps.core.events.broadcast_changes",
)


@dataclass(frozen=True)
class Change:
    """Rows of one model that changed: `kind` is its label ("peers.Peer").

    Empty `ids` means some or all rows of the kind; empty `fields` means any field (a row
    created or deleted, or a change not worth itemising).
    """

    kind: str
    ids: frozenset = frozenset()
    fields: frozenset = frozenset()


def announce(
    kind: str, ids: Iterable = (), *, fields: Iterable[str] = (), using: str = DEFAULT_DB_ALIAS
) -> None:
    """Tell every consumer that rows `ids` of model `kind` changed, in this transaction.

    Call it after the write, in the service's transaction.
    """
    apps.get_model(kind)  # a misspelt kind fails here, not silently downstream
    change = Change(kind, frozenset(ids), frozenset(fields))
    connection = connections[using]
    if not connection.in_atomic_block:
        with transaction.atomic(using=using):
            _run(IN_TRANSACTION, change)
        _deliver([change])
        return
    _run(IN_TRANSACTION, change)
    batch = _open_batch(connection, using)
    entry = _Entry(batch, change)
    batch.entries.append(entry)
    transaction.on_commit(entry, using=using)


def merged(changes: Iterable[Change]) -> list[Change]:
    """One change per kind, in the order kinds were first announced."""
    kinds: dict[str, list[Change]] = {}
    for change in changes:
        kinds.setdefault(change.kind, []).append(change)
    result = []
    for kind, group in kinds.items():
        ids = frozenset() if any(not c.ids for c in group) else frozenset().union(*(c.ids for c in group))
        fields = (
            frozenset() if any(not c.fields for c in group) else frozenset().union(*(c.fields for c in group))
        )
        result.append(Change(kind, ids, fields))
    return result


# --- the batch of one transaction ---------------------------------------------------------


class _Batch:
    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.delivered = False

    def deliver(self) -> None:
        if self.delivered:
            return
        self.delivered = True
        _deliver([entry.change for entry in self.entries])


class _Entry:
    """One announcement's on_commit callback: Django drops it if its savepoint rolls back."""

    def __init__(self, batch: _Batch, change: Change) -> None:
        self.batch = batch
        self.change = change

    def __call__(self) -> None:
        # The first entry to run delivers the whole batch; the others find it delivered.
        self.batch.deliver()


_state = threading.local()  # connections are per thread: so are their batches


def _open_batch(connection, using: str) -> _Batch:
    """The batch of the transaction in progress, with the entries still due at its commit."""
    batches = getattr(_state, "batches", None)
    if batches is None:
        batches = _state.batches = {}
    batch = batches.get(using)
    if batch is not None and not batch.delivered:
        # Entries a rollback dropped (the whole transaction, or a savepoint) are gone from
        # the connection's commit callbacks: their changes never happened.
        pending = {id(func) for _sids, func, _robust in connection.run_on_commit}
        batch.entries = [entry for entry in batch.entries if id(entry) in pending]
        if batch.entries:
            return batch
    batch = batches[using] = _Batch()
    return batch


# --- the consumers ------------------------------------------------------------------------


@cache
def _consumers(paths: tuple[str, ...]) -> tuple[Callable, ...]:
    return tuple(import_string(path) for path in paths)


def _run(paths: tuple[str, ...], change: Change) -> None:
    for consumer in _consumers(paths):
        consumer(change)


def _deliver(changes: Sequence[Change]) -> None:
    batch = merged(changes)
    if not batch:
        return
    for consumer in _consumers(AFTER_COMMIT):
        try:
            consumer(batch)
        except Exception:
            logger.exception(
                "change consumer %s failed on %s", consumer.__qualname__, ", ".join(c.kind for c in batch)
            )
