from datetime import timedelta

from django.utils import timezone

from apps.core.querysets import ScopedQuerySet


class NodeQuerySet(ScopedQuerySet):
    # Nodes are the operator's infrastructure: no reseller or customer manages them.

    def enabled(self):
        return self.filter(enabled=True)

    def alive(self, *, within: timedelta = timedelta(seconds=30)):
        return self.filter(last_heartbeat__gte=timezone.now() - within)
