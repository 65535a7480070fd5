"""Node presence: every node's worker says it is alive, with its own Galera member's state.

Why a thread in the workers and not a schedule: django-q2 1.11 schedules have a one-minute
granularity (MINUTES/cron, and its scheduler only looks at them every 30 s), and a loop task
would hold a worker and could wait behind a queue of long tasks (a 15-minute rsync) and look
dead. So every worker process of the node's qcluster starts a daemon thread when it spawns
(django-q2's `post_spawn` signal). The threads of one node agree through a file lock that one
of them beats and the others stand by; if that worker dies (timeout, recycle, crash) the lock
goes with it and another worker's thread takes over at its next tick. The thread beats while
its worker runs the billing loop: the loop waits on the database and sleeps, and the thread
gets its turn. It beats only while its worker's parent (the qcluster) is alive, so a node
whose qcluster is gone goes stale rather than being kept alive by orphans.

A beat is: Node.last_heartbeat (apps.nodes.services.record_heartbeat), this node's
NodeStatus row (read from its own database connection: on Galera, its own member's view),
and the cluster-wide leases it holds or can take (apps.cluster.leases.keep).
"""

import fcntl
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from apps.cluster import dns, leases
from apps.cluster.models import Lease, NodeStatus
from apps.core.db import retry_on_conflict
from apps.files.services import backlog_by_node
from apps.nodes.models import EngineSync, Node
from apps.nodes.services import record_heartbeat
from apps.nodes.sync import forget_reloads
from engines.opensips.install_layout import find_binary

logger = logging.getLogger(__name__)

NOT_INSTALLED = EngineSync.NOT_INSTALLED
WSREP_VARIABLES = ("wsrep_cluster_size", "wsrep_local_state_comment", "wsrep_ready", "wsrep_cluster_status")


