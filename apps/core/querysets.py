"""The scoping queryset every tenant-owned model uses."""

from django.db import models

from apps.tenancy.scope import as_scope


class ScopedQuerySet(models.QuerySet):
    """`visible_to(scope)`: the operator sees all, a reseller its own, a customer its own.

    Subclasses name the lookups that lead to the owning reseller and to the customer peer;
    a lookup left as None means that kind of tenant sees none of these rows.
    """

    reseller_lookup: str | None = None
    customer_lookup: str | None = None

    def visible_to(self, who) -> "ScopedQuerySet":
        scope = as_scope(who)
        if scope.is_operator:
            return self.all()
        if scope.is_reseller and self.reseller_lookup:
            return self.filter(**{self.reseller_lookup: scope.reseller_id})
        if scope.is_customer and self.customer_lookup:
            return self.filter(**{self.customer_lookup: scope.peer_id}).distinct()
        return self.none()
