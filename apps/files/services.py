"""The only write path for recordings, captures and their per-node copies.

A file is registered on the node that made it (its origin). Its origin's task queue then
pushes it with rsync to every other enabled node and records, per node, whether it is
there. A failure is kept on the copy (error, attempts) and retried with backoff by the
origin's sweep; `reconcile` catches a node up after it was away. Retention tombstones a
file: the origin deletes its own copy and every other node's, and the tombstone stays so
a node that was away is told to delete too.

By hand (operators, cluster tests), on the origin node:
    register_file(kind="recording", relative_path="node1/2026/11/26/x.wav")
    tasks.sync_now("node1")          # every push/deletion node1's files owe, here and now
    reconcile(node3)                 # queue what node3 is owed on the origins' task queues
or `manage.py register_file PATH` and `manage.py sync_files [--reconcile NODE] [--now]`.
"""

import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, IntegerField, Min, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.audit import services as audit
from apps.cdr.models import Cdr
from apps.cluster.topology import try_send_to_node
from apps.core.db import retry_on_conflict
from apps.core.errors import Conflict, DomainError
from apps.core.services import ensure_manages, save_object
from apps.files.models import FileCopy, NodeStorage, StoredFile
from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.tenancy.models import Reseller
from apps.tenancy.scope import Scope
from engines.rsync import Target, check_relative_path, sha256_of

logger = logging.getLogger(__name__)

PUSH_TASK = "apps.files.tasks.push_file"
SWEEP_BATCH = 500
RETENTION_BATCH = 200
# A retention of 0 days keeps recordings forever; ranked as this many days.
FOREVER = 10**6
# The directory of each kind below a node's sync target.
KIND_DIRS = {StoredFile.Kind.RECORDING: "recordings", StoredFile.Kind.CAPTURE: "captures"}


# --- where files are ---------------------------------------------------------------------


def kind_root(kind: str) -> Path:
    """This node's directory of `kind` files."""
    if kind == StoredFile.Kind.RECORDING:
        return Path(settings.RECORDINGS_DIR)
    if kind == StoredFile.Kind.CAPTURE:
        return Path(settings.CAPTURES_DIR)
    raise DomainError(f"Unknown file kind {kind!r}: use recording or capture.", field="kind")


def path_for(origin: Node, name: str, *, when: datetime | None = None) -> str:
    """The relative path a file called `name` made now on `origin` gets: node/yyyy/mm/dd/name."""
    when = timezone.localtime(when or timezone.now())
    return f"{origin.name}/{when:%Y/%m/%d}/{name}"


def target_for(node: Node) -> Target:
    """Where `node`'s files land: its NodeStorage override, else the FILE_SYNC_TARGET template."""
    storage = NodeStorage.objects.filter(node=node).first()
    if storage is not None:
        return Target(storage.sync_target)
    address = node.management_address
    if ":" in address:
        address = f"[{address}]"  # an IPv6 literal inside a URL or user@host:path
    return Target(settings.FILE_SYNC_TARGET.format(name=node.name, address=address))


def retry_delay(attempts: int) -> timedelta:
    """Backoff before attempt `attempts + 1`: doubling from FILE_SYNC_RETRY_BASE, capped."""
    seconds = settings.FILE_SYNC_RETRY_BASE * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.FILE_SYNC_RETRY_MAX))


# --- registering -------------------------------------------------------------------------


def register_file(
    *,
    kind: str,
    relative_path: str,
    origin: Node | None = None,
    call_id: str = "",
    actor: Scope | None = None,
) -> StoredFile:
    """Record a finished file of this node and queue its push to every other enabled node.

    Registering the same file again returns the existing row; the same path with other
    content is refused, since the other nodes may already hold the first version.
    """
    origin = origin or Node.objects.filter(name=settings.NODE_NAME).first()
    if origin is None:
        raise DomainError(
            f"No node is named {settings.NODE_NAME!r} (NODE_NAME): add it first.", field="origin"
        )
    try:
        check_relative_path(relative_path)
    except ValueError as exc:
        raise DomainError(str(exc), field="relative_path") from None
    path = kind_root(kind) / relative_path
    if not path.is_file():
        raise DomainError(f"{path} is not a file on this node.", field="relative_path")
    # Read outside the transaction: hashing a long recording must not hold row locks.
    return _record_file(
        kind=kind,
        relative_path=relative_path,
        origin=origin,
        size=path.stat().st_size,
        sha256=sha256_of(path),
        call_id=call_id,
        actor=actor or Scope.system(),
    )


