from apps.core.querysets import ScopedQuerySet


class AuditQuerySet(ScopedQuerySet):
    reseller_lookup = "reseller"
