"""Where a task runs: on one node's own django-q2 cluster, or once in the whole cluster.

Every node runs a django-q2 cluster named after the node (`Q_CLUSTER["name"]` =
NODE_NAME). Work that belongs to a node — reloading its OpenSIPS, pushing its files, rating
its own CDRs — is sent to that node's queue with `send_to_node`.
"""

from django_q.tasks import async_task


def send_to_node(node_name: str, func: str, *args, **kwargs) -> str:
    """Queue `func(*args, **kwargs)` on `node_name`'s task cluster; returns the task id."""
    return async_task(func, *args, cluster=node_name, **kwargs)