@retry_on_conflict
def _record_file(*, kind, relative_path, origin, size, sha256, call_id, actor) -> StoredFile:
    existing = StoredFile.objects.filter(kind=kind, relative_path=relative_path).first()
    if existing is not None:
        if existing.sha256 != sha256 or existing.is_deleted:
            raise Conflict(
                f"{relative_path} is already registered with other content or was deleted.",
                field="relative_path",
            )
        return existing
    stored = StoredFile(
        kind=kind, origin=origin, relative_path=relative_path, size=size, sha256=sha256, call_id=call_id
    )
    save_object(stored, actor=actor, action="file.registered")
    now = timezone.now()
    FileCopy.objects.create(file=stored, node=origin, state=FileCopy.State.PRESENT, verified_at=now)
    for node in Node.objects.enabled().exclude(pk=origin.pk):
        # A retry time even for the first push: if its task is lost, the sweep sends it again.
        FileCopy.objects.create(file=stored, node=node, next_attempt_at=now + retry_delay(1))
        _queue_push(stored, node.name)
    return stored


def _queue_push(stored: StoredFile, target: str, *, verify: bool = False) -> None:
    origin = stored.origin.name
    file_id = stored.pk
    options = {"verify": True} if verify else {}
    # The copy row keeps its next attempt: if the origin cannot be reached now, the sweep
    # (or the origin's catch-up once it is back) sends it again.
    transaction.on_commit(lambda: try_send_to_node(origin, PUSH_TASK, file_id, target, **options))


# --- recording what a push did -----------------------------------------------------------


@retry_on_conflict
def ensure_copy(stored: StoredFile, node: Node) -> FileCopy:
    """The copy row of `stored` on `node`, made pending if the node never had one."""
    copy, _ = FileCopy.objects.get_or_create(
        file=stored, node=node, defaults={"next_attempt_at": timezone.now() + retry_delay(1)}
    )
    return copy


@retry_on_conflict
def record_success(copy: FileCopy, *, state: str) -> FileCopy:
    """Mark `copy` present (verified now) or deleted; its error and retry time are cleared."""
    current = FileCopy.objects.select_for_update().get(pk=copy.pk)
    current.state = state
    current.last_error = ""
    current.next_attempt_at = None
    if state == FileCopy.State.PRESENT:
        current.verified_at = timezone.now()
    current.save()
    return current


@retry_on_conflict
def record_failure(copy: FileCopy, *, error: str, retryable: bool) -> FileCopy:
    """Mark `copy` failed with `error`; a retryable failure gets its next attempt time."""
    current = FileCopy.objects.select_for_update().get(pk=copy.pk)
    current.state = FileCopy.State.FAILED
    current.attempts += 1
    current.last_error = error[:2000]
    # No retry time for an error no retry can fix (a changed source, bad config): the
    # operator's action or a reconcile sends it again once it is fixed.
    current.next_attempt_at = timezone.now() + retry_delay(current.attempts) if retryable else None
    current.save()
    logger.warning(
        "file copy %s on %s failed (%s): %s", current.file_id, current.node_id, current.attempts, error
    )
    return current


