from django.db.models import F, Q

from apps.core.querysets import ScopedQuerySet


class RateTableQuerySet(ScopedQuerySet):
    reseller_lookup = "reseller"
    # A customer sees the price list it buys at, nothing else.
    customer_lookup = "customers"

    def sell(self):
        return self.filter(purpose="sell")

    def buy(self):
        return self.filter(purpose="buy")


class RateQuerySet(ScopedQuerySet):
    reseller_lookup = "table__reseller"
    customer_lookup = "table__customers"

    def live(self):
        """Rows of each table's live version (what readers see between imports)."""
        return self.filter(version_from__lte=F("table__live_version")).filter(
            Q(version_to__isnull=True) | Q(version_to__gt=F("table__live_version"))
        )

    def effective_at(self, moment):
        """Rates in force at `moment`: started, and not yet ended."""
        return self.filter(
            Q(effective_to__isnull=True) | Q(effective_to__gt=moment), effective_from__lte=moment
        )
