"""django-q2 entry points of file sync: take ids and names, do one thing, record it."""

import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.cluster import schedules
from apps.cluster.schedules import Kind, Periodic
from apps.files import services
from apps.files.models import FileCopy, StoredFile
from apps.nodes.models import Node
from engines.rsync import ChecksumMismatch, Rsync, RsyncError, sha256_of

logger = logging.getLogger(__name__)

SCHEDULES = {
    # Each node sends again the failed copies of its own files whose backoff is over.
    "Retry file copies": Periodic("apps.files.tasks.retry_due_copies", 1),
    # Each node asks for what it is owed: a node back from an outage catches up by itself.
    "Catch up this node's files": Periodic("apps.files.tasks.catch_up", 10),
    "Delete files past retention": Periodic("apps.files.tasks.apply_retention", 60, Kind.SINGLETON),
}


def driver() -> Rsync:
    return Rsync(timeout=settings.FILE_SYNC_TIMEOUT, io_timeout=settings.FILE_SYNC_IO_TIMEOUT)


def push_file(file_id: int, target: str, verify: bool = False) -> str:
    """On the file's origin: bring its copy on node `target` to what the file wants.

    A live file is pushed and verified (skipped when already verified present, unless
    `verify`); a deleted file is deleted there. Running it twice, or after the work was
    done, changes nothing.
    """
    stored = StoredFile.objects.select_related("origin").filter(pk=file_id).first()
    node = Node.objects.filter(name=target).first()
    if stored is None or node is None:
        return f"skipped: file {file_id} or node {target!r} no longer exists"
    if stored.origin.name != settings.NODE_NAME:
        # Only the origin has the source file; a task that reached another node's queue
        # (a renamed node, a hand-queued task) must not record a false failure.
        return f"skipped: {stored} is pushed by {stored.origin.name}, this is {settings.NODE_NAME}"
    return sync_copy(stored, node, verify=verify)


def sync_copy(stored: StoredFile, node: Node, *, verify: bool = False) -> str:
    """Push `stored` to `node` (or delete it there) from this process, which must see its source."""
    copy = services.ensure_copy(stored, node)
    if stored.is_deleted:
        return _delete(stored, copy)
    if copy.state == FileCopy.State.PRESENT and not verify:
        return "already present"
    return _push(stored, copy, verify=verify)


def sync_now(origin: str | None = None, *, target: str | None = None) -> dict[tuple[int, str], str]:
    """Do now, in this process, every push and deletion owed by `origin`'s files (to `target`).

    For operators (`manage.py sync_files`) and cluster tests; ignores retry times. The
    process must see the origin's RECORDINGS_DIR/CAPTURES_DIR. Returns {(file id, node): result}.
    """
    origin_node = Node.objects.get(name=origin or settings.NODE_NAME)
    owed = FileCopy.objects.backlog().filter(file__origin=origin_node).select_related("file__origin", "node")
    if target:
        owed = owed.filter(node__name=target)
    results = {}
    for copy in owed.order_by("file_id", "node__name"):
        if not copy.node.enabled and not copy.file.is_deleted:
            continue
        results[(copy.file_id, copy.node.name)] = sync_copy(copy.file, copy.node)
    return results


def _push(stored: StoredFile, copy: FileCopy, *, verify: bool = False) -> str:
    root = services.kind_root(stored.kind)
    outcome = "present"
    try:
        if copy.node_id == stored.origin_id:
            _check_local(root / stored.relative_path, stored)
        else:
            rsync = driver()
            target = services.target_for(copy.node)
            directory = services.KIND_DIRS[stored.kind]
            if verify and copy.state == FileCopy.State.PRESENT:
                try:
                    rsync.verify(root, stored.relative_path, target, directory, size=stored.size)
                except RsyncError as exc:
                    if exc.exit_code is not None:
                        raise  # the node is unreachable: nothing was learnt about the copy
                    # Missing or different on the target: say so, then send it again.
                    logger.warning("copy of %s on %s is damaged: %s", stored, copy.node.name, exc)
                    outcome = f"repaired: {exc}"
                else:
                    services.record_success(copy, state=FileCopy.State.PRESENT)
                    return "verified"
            rsync.push(root, stored.relative_path, target, directory, size=stored.size, sha256=stored.sha256)
    except (RsyncError, ValueError) as exc:
        retryable = getattr(exc, "retryable", False)
        services.record_failure(copy, error=str(exc), retryable=retryable)
        return f"failed: {exc}"
    services.record_success(copy, state=FileCopy.State.PRESENT)
    return outcome


def _check_local(path: Path, stored: StoredFile) -> None:
    if not path.is_file():
        raise RsyncError(f"{path} is missing on its origin.", retryable=False)
    if path.stat().st_size != stored.size or sha256_of(path) != stored.sha256:
        raise ChecksumMismatch(f"{path} no longer matches its registered SHA-256.", retryable=False)


def _delete(stored: StoredFile, copy: FileCopy) -> str:
    if copy.state == FileCopy.State.DELETED:
        return "already deleted"
    root = services.kind_root(stored.kind)
    try:
        if copy.node_id == stored.origin_id:
            (root / stored.relative_path).unlink(missing_ok=True)
        else:
            with tempfile.TemporaryDirectory(prefix="smartswitch-empty-") as empty:
                driver().delete(
                    services.target_for(copy.node),
                    services.KIND_DIRS[stored.kind],
                    stored.relative_path,
                    empty_dir=Path(empty),
                )
    except (RsyncError, OSError, ValueError) as exc:
        services.record_failure(copy, error=str(exc), retryable=getattr(exc, "retryable", True))
        return f"failed: {exc}"
    services.record_success(copy, state=FileCopy.State.DELETED)
    return "deleted"


def retry_due_copies() -> int:
    """On each node, every minute: send again the copies of this node's files whose time has come."""
    origin = Node.objects.filter(name=settings.NODE_NAME).first()
    return services.queue_due_copies(origin, now=timezone.now()) if origin else 0


def reconcile(node_name: str, verify: bool = False) -> dict:
    """Catch `node_name` up after it was away (anywhere: it only queues pushes on the origins)."""
    node = Node.objects.get(name=node_name)
    return services.reconcile(node, verify=verify)


def catch_up() -> dict:
    """On each node, every few minutes: queue on their origins the copies this node is owed."""
    node = Node.objects.filter(name=settings.NODE_NAME).first()
    return services.reconcile(node, outgoing=False) if node else {}


def apply_retention() -> int:
    """Cluster-wide singleton, daily: delete files past their kind's retention on every node."""
    return services.apply_retention()


def ensure_schedules(**kwargs) -> None:
    """Create the periodic tasks once per enabled node; an operator's later changes are kept."""
    schedules.ensure(SCHEDULES)