@dataclass(frozen=True)
class GaleraState:
    """One member's view of its Galera cluster; member=False when the database is not one."""

    member: bool
    cluster_size: int | None = None
    local_state: str = ""
    ready: bool | None = None
    cluster_status: str = ""
    error: str = ""

    def summary(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if not self.member:
            return "not a Galera member"
        ready = "ready" if self.ready else "NOT ready"
        return f"{self.local_state}, {self.cluster_status}, size {self.cluster_size}, {ready}"


def galera_state(*, using: str = DEFAULT_DB_ALIAS) -> GaleraState:
    """Ask this node's own database for its Galera status (`SHOW GLOBAL STATUS LIKE 'wsrep_%'`).

    The answer is this member's own, and it must come also while the cluster stalls (its
    members wait some seconds before they evict a dead one; /health/ asks meanwhile). So it
    is asked without waiting for the cluster (wsrep_sync_wait), on a connection of its own:
    a new Django connection begins with a SELECT of the server's version, which would wait.
    """
    connection = connections[using]
    if connection.vendor != "mysql":
        return GaleraState(member=False)
    try:
        raw = connection.get_new_connection(connection.get_connection_params())
        try:
            with raw.cursor() as cursor:
                cursor.execute("SET STATEMENT wsrep_sync_wait = 0 FOR SHOW GLOBAL STATUS LIKE 'wsrep\\_%'")
                status = {name.lower(): value for name, value in cursor.fetchall()}
        finally:
            raw.close()
    except Exception as exc:  # a member out of sync may refuse even this: that is its state
        return GaleraState(member=True, error=str(exc)[:200])
    return from_status(status)


def from_status(status: dict[str, str]) -> GaleraState:
    """The GaleraState of a member's `SHOW GLOBAL STATUS LIKE 'wsrep_%'` rows (lower-case names)."""
    # Plain MariaDB shows the wsrep variables too, with no provider loaded behind them.
    if not status.get("wsrep_provider_name"):
        return GaleraState(member=False)
    size = status.get("wsrep_cluster_size", "")
    return GaleraState(
        member=True,
        cluster_size=int(size) if str(size).isdigit() else None,
        local_state=status.get("wsrep_local_state_comment", ""),
        ready=status.get("wsrep_ready", "").upper() == "ON",
        cluster_status=status.get("wsrep_cluster_status", ""),
    )


def opensips_installed() -> bool:
    """Whether this machine has the opensips binary (OPENSIPS_BIN, or `opensips` on PATH)."""
    binary = find_binary(settings.OPENSIPS_BIN)
    return binary is not None and binary.is_file() and os.access(binary, os.X_OK)


@retry_on_conflict
def record_status(
    node_name: str, state: GaleraState, *, reporter: str = "", opensips: bool | None = None
) -> NodeStatus | None:
    """Store that `node_name` is alive now in the state `state`; None when no such node exists.

    `opensips` is whether the node has OpenSIPS installed (None: not looked).
    """
    # Each node writes only its own row, so nodes never conflict on these writes in Galera.
    if not record_heartbeat(node_name):
        return None
    node = Node.objects.get(name=node_name)
    status, created = NodeStatus.objects.update_or_create(
        node=node,
        defaults={
            "reported_at": timezone.now(),
            "reporter": reporter[:100],
            "galera_member": state.member,
            "galera_cluster_size": state.cluster_size,
            "galera_local_state": state.local_state[:40],
            "galera_ready": state.ready,
            "galera_cluster_status": state.cluster_status[:40],
            "galera_error": state.error[:200],
            "opensips_installed": opensips,
        },
    )
    if opensips is False:
        # Usually no row: only what a change marked since, or a reload that ran before the
        # first beat said the engine is missing.
        forget_reloads(node)
    elif created:
        # The node's first beat: what changed before it started and is still pending is
        # reloaded now, not after the long wait the sweep gives nodes that never started
        # (apps.nodes.sync.requeue_due).
        EngineSync.objects.filter(node=node, next_attempt_at__isnull=False).update(
            next_attempt_at=timezone.now()
        )
    return status


@dataclass
class Beat:
    node: str
    known: bool  # a Node row of that name exists
    galera: GaleraState
    leases: list[str] = field(default_factory=list)  # held after this beat


def beat(node_name: str | None = None) -> Beat:
    """Record one heartbeat of `node_name` (this node by default) and keep its leases."""
    name = node_name or settings.NODE_NAME
    state = galera_state()
    status = record_status(
        name, state, reporter=f"{socket.gethostname()}:{os.getpid()}", opensips=opensips_installed()
    )
    held: list[str] = []
    # A disabled node is kept out of cluster-wide work; its leases expire and move on.
    if status is not None and status.node.enabled:
        held = leases.keep(name, ttl_seconds=settings.CLUSTER_LEASE_SECONDS)
    return Beat(node=name, known=status is not None, galera=state, leases=held)


# --- the heartbeat thread of a qcluster worker ----------------------------------------------


class Heartbeat(threading.Thread):
    """Beat every CLUSTER_HEARTBEAT_SECONDS while holding this node's heartbeat file lock."""

    def __init__(self, node_name: str, lock_path: Path) -> None:
        super().__init__(name=f"heartbeat-{node_name}", daemon=True)
        self.node_name = node_name
        self.lock_path = lock_path
        self.stop_event = threading.Event()
        self._lock_file = None
        self._parent = os.getppid()
        self.dns = dns.Publisher()  # the cluster's DNS name, when this node holds its lease

    def holds_lock(self) -> bool:
        if self._lock_file is None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_path, "a")  # noqa: SIM115 (held for the life of the thread)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._lock_file = handle
        return True

    def run(self) -> None:
        while not self.stop_event.is_set():
            if os.getppid() != self._parent:
                logger.warning("heartbeat of %s stops: its qcluster is gone", self.node_name)
                break
            if self.holds_lock():
                try:
                    result = beat(self.node_name)
                    if not result.known:
                        logger.error("heartbeat: no node named %r (NODE_NAME)", self.node_name)
                    self.dns.after_beat(result.leases)
                except Exception:  # the database is down or this member is not synced: beat again
                    logger.exception("heartbeat of %s failed", self.node_name)
                    connections.close_all()
            self.stop_event.wait(settings.CLUSTER_HEARTBEAT_SECONDS)
        if self._lock_file is not None:
            self._lock_file.close()
        connections.close_all()


_thread: Heartbeat | None = None


def lock_path(node_name: str) -> Path:
    return Path(settings.VAR_DIR) / f"cluster-heartbeat-{node_name}.lock"


