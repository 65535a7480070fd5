"""The django-q2 broker of a cluster: every node's own Redis, reached by the others to send it work.

With Redis (REDIS_URL set) each node runs a Redis of its own and its qcluster reads only
that one, so nodes never share queue rows (an ORM broker on Galera would make every node
poll and lock the same table). A task for another node (`send_to_node`, or a schedule with
that node's cluster) is pushed onto the other node's Redis, found through the REDIS_NODE_URL
template ({name}, {address}: the node's management address). Redis holds a queue in memory
only: a node restarted with a lost Redis loses its waiting tasks, which is why every
periodic task is idempotent and rescheduled, and why file sync keeps its own per-file state.

Without Redis the ORM broker stays (one node on SQLite): queues are OrmQ rows keyed by
the cluster name, so `send_to_node` works there too.
"""

import threading

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

_pools: dict[str, redis.ConnectionPool] = {}
_pools_lock = threading.Lock()


def node_redis_url(node_name: str) -> str:
    """The Redis URL of `node_name`'s queue: REDIS_URL for this node, the template for others."""
    if node_name in (settings.NODE_NAME, Conf.CLUSTER_NAME):
        return settings.REDIS_URL
    from apps.cluster.galera import host
    from apps.nodes.models import Node

    address = Node.objects.filter(name=node_name).values_list("management_address", flat=True).first()
    if address is None:
        raise ImproperlyConfigured(f"No node named {node_name!r}: cannot send it a task.")
    return settings.REDIS_NODE_URL.format(name=node_name, address=host(address))


def _connection(url: str) -> redis.Redis:
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            # Short timeouts: a node whose Redis is gone must not hold up the node sending
            # it work (its callers log the failure and their sweeps send it again).
            pool = _pools[url] = redis.ConnectionPool.from_url(
                url, socket_connect_timeout=2, socket_timeout=5
            )
    return redis.Redis(connection_pool=pool)


class NodeRedis(Redis):
    """django-q2's Redis broker, on this node's Redis for its own queue and another's for theirs."""

    def __init__(self, list_key: str | None = None):
        self.node_name = list_key or Conf.CLUSTER_NAME
        super().__init__(list_key=self.node_name)

    def get_connection(self, list_key: str | None = None) -> redis.Redis:  # type: ignore[override]
        # Broker.__init__ and __setstate__ call this with the queue's name (the node's).
        name = getattr(self, "node_name", None) or list_key or Conf.CLUSTER_NAME
        if name.startswith("django_q:"):
            name = name.split(":")[1]
        return _connection(node_redis_url(name))
