from apps.core.querysets import ScopedQuerySet


class BundleQuerySet(ScopedQuerySet):
    """The operator's catalogue and each reseller's own; a customer sees the bundles it has."""

    reseller_lookup = "reseller"
    customer_lookup = "subscriptions__account__peer"


class SubscriptionQuerySet(ScopedQuerySet):
    reseller_lookup = "account__peer__reseller"
    customer_lookup = "account__peer"

    def in_force(self, day):
        return self.filter(starts_on__lte=day).exclude(ends_on__lt=day)


class UsageQuerySet(ScopedQuerySet):
    reseller_lookup = "subscription__account__peer__reseller"
    customer_lookup = "subscription__account__peer"
