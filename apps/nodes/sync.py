"""Push table changes to every node's OpenSIPS: mark what is pending, queue, reload, retry.

A service that changes what OpenSIPS reads from its tables (peers' addresses, gateways,
outbound registrations) calls `request_reload("address", ...)` inside its transaction.
That marks the modules pending on every enabled node (one EngineSync row per node) and,
once the transaction commits, queues `apps.nodes.tasks.reload_engine` on each node's own
task cluster. The task reloads over MI what its row says is pending and clears it only if
no change came in meanwhile; a failure is recorded on the row (error, attempts) and the
periodic `retry_engine_sync` queues the node again when its backoff is over. A change
whose task was never queued (that node's broker was down) is caught by the same sweep.

Galera: the rows are written by the node where a change happens (one UPDATE setting
flags and raising a counter, never a read-modify-write) and by each node for its own row
(short transactions of one UPDATE, replayed on a certification conflict).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from apps.audit import services as audit
from apps.cluster.topology import send_to_node
from apps.core.db import retry_on_conflict
from apps.core.services import ensure_manages
from apps.nodes.models import EngineSync, Node
from apps.tenancy.scope import Scope
from engines import EngineError
from engines.opensips import MIClient, url_for

logger = logging.getLogger(__name__)

OPENSIPS = EngineSync.Engine.OPENSIPS
RELOAD_TASK = "apps.nodes.tasks.reload_engine"
# Failed reloads are retried after 5 s, 10 s, 20 s ... up to every 10 minutes.
RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=10)
# A change's task normally runs within a second of the commit; if it has not run after
# this long (its node's broker was down, a worker died), the sweep sends it again.
UNQUEUED_GRACE = timedelta(seconds=60)
# A node that has never beaten has no worker reading its queue yet (a node being set up, or
# demo data): the sweep sends its reloads this seldom, and at once when it first beats
# (apps.cluster.presence.record_status).
NOT_STARTED_GRACE = RETRY_MAX
NOT_INSTALLED = EngineSync.NOT_INSTALLED


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload run did on one node."""

    node: str
    reloaded: tuple[str, ...] = ()
    error: str = ""
    # True when a change arrived during the reload: it stays pending for the next run.
    still_pending: bool = False
    # True when a change's task found the node's reloads failing and left it to the sweep.
    backing_off: bool = False
    # True when the node's worker said it has no OpenSIPS: nothing was reloaded, nor will be.
    not_installed: bool = False

    @property
    def ok(self) -> bool:
        return not self.error


def client_for(node: Node, *, timeout: float | None = None) -> MIClient:
    """The MI client of `node`'s OpenSIPS, at its management address."""
    return MIClient(
        url_for(settings.OPENSIPS_MI_URL, node.management_address),
        timeout or settings.OPENSIPS_MI_TIMEOUT,
    )


def backoff(attempts: int) -> timedelta:
    """How long to wait before the next try after `attempts` failed ones in a row."""
    return min(RETRY_MAX, RETRY_FIRST * 2 ** max(attempts - 1, 0))


def _check_modules(modules) -> None:
    unknown = sorted(set(modules) - set(EngineSync.MODULES))
    if not modules or unknown:
        known = ", ".join(EngineSync.MODULES)
        raise ValueError(f"Modules to reload are some of {known}; got {', '.join(modules) or 'none'}.")


