from django.db.models import Q
from django.utils import timezone

from apps.core.querysets import ScopedQuerySet

# Recordings and captures are the operator's in the admin for now: no reseller or customer
# lookup, so visible_to() gives them nothing. The portal's "my recordings" will scope by CDR.


class StoredFileQuerySet(ScopedQuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)

    def tombstoned(self):
        return self.filter(deleted_at__isnull=False)

    def expired(self, kind: str, *, before):
        return self.live().filter(kind=kind, created_at__lt=before)


class FileCopyQuerySet(ScopedQuerySet):
    def backlog(self):
        """Copies not yet where their file wants them: on the node, or deleted from it."""
        live_not_there = Q(file__deleted_at__isnull=True) & ~Q(state="present")
        deleted_still_there = Q(file__deleted_at__isnull=False) & ~Q(state="deleted")
        return self.filter(live_not_there | deleted_still_there)

    def due(self, *, now=None):
        return self.backlog().filter(next_attempt_at__lte=now or timezone.now())

    def for_node(self, node):
        return self.filter(node=node)


class NodeStorageQuerySet(ScopedQuerySet):
    pass
