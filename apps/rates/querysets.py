from django.db.models import Q

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

    def effective_at(self, moment):
        """Rates in force at `moment`: started, and not yet ended."""
        return self.filter(
            Q(effective_to__isnull=True) | Q(effective_to__gt=moment), effective_from__lte=moment
        )
