from django.db.models import F, Q

from apps.core.querysets import ScopedQuerySet
from apps.tenancy.scope import as_scope


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


class TimeProfileQuerySet(ScopedQuerySet):
    """Time profiles are the operator's, and every tenant reads them: resellers name them in
    their price lists' period column, customers see which hours their prices apply in."""

    def visible_to(self, who) -> "TimeProfileQuerySet":
        scope = as_scope(who)
        return self.all() if scope.is_operator or scope.is_reseller or scope.is_customer else self.none()
