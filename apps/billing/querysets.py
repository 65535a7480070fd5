from django.db import models

from apps.core.querysets import ScopedQuerySet


class AccountQuerySet(ScopedQuerySet):
    reseller_lookup = "peer__reseller"
    customer_lookup = "peer"


class LedgerQuerySet(ScopedQuerySet):
    """Ledger rows are written once and never changed: bulk updates and deletes are refused."""

    reseller_lookup = "account__peer__reseller"
    customer_lookup = "account__peer"

    def update(self, **kwargs):
        raise TypeError("Ledger entries are immutable; post a correcting entry instead.")

    def delete(self):
        raise TypeError("Ledger entries are immutable; post a correcting entry instead.")

    def total(self):
        return self.aggregate(total=models.Sum("amount"))["total"]


class ReservationQuerySet(ScopedQuerySet):
    reseller_lookup = "customer__reseller"
    customer_lookup = "customer"

    def active(self):
        return self.filter(released_at__isnull=True)

    def expired(self, now):
        return self.filter(released_at__isnull=True, expires_at__lt=now)


class FeeQuerySet(ScopedQuerySet):
    reseller_lookup = "account__peer__reseller"
    customer_lookup = "account__peer"


class RerateRunQuerySet(ScopedQuerySet):
    """Re-rating is the operator's and resellers' tool; customers see its adjustments only."""

    reseller_lookup = "reseller"
