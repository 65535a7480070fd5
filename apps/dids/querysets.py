from django.db.models import Q

from apps.core.querysets import ScopedQuerySet


class DidQuerySet(ScopedQuerySet):
    """A DID is seen by its customer and the customer's reseller; stock DIDs by the operator."""

    reseller_lookup = "customer__reseller"
    customer_lookup = "customer"

    def enabled(self):
        return self.filter(enabled=True)

    def covering(self, number: str):
        """The DID or range that holds `number` (digits)."""
        return self.filter(
            Q(number=number) | Q(number__lte=number, last_number__gte=number, number_length=len(number))
        )


class DidTargetQuerySet(ScopedQuerySet):
    reseller_lookup = "did__customer__reseller"
    customer_lookup = "did__customer"
