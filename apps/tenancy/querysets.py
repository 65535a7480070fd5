from apps.core.querysets import ScopedQuerySet


class ResellerQuerySet(ScopedQuerySet):
    reseller_lookup = "pk"

    def active(self):
        return self.filter(is_active=True)


class ApiKeyQuerySet(ScopedQuerySet):
    reseller_lookup = "reseller"

    def usable(self):
        return self.filter(revoked_at__isnull=True)