def _mark_pending(node_ids: list[int], modules, now: datetime) -> None:
    existing = set(
        EngineSync.objects.filter(node_id__in=node_ids, engine=OPENSIPS).values_list("node_id", flat=True)
    )
    missing = [EngineSync(node_id=pk, engine=OPENSIPS) for pk in node_ids if pk not in existing]
    if missing:
        # Another node may create the same row at the same moment: the unique constraint
        # keeps one, and the UPDATE below marks whichever exists.
        EngineSync.objects.bulk_create(missing, ignore_conflicts=True)
    EngineSync.objects.filter(node_id__in=node_ids, engine=OPENSIPS).update(
        **{f"pending_{module}": True for module in modules},
        generation=F("generation") + 1,
        pending_since=Coalesce(F("pending_since"), Value(now, output_field=DateTimeField())),
        # Never later than it was: changes arriving every minute must not keep pushing back
        # the sweep's retry of a node whose reloads failed (Least is NULL on MariaDB when
        # either side is, hence the Coalesce).
        next_attempt_at=Coalesce(
            Least(F("next_attempt_at"), Value(now + UNQUEUED_GRACE, output_field=DateTimeField())),
            Value(now + UNQUEUED_GRACE, output_field=DateTimeField()),
        ),
    )


@retry_on_conflict
def request_reload(*modules: str) -> None:
    """Mark `modules` pending on every enabled node; queue each node's reload once this commits."""
    _check_modules(modules)
    nodes = list(Node.objects.enabled().values_list("pk", "name"))
    if not nodes:
        return
    _mark_pending([pk for pk, _name in nodes], modules, timezone.now())
    transaction.on_commit(lambda: queue_reloads(nodes))


def queue_reloads(nodes: list[tuple[int, str]], *, retry: bool = False) -> int:
    """Queue the reload task of each (pk, name) node on its own cluster; returns how many were queued."""
    queued = 0
    for pk, name in nodes:
        try:
            send_to_node(name, RELOAD_TASK, pk, *((True,) if retry else ()))
            queued += 1
        except Exception:
            logger.warning(
                "engine sync: could not queue the reload of %s; the sweep retries it", name, exc_info=True
            )
    return queued


@retry_on_conflict
def _record_success(pk: int, generation: int, now: datetime) -> bool:
    cleared = EngineSync.objects.filter(pk=pk, generation=generation).update(
        pending_address=False,
        pending_drouting=False,
        pending_registrant=False,
        pending_since=None,
        next_attempt_at=None,
        attempts=0,
        last_success_at=now,
    )
    if not cleared:
        # A change committed while we reloaded: its flags stay set and its own task (or the
        # sweep) reloads again.
        EngineSync.objects.filter(pk=pk).update(attempts=0, last_success_at=now)
    return bool(cleared)


@retry_on_conflict
def _record_failure(pk: int, error: str, now: datetime) -> None:
    attempts = EngineSync.objects.filter(pk=pk).values_list("attempts", flat=True).first() or 0
    EngineSync.objects.filter(pk=pk).update(
        attempts=F("attempts") + 1,
        last_error=error[:2000],
        last_error_at=now,
        next_attempt_at=now + backoff(attempts + 1),
    )


def opensips_missing(node: Node) -> bool:
    """Whether `node`'s worker said at its last beat that OpenSIPS is not installed there."""
    from apps.cluster.models import NodeStatus

    return NodeStatus.objects.filter(node=node, opensips_installed=False).exists()


@retry_on_conflict
def _record_not_installed(pk: int, generation: int, now: datetime) -> None:
    # Nothing to reload, and no retry: an OpenSIPS installed later reads every table as it
    # starts. The flags are cleared as a success clears them (a change committed meanwhile
    # stays pending); the row says why.
    EngineSync.objects.filter(pk=pk, generation=generation).update(
        pending_address=False, pending_drouting=False, pending_registrant=False, pending_since=None
    )
    EngineSync.objects.filter(pk=pk).update(
        attempts=0, next_attempt_at=None, last_error=NOT_INSTALLED, last_error_at=now
    )


@retry_on_conflict
def forget_reloads(node: Node) -> int:
    """The node's worker found no OpenSIPS: what is pending there (changes made before its
    first beat, a reload that failed on the missing engine) is cleared, and not retried."""
    pending = Q(pending_address=True) | Q(pending_drouting=True) | Q(pending_registrant=True)
    return EngineSync.objects.filter(pending, node=node, engine=OPENSIPS).update(
        pending_address=False,
        pending_drouting=False,
        pending_registrant=False,
        pending_since=None,
        attempts=0,
        next_attempt_at=None,
        last_error=NOT_INSTALLED,
        last_error_at=timezone.now(),
    )


