"""The scoping queryset every tenant-owned model uses."""

from django.db import models

from apps.tenancy.scope import as_scope


def crosses_to_many(model, lookup: str) -> bool:
    """Tell whether following `lookup` from `model` passes a to-many relation (may repeat rows)."""
    opts = model._meta
    for name in lookup.split("__"):
        if name == "pk":
            return False
        field = opts.get_field(name)
        if field.many_to_many or field.one_to_many:
            return True
        if not field.is_relation:
            return False
        opts = field.related_model._meta
    return False


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
            return self._owned_by(self.reseller_lookup, scope.reseller_id)
        if scope.is_customer and self.customer_lookup:
            return self._owned_by(self.customer_lookup, scope.peer_id)
        return self.none()

    def _owned_by(self, lookup: str, owner_id: int) -> "ScopedQuerySet":
        rows = self.filter(**{lookup: owner_id})
        # DISTINCT only where a to-many join can repeat rows: on CDRs it would make the
        # database de-duplicate a customer's whole history on every page.
        return rows.distinct() if crosses_to_many(self.model, lookup) else rows
