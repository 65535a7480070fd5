"""django-q2 entry points of node work: take ids, call one function of apps.nodes.sync."""

import logging

from apps.cluster.schedules import Kind, Periodic
from apps.nodes import sync
from apps.nodes.models import Node

logger = logging.getLogger(__name__)

SCHEDULES = {
    # Sweeps are claimed row by row (apps.nodes.sync.requeue_due): one node at a time is enough.
    "Retry OpenSIPS reloads that failed": Periodic("apps.nodes.tasks.retry_engine_sync", 1, Kind.SINGLETON),
}


def reload_engine(node_id: int, retry: bool = False) -> str:
    """Reload what is pending on this node's OpenSIPS (queued on the node's own cluster by a
    change, or by the sweep with `retry` when a failed reload is due again)."""
    node = Node.objects.filter(pk=node_id, enabled=True).first()
    if node is None:
        return "node disabled or gone: nothing to reload"
    outcome = sync.reload_node(node, retry=retry)
    if outcome.not_installed:
        return f"{node.name}: {sync.NOT_INSTALLED}; nothing to reload"
    if outcome.backing_off:
        return f"{node.name}: reloads are failing; the sweep retries after the backoff"
    if outcome.error:
        # Recorded on the node's sync row with the next attempt; the sweep queues it again.
        return f"{node.name}: failed ({outcome.error})"
    if not outcome.reloaded:
        return f"{node.name}: nothing pending"
    more = "; a newer change is still pending" if outcome.still_pending else ""
    return f"{node.name}: reloaded {', '.join(outcome.reloaded)}{more}"


def retry_engine_sync() -> int:
    """Queue again the node reloads whose retry is due (periodic; safe to run on several nodes)."""
    return sync.requeue_due()