def reload_node(node: Node, *, timeout: float | None = None, retry: bool = True) -> ReloadOutcome:
    """Reload what is pending on `node`'s OpenSIPS and record the outcome on its sync row.

    `retry=False` (the task a change queues) stands back while the node's reloads are
    failing and their backoff runs: a burst of changes against a dead OpenSIPS then costs
    one timeout per backoff, not one per change. The sweep's retries and the operator's
    "reload now" always try.
    """
    row = EngineSync.objects.filter(node=node, engine=OPENSIPS).first()
    if row is None or not row.pending_modules:
        return ReloadOutcome(node.name)
    if not retry and row.attempts and row.next_attempt_at and row.next_attempt_at > timezone.now():
        return ReloadOutcome(node.name, still_pending=True, backing_off=True)
    modules, generation = tuple(row.pending_modules), row.generation
    if opensips_missing(node):
        _record_not_installed(row.pk, generation, timezone.now())
        return ReloadOutcome(node.name, not_installed=True)
    client = client_for(node, timeout=timeout)
    done: list[str] = []
    try:
        for module in modules:
            client.reload(module)
            done.append(module)
    except EngineError as exc:
        # Modules reloaded before the failure stay pending too: reloading them again is harmless.
        error = f"{'retryable' if exc.retryable else 'not retryable'}: {exc}"
        _record_failure(row.pk, error, timezone.now())
        logger.warning("engine sync: OpenSIPS on %s did not reload %s: %s", node.name, modules, exc)
        return ReloadOutcome(node.name, tuple(done), error=str(exc))
    cleared = _record_success(row.pk, generation, timezone.now())
    return ReloadOutcome(node.name, modules, still_pending=not cleared)


@retry_on_conflict
def _claim(row: EngineSync, until: datetime) -> bool:
    return bool(
        EngineSync.objects.filter(pk=row.pk, next_attempt_at=row.next_attempt_at).update(
            next_attempt_at=until
        )
    )


def due_retries(now: datetime | None = None):
    """Sync rows of enabled nodes with something pending whose next attempt is due."""
    now = now or timezone.now()
    pending = Q(pending_address=True) | Q(pending_drouting=True) | Q(pending_registrant=True)
    return (
        EngineSync.objects.filter(pending, engine=OPENSIPS, node__enabled=True, next_attempt_at__lte=now)
        # A node whose worker said it has no OpenSIPS is not sent retries of what it cannot do.
        .exclude(node__status__opensips_installed=False)
        .select_related("node")
        .order_by("next_attempt_at")
    )


def requeue_due(now: datetime | None = None) -> int:
    """Queue again the reloads whose retry is due; each row is claimed, so two sweeps queue it once."""
    now = now or timezone.now()
    queued = 0
    for row in due_retries(now):
        # The claim moves the next attempt past this one's backoff: a sweep running at the
        # same time (or the next one, before the task ran) finds nothing due. If the task
        # never runs, the row comes due again after that.
        grace = UNQUEUED_GRACE if row.node.last_heartbeat else NOT_STARTED_GRACE
        if _claim(row, now + max(backoff(row.attempts + 1), grace)):
            queued += queue_reloads([(row.node_id, row.node.name)], retry=True)
    return queued


# --- Operator actions on one node ------------------------------------------------------


@retry_on_conflict
def _mark_node(node: Node) -> None:
    _mark_pending([node.pk], EngineSync.MODULES, timezone.now())


def reload_now(node: Node, *, actor: Scope) -> ReloadOutcome:
    """Reload every table of `node`'s OpenSIPS now, whatever is pending (operator only)."""
    ensure_manages(actor, None)
    _mark_node(node)
    outcome = reload_node(node)
    audit.record(
        actor,
        "node.engine_reloaded",
        node,
        modules=list(outcome.reloaded),
        error=outcome.error,
    )
    return outcome
