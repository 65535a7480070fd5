from django.db.models import Q

from apps.core.querysets import ScopedQuerySet
from apps.tenancy.scope import as_scope


class ResellerQuerySet(ScopedQuerySet):
    reseller_lookup = "pk"

    def active(self):
        return self.filter(is_active=True)


class ApiKeyQuerySet(ScopedQuerySet):
    def visible_to(self, who):
        # A reseller's staff see their reseller's keys and the keys of their customers.
        scope = as_scope(who)
        if scope.is_reseller:
            return self.filter(Q(reseller=scope.reseller_id) | Q(peer__reseller=scope.reseller_id))
        return super().visible_to(scope)

    def usable(self):
        """Not revoked, and the owning reseller (if any) is active."""
        return (
            self.filter(revoked_at__isnull=True)
            .exclude(reseller__is_active=False)
            .exclude(peer__reseller__is_active=False)
        )
