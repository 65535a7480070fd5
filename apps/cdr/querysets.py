from apps.core.querysets import ScopedQuerySet


class CdrQuerySet(ScopedQuerySet):
    # A reseller sees its customers' calls; supplier legs of operator suppliers stay hidden
    # behind the serializers that reseller scopes use.
    reseller_lookup = "customer__reseller"
    customer_lookup = "customer"

    def between(self, start=None, end=None):
        qs = self
        if start is not None:
            qs = qs.filter(created_at__gte=start)
        if end is not None:
            qs = qs.filter(created_at__lt=end)
        return qs

    def unrated(self):
        return self.filter(rating_state="unrated")

    def answered(self):
        return self.filter(answered_at__isnull=False)