@retry_on_conflict
def queue_due_copies(origin: Node, *, now: datetime | None = None) -> int:
    """Send again every copy of `origin`'s files whose retry time has come; returns how many."""
    now = now or timezone.now()
    # A bounded batch: a long outage's backlog goes out over several sweeps, never as one
    # huge Galera write set.
    # Only the copy rows are locked (no join in the locking query): a sweep must not hold
    # the node rows every heartbeat writes.
    locked = (
        FileCopy.objects.due(now=now)
        .filter(file__origin=origin)
        # A disabled node gets no new files (deletions still reach it).
        .exclude(node__enabled=False, file__deleted_at__isnull=True)
        .order_by("next_attempt_at", "pk")
        .select_for_update()
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    due = list(FileCopy.objects.filter(pk__in=list(locked)).select_related("file__origin", "node"))
    for copy in due:
        # Pushed forward now so the next sweep does not send it again while it is queued.
        copy.next_attempt_at = now + retry_delay(copy.attempts + 1)
        copy.save(update_fields=["next_attempt_at", "updated_at"])
        _queue_push(copy.file, copy.node.name)
    return len(due)


@retry_on_conflict
def resend_copies(copy_ids: list[int], *, actor: Scope) -> int:
    """Queue the given copies again now, whatever their retry time (operator only); returns how many."""
    ensure_manages(actor, None)
    owed = FileCopy.objects.backlog().filter(pk__in=copy_ids).select_related("file__origin", "node")
    count = 0
    for copy in owed:
        _queue_push(copy.file, copy.node.name)
        count += 1
    return count


@retry_on_conflict
def reconcile(node: Node, *, verify: bool = False, outgoing: bool = True) -> dict[str, int]:
    """Catch `node` up after it was away: queue every copy to (and from) it not yet where it should be.

    Files registered while the node was disabled get their copy rows; deletions are
    replayed; with `verify`, copies believed present are checked again against their
    origin. `outgoing=False` leaves out the copies of `node`'s own files to other nodes
    (those are the retry sweep's, with its backoff).
    """
    created = 0
    missing = StoredFile.objects.live().exclude(copies__node=node)
    if node.enabled:
        for stored in missing.select_related("origin"):
            FileCopy.objects.create(file=stored, node=node, next_attempt_at=timezone.now() + retry_delay(1))
            created += 1
    involved = FileCopy.objects.filter(Q(node=node) | Q(file__origin=node) if outgoing else Q(node=node))
    involved = involved.select_related("file__origin", "node")
    queued = 0
    for copy in involved.backlog():
        if copy.node_id != copy.file.origin_id and not copy.node.enabled and not copy.file.is_deleted:
            continue  # a disabled node gets no new files; it is caught up when enabled again
        _queue_push(copy.file, copy.node.name)
        queued += 1
    verified = 0
    if verify:
        present = FileCopy.objects.filter(
            node=node, state=FileCopy.State.PRESENT, file__deleted_at__isnull=True
        )
        for copy in present.select_related("file__origin", "node"):
            _queue_push(copy.file, copy.node.name, verify=True)
            verified += 1
    return {"created": created, "queued": queued, "verify": verified}


# --- deleting ----------------------------------------------------------------------------


@retry_on_conflict
def delete_file(stored: StoredFile, *, actor: Scope, reason: str) -> StoredFile:
    """Tombstone `stored` and queue its deletion on its origin and every node that has a copy."""
    ensure_manages(actor, None)
    current = StoredFile.objects.select_for_update().select_related("origin").get(pk=stored.pk)
    if current.is_deleted:
        return current
    current.deleted_at = timezone.now()
    current.deleted_reason = reason[:200]
    current.save(update_fields=["deleted_at", "deleted_reason"])
    audit.record(actor, "file.deleted", current, reason=reason)
    copies = current.copies.exclude(state=FileCopy.State.DELETED).select_related("node")
    for copy in copies:
        copy.state = FileCopy.State.PENDING
        copy.attempts = 0
        copy.last_error = ""
        copy.next_attempt_at = current.deleted_at + retry_delay(1)
        copy.save()
        _queue_push(current, copy.node.name)
    return current


def retention_cutoffs(now: datetime) -> dict[str, datetime]:
    """{kind: files created before this are expired} for kinds kept alike cluster-wide.

    Captures only: recordings are kept per customer (`recording_cutoffs`). A kind kept
    forever is absent.
    """
    days = settings.CAPTURE_RETENTION_DAYS
    return {StoredFile.Kind.CAPTURE: now - timedelta(days=days)} if days > 0 else {}


def recording_cutoffs(now: datetime) -> dict[int, datetime]:
    """{days: before} for every retention some recording may be kept under; forever is absent.

    A handful of distinct values (the cluster's, and those a reseller or customer sets),
    so retention runs one query per value, never one per file.
    """
    peers = Peer.objects.filter(recording_retention_days__isnull=False)
    resellers = Reseller.objects.filter(recording_retention_days__isnull=False)
    values = {
        settings.RECORDING_RETENTION_DAYS,
        *peers.values_list("recording_retention_days", flat=True).distinct(),
        *resellers.values_list("recording_retention_days", flat=True).distinct(),
    }
    return {days: now - timedelta(days=days) for days in sorted(values) if days > 0}


def _kept_days(days):
    # 0 days reads "kept forever" everywhere (as RECORDING_RETENTION_DAYS=0 does): ranked
    # above every finite retention when the longest of several is taken.
    return Case(When(**{days: 0}, then=Value(FOREVER)), default=F(days), output_field=IntegerField())


def recording_kept_days():
    """Per recording: the days its call's customer keeps recordings.

    The customer's own retention, else its reseller's, else the cluster's; a recording
    whose CDR is not in yet (or has no customer) follows the cluster's. Should two
    customers' CDRs claim one file, the longer retention wins: deleting early is the
    mistake that cannot be undone.
    """
    default = settings.RECORDING_RETENTION_DAYS
    owners = (
        cdrs_of_file()
        .annotate(
            owner_days=Coalesce(
                "customer__recording_retention_days",
                "customer__reseller__recording_retention_days",
                Value(default),
                output_field=IntegerField(),
            )
        )
        .annotate(kept=_kept_days("owner_days"))
        .order_by("-kept")
        .values("kept")[:1]
    )
    return Coalesce(Subquery(owners), Value(default or FOREVER), output_field=IntegerField())


def expired_recordings(now: datetime) -> dict[int, "QuerySet[StoredFile]"]:
    """{days: the live recordings kept `days` whose time is over}."""
    recordings = StoredFile.objects.live().filter(kind=StoredFile.Kind.RECORDING)
    return {
        days: recordings.filter(created_at__lt=before).alias(kept=recording_kept_days()).filter(kept=days)
        for days, before in recording_cutoffs(now).items()
    }


def apply_retention(*, now: datetime | None = None, actor: Scope | None = None) -> int:
    """Delete every file older than its retention, on every node; returns how many.

    Captures follow CAPTURE_RETENTION_DAYS; recordings their customer's retention
    (`recording_kept_days`).
    """
    now = now or timezone.now()
    actor = actor or Scope.system()
    deleted = 0
    for kind, before in retention_cutoffs(now).items():
        expired = StoredFile.objects.expired(kind, before=before)
        deleted += _delete_all(expired, actor=actor, reason=f"retention: older than {before:%Y-%m-%d}")
    for days, expired in expired_recordings(now).items():
        deleted += _delete_all(expired, actor=actor, reason=f"retention: older than {days} days")
    return deleted


def _delete_all(expired, *, actor: Scope, reason: str) -> int:
    # One transaction per file: a long backlog never becomes one huge Galera write set.
    # Batches rather than a streaming cursor, which PostgreSQL closes at those commits;
    # a deleted file leaves the query, so each batch starts afresh.
    deleted = 0
    expired = expired.order_by("pk")
    while batch := list(expired[:RETENTION_BATCH]):
        for stored in batch:
            delete_file(stored, actor=actor, reason=reason)
            deleted += 1
    return deleted


# --- the call a file belongs to ----------------------------------------------------------

# A file is registered when its call is over (RECORD_STOP, the capture's last message):
# how long after the CDR's end that may still be, a listener catching up included.
CALL_LINK_SLACK = timedelta(hours=1)


def files_of_call(*, call_id, node, started, ended) -> "QuerySet[StoredFile]":
    """The live files of one call: its Call-ID, made on its node, during it (or just after).

    A Call-ID is chosen by the caller's phone and a callee sees it, so it alone would let a
    customer who reuses another's Call-ID claim that call's recording; the node and the
    time of the call pin the file to the CDR. Arguments are values or OuterRef expressions.
    """
    return StoredFile.objects.live().filter(
        call_id=call_id, origin=node, created_at__gte=started, created_at__lte=ended + CALL_LINK_SLACK
    )


def files_of_cdr(cdr) -> "QuerySet[StoredFile]":
    """The live files (recordings, captures) of `cdr`, by `files_of_call`."""
    if not cdr.call_id or cdr.node_id is None:
        return StoredFile.objects.none()
    return files_of_call(
        call_id=cdr.call_id, node=cdr.node_id, started=cdr.created_at, ended=cdr.ended_at or cdr.created_at
    )


def files_of_outer_cdr() -> "QuerySet[StoredFile]":
    """`files_of_call` for the CDR of an outer query (Exists, Subquery)."""
    return files_of_call(
        call_id=OuterRef("call_id"),
        node=OuterRef("node"),
        started=OuterRef("created_at"),
        ended=Coalesce(OuterRef("ended_at"), OuterRef("created_at")),
    )


def cdrs_of_file():
    """The CDRs of the file of an outer query: `files_of_call` read the other way round."""
    return (
        Cdr.objects.alias(ended=Coalesce("ended_at", "created_at"))
        .filter(call_id=OuterRef("call_id"), node=OuterRef("origin"), created_at__lte=OuterRef("created_at"))
        .filter(ended__gte=OuterRef("created_at") - CALL_LINK_SLACK)
    )


# --- node storage ------------------------------------------------------------------------


@retry_on_conflict
def set_node_storage(node: Node, *, actor: Scope, sync_target: str) -> NodeStorage | None:
    """Give `node` its own sync target, or (empty) fall back to FILE_SYNC_TARGET."""
    ensure_manages(actor, None)
    storage = NodeStorage.objects.filter(node=node).first()
    if not sync_target:
        if storage is not None:
            audit.record(actor, "node.storage_removed", node)
            storage.delete()
        return None
    storage = storage or NodeStorage(node=node)
    storage.sync_target = sync_target
    return save_object(storage, actor=actor, action="node.storage_changed")


# --- status ------------------------------------------------------------------------------


def backlog_by_node() -> dict[str, dict]:
    """{node name: {"pending", "failed", "present", "deleting", "oldest", "last_error"}} for every node.

    pending/failed count copies of live files not yet verified on the node; deleting counts
    tombstoned files not yet confirmed gone from it; oldest is the creation time of the
    oldest file still owed to the node (None when none is).
    """
    live = Q(file__deleted_at__isnull=True)
    rows = FileCopy.objects.values("node__name").annotate(
        pending=Count("pk", filter=live & Q(state=FileCopy.State.PENDING)),
        failed=Count("pk", filter=live & Q(state=FileCopy.State.FAILED)),
        present=Count("pk", filter=live & Q(state=FileCopy.State.PRESENT)),
        deleting=Count("pk", filter=~live & ~Q(state=FileCopy.State.DELETED)),
        oldest=Min("file__created_at", filter=live & ~Q(state=FileCopy.State.PRESENT)),
    )
    backlog = {
        node.name: {"pending": 0, "failed": 0, "present": 0, "deleting": 0, "oldest": None, "last_error": ""}
        for node in Node.objects.all()
    }
    for row in rows:
        backlog[row.pop("node__name")].update(row)
    for name, counts in backlog.items():
        # Only nodes with failures, a handful of indexed lookups, not a scan of every error.
        if counts["failed"] or counts["deleting"]:
            failed = FileCopy.objects.filter(node__name=name, state=FileCopy.State.FAILED)
            latest = failed.order_by("-updated_at").values_list("last_error", flat=True).first()
            counts["last_error"] = latest or ""
    return backlog
