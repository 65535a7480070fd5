from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core.querysets import ScopedQuerySet


class NodeQuerySet(ScopedQuerySet):
    # Nodes are the operator's infrastructure: no reseller or customer manages them.

    def enabled(self):
        return self.filter(enabled=True)

    def alive(self, *, within: timedelta | None = None):
        """Nodes whose heartbeat is fresher than `within` (default: CLUSTER_STALE_SECONDS)."""
        if within is None:
            within = timedelta(seconds=settings.CLUSTER_STALE_SECONDS)
        return self.filter(last_heartbeat__gte=timezone.now() - within)
