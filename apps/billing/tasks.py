"""django-q2 entry points of billing; schedules are ensured after every migrate."""

import logging
import time

from django.conf import settings

from apps.billing.services import rating
from apps.cluster import schedules
from apps.cluster.schedules import Kind, Periodic
from apps.core.db import unless_conflict
from apps.nodes.models import Node

logger = logging.getLogger(__name__)

SCHEDULES = {
    # Every node rates its own CDRs first (and takes others' when it has none left).
    "Import and rate CDRs, end calls that overrun (billing loop)": Periodic(
        "apps.billing.tasks.billing_loop", 1
    ),
    "Post recurring fees": Periodic("apps.billing.tasks.post_fees", 60, Kind.SINGLETON),
    # Every node against its own OpenSIPS: the dialogs are that OpenSIPS's (in its memory, and
    # in the node's own dialog table).
    "Release reservations no dialog holds": Periodic("apps.billing.tasks.release_without_dialog", 5),
}
LOOP_SECONDS = 55.0
# The pause after a round that found calls but not a whole batch: a busy node's calls are
# taken in small batches all through the second (about 120 at 600 calls/s) instead of one
# burst a second, whose CPU, with the database's on its behalf, queued the calls being set
# up behind it (issue 13; docs/BENCHMARKS.md). After a whole batch there is no pause at all.
BUSY_PAUSE = 0.2
# The pause after a round that found nothing: an idle node asks about once a second.
IDLE_SLEEP = 1.0


def billing_loop(seconds: float = LOOP_SECONDS) -> dict:
    """Import this node's CDRs from OpenSIPS, rate them and run online billing, for about a
    minute, then return.

    Scheduled every minute on every node, so a call is charged within about a second of
    its end, and a loop that died with its worker is replaced within a minute. Loops
    overlapping (a slow minute, or two nodes) are safe: every acc row becomes one CDR and
    every CDR is charged by one of them.
    """
    from apps.billing.services.online import cut_overruns
    from apps.cdr import ingest

    node_id = Node.objects.filter(name=settings.NODE_NAME).values_list("pk", flat=True).first()
    deadline = time.monotonic() + seconds
    next_cut = time.monotonic()
    total = rating.BatchResult()
    imported = ingest.IngestResult()
    while time.monotonic() < deadline:
        if time.monotonic() >= next_cut:
            try:
                cut_overruns()
            except Exception:  # the next round retries; rating must go on meanwhile
                logger.exception("online billing failed")
            next_cut = time.monotonic() + settings.ONLINE_BILLING_INTERVAL
        # A batch that gave up on write conflicts is taken again on the next round.
        arrived = unless_conflict(ingest.ingest_batch, node=settings.NODE_NAME) or ingest.IngestResult()
        imported.add(arrived)
        result = unless_conflict(rating.rate_batch, node_id=node_id) or rating.BatchResult()
        total.add(result)
        if arrived.full or result.selected >= rating.BATCH_SIZE:
            continue  # a backlog: the next batch at once
        time.sleep(BUSY_PAUSE if arrived.rows or result.selected else IDLE_SLEEP)
    if imported.rows:
        logger.info(
            "imported %s calls and %s attempts (%s with errors, %s replays)",
            imported.calls,
            imported.attempts,
            imported.errors,
            imported.replayed,
        )
    if total.selected:
        logger.info(
            "rated %s CDRs (%s errors), %s charges",
            total.rated,
            total.errors,
            total.charges,
        )
    return {
        "imported": imported.calls + imported.attempts,
        "rated": total.rated,
        "errors": total.errors,
        "charges": total.charges,
    }


def post_fees() -> int:
    from apps.billing.services.fees import post_due_fees

    return post_due_fees()


def release_without_dialog() -> int:
    from apps.billing.services.reconcile import release_without_dialog
    from apps.nodes.sync import client_for, opensips_missing
    from engines import EngineError

    node = Node.objects.filter(name=settings.NODE_NAME).first()
    if node is None or opensips_missing(node):
        # No OpenSIPS on this node (a demo, a worker-only machine): no dialogs to ask about.
        return 0
    try:
        return release_without_dialog(node, client_for(node))
    except EngineError as exc:  # OpenSIPS down or refusing: the next run asks again
        logger.warning("reservations not reconciled with the dialogs of %s: %s", node.name, exc)
        return 0


def ensure_schedules(**kwargs) -> None:
    """Create the periodic tasks once per enabled node; an operator's later changes are kept."""
    schedules.ensure(SCHEDULES)
