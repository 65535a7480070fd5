"""django-q2 entry points of the cluster: cluster-wide work under a lease."""

import logging

from django.conf import settings
from django.utils.module_loading import import_string

from apps.cluster import leases

logger = logging.getLogger(__name__)


def run_singleton(name: str, func_path: str, *args, **kwargs) -> dict:
    """Run `func_path(*args, **kwargs)` if this node holds (or can take) lease `name`; else skip.

    Scheduled on every node (apps.cluster.schedules); exactly one of them holds the lease at
    a time, so the work runs once per period in the whole cluster.
    """
    me = settings.NODE_NAME
    if not leases.acquire(name, me, settings.CLUSTER_LEASE_SECONDS):
        holder = leases.holder(name)
        logger.debug("%s: skipped on %s, lease %s is held by %s", func_path, me, name, holder)
        return {"ran": False, "holder": holder}
    result = import_string(func_path)(*args, **kwargs)
    return {"ran": True, "holder": me, "result": result}