def start_heartbeat(**kwargs) -> Heartbeat | None:
    """Start this process's heartbeat thread (django-q2 `post_spawn` receiver); idempotent."""
    global _thread
    if not settings.CLUSTER_HEARTBEAT_IN_WORKERS:
        return None
    if _thread is None or not _thread.is_alive():
        _thread = Heartbeat(settings.NODE_NAME, lock_path(settings.NODE_NAME))
        _thread.start()
    return _thread


# --- what cluster_status and the admin page show -------------------------------------------


@dataclass
class NodeReport:
    name: str
    enabled: bool
    last_heartbeat: datetime | None
    age_seconds: float | None
    stale: bool
    galera: GaleraState | None
    leases: list[str]
    engine_sync: str
    file_backlog: str

    @property
    def started(self) -> bool:
        """The node's workers have beaten at least once (a node never seen is being set up)."""
        return self.last_heartbeat is not None

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if not self.started:
            return "not started"
        return "STALE" if self.stale else "alive"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "last_heartbeat": self.last_heartbeat.isoformat() if self.last_heartbeat else None,
            "heartbeat_age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "stale": self.stale,
            "state": self.state,
            "galera": None
            if self.galera is None
            else {**self.galera.__dict__, "summary": self.galera.summary()},
            "leases": self.leases,
            "engine_sync": self.engine_sync,
            "file_backlog": self.file_backlog,
        }


def _engine_sync_by_node() -> dict[int, str]:
    """Each node's OpenSIPS sync state in one line, with its last error while it fails."""
    try:
        rows = list(EngineSync.objects.filter(engine=EngineSync.Engine.OPENSIPS))
    except Exception as exc:  # a status page must show the rest when one source fails
        return {-1: f"unavailable: {exc}"}
    summaries = {}
    for row in rows:
        failing = row.pending_modules and row.last_error
        summaries[row.node_id] = row.summary() + (f" ({row.last_error[:80]})" if failing else "")
    return summaries


def _file_backlog_by_node() -> dict[str, str]:
    try:
        # What is owed and what failed; zero counts and empty fields say nothing.
        return {
            name: ", ".join(f"{key}={_short(value)}" for key, value in backlog.items() if value) or "none"
            for name, backlog in backlog_by_node().items()
        }
    except Exception as exc:
        return {"*": f"unavailable: {exc}"}


def _short(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)[:80]


def cluster_report(*, now: datetime | None = None) -> list[NodeReport]:
    """Every node with its heartbeat age, staleness, Galera state, engine and file sync."""
    now = now or timezone.now()
    bound = settings.CLUSTER_STALE_SECONDS
    statuses = {status.node_id: status for status in NodeStatus.objects.all()}
    held: dict[str, list[str]] = {}
    for lease in Lease.objects.filter(expires_at__gte=now).exclude(holder=""):
        held.setdefault(lease.holder, []).append(lease.name)
    engine = _engine_sync_by_node()
    files = _file_backlog_by_node()
    reports = []
    for node in Node.objects.order_by("name"):
        # max(0): a beat committed after `now` was taken is not from the future.
        age = max(0.0, (now - node.last_heartbeat).total_seconds()) if node.last_heartbeat else None
        status = statuses.get(node.pk)
        galera = None
        if status is not None:
            galera = GaleraState(
                member=status.galera_member,
                cluster_size=status.galera_cluster_size,
                local_state=status.galera_local_state,
                ready=status.galera_ready,
                cluster_status=status.galera_cluster_status,
                error=status.galera_error,
            )
        reports.append(
            NodeReport(
                name=node.name,
                enabled=node.enabled,
                last_heartbeat=node.last_heartbeat,
                age_seconds=age,
                # A node that never beat has not started yet: not stale, which means "went
                # silent" (cluster_status fails on it, the admin shows it red).
                stale=age is not None and age > bound,
                galera=galera,
                leases=sorted(held.get(node.name, [])),
                engine_sync=(
                    NOT_INSTALLED
                    if status is not None and status.opensips_installed is False
                    else engine.get(node.pk, engine.get(-1, ""))
                ),
                file_backlog=files.get(node.name, files.get("*", "")),
            )
        )
    return reports
