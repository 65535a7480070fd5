from apps.core.querysets import ScopedQuerySet


class IssuerQuerySet(ScopedQuerySet):
    """The operator's profile and each reseller's: a reseller sees its own, customers none."""

    reseller_lookup = "reseller"


class InvoiceQuerySet(ScopedQuerySet):
    """A reseller sees the invoices of its customers; a customer its own."""

    reseller_lookup = "account__peer__reseller"
    customer_lookup = "account__peer"

    def issued(self):
        return self.exclude(state="draft")


class InvoiceLineQuerySet(ScopedQuerySet):
    reseller_lookup = "invoice__account__peer__reseller"
    customer_lookup = "invoice__account__peer"
