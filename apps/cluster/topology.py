"""Where a task runs: on one node's own django-q2 cluster, or once in the whole cluster.

Every node runs a django-q2 cluster named after the node (`Q_CLUSTER["cluster_name"]` =
NODE_NAME; `Q_CLUSTER["name"]` is the same on every node because django-q2 signs payloads
with it as salt, and a task queued by one node is unsigned by another). Work that belongs
to a node — reloading its OpenSIPS, pushing its files, rating its own CDRs — is sent to
that node's queue with `send_to_node`.

With the ORM broker (one node, no REDIS_URL) the queue is the OrmQ rows keyed by the node's
name. With Redis every node reads its own Redis, and a task for another node is pushed onto
that node's Redis (apps.cluster.broker, REDIS_NODE_URL): nodes never share queue rows. A node
whose Redis cannot be reached raises here, so the caller can retry or record it; nothing is
dropped silently. Periodic work is scheduled per node (apps.cluster.schedules), and
cluster-wide work runs under a lease (apps.cluster.tasks.run_singleton).
"""

import logging

from django_q.tasks import async_task

logger = logging.getLogger(__name__)


def send_to_node(node_name: str, func: str, *args, **kwargs) -> str:
    """Queue `func(*args, **kwargs)` on `node_name`'s task cluster; returns the task id."""
    return async_task(func, *args, cluster=node_name, **kwargs)


def try_send_to_node(node_name: str, func: str, *args, **kwargs) -> str | None:
    """`send_to_node`, for work a sweep sends again: a node that cannot be reached (its Redis
    down with it) is logged and None returned, so that the caller — often an on-commit hook
    sending to every node in turn — goes on with the others."""
    try:
        return send_to_node(node_name, func, *args, **kwargs)
    except Exception:
        logger.warning("could not queue %s on %s; it is sent again later", func, node_name, exc_info=True)
        return None
