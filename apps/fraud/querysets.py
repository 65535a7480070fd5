from django.db.models import Q

from apps.core.querysets import ScopedQuerySet


class ControllerQuerySet(ScopedQuerySet):
    """The operator's controllers watch everything; a reseller's watch its own customers."""

    reseller_lookup = "reseller"

    def enabled(self):
        return self.filter(enabled=True)


class AlertQuerySet(ScopedQuerySet):
    """An alert is seen by the operator, the subject's reseller, and the customer it is about."""

    reseller_lookup = "reseller"
    customer_lookup = "peer"

    def open(self):
        """Episodes not yet over: their action may still be in force (see `in_force`)."""
        return self.filter(ended_at__isnull=True)

    def in_force(self, now):
        """Open episodes whose action holds at `now`: before `ends_at` or in their trial."""
        return self.open().filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now) | Q(trial_until__gt=now))
