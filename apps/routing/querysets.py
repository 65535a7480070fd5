from apps.core.querysets import ScopedQuerySet


class RoutingPlanQuerySet(ScopedQuerySet):
    # Routing plans choose among the operator's suppliers and show their prices: they are
    # the operator's alone (a reseller's customers use the plan the operator gives them).
    pass


class RoutingRuleQuerySet(ScopedQuerySet):
    def enabled(self):
        return self.filter(enabled=True)


class RouteQuerySet(ScopedQuerySet):
    def enabled(self):
        return self.filter(enabled=True, supplier__enabled=True, supplier__suspended_at__isnull=True)


class QualityStatQuerySet(ScopedQuerySet):
    pass
