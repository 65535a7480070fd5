"""Routing plans, rules, routes and supplier quality, for the operator only.

Writes go through apps.routing.services; quality statistics are computed from CDRs and
only read here.
"""

from apps.core.api import ScopedModelViewSet, ScopedReadOnlyViewSet, model_changes
from apps.routing import services
from apps.routing.api import filters, serializers
from apps.routing.models import QualityStat, Route, RoutingPlan, RoutingRule
from apps.tenancy.api.permissions import HasScope, OperatorOnly


class RoutingPlanViewSet(ScopedModelViewSet):
    """Routing plans; deleting one in use by customers, resellers or the cluster is refused."""

    queryset = RoutingPlan.objects.all()
    serializer_class = serializers.RoutingPlanSerializer
    filterset_class = filters.RoutingPlanFilter
    permission_classes = [HasScope, OperatorOnly]
    ordering_fields = ("name", "created_at")

    def create_object(self, data):
        return services.create_plan(actor=self.scope, **model_changes(RoutingPlan, data))

    def update_object(self, plan, changes):
        return services.update_plan(plan, actor=self.scope, changes=model_changes(RoutingPlan, changes))

    def destroy_object(self, plan):
        services.delete_plan(plan, actor=self.scope)


class RoutingRuleViewSet(ScopedModelViewSet):
    """Rules of routing plans: a prefix (and destination) and the method that orders its routes."""

    queryset = RoutingRule.objects.all()
    serializer_class = serializers.RoutingRuleSerializer
    filterset_class = filters.RoutingRuleFilter
    permission_classes = [HasScope, OperatorOnly]
    ordering_fields = ("prefix", "position", "plan")

    def create_object(self, data):
        plan = data.pop("plan")
        return services.add_rule(plan, actor=self.scope, **model_changes(RoutingRule, data))

    def update_object(self, rule, changes):
        return services.update_rule(rule, actor=self.scope, changes=model_changes(RoutingRule, changes))

    def destroy_object(self, rule):
        services.remove_rule(rule, actor=self.scope)


class RouteViewSet(ScopedModelViewSet):
    """The suppliers (or gateways) each rule may send calls to, with their order and limits."""

    queryset = Route.objects.all()
    serializer_class = serializers.RouteSerializer
    filterset_class = filters.RouteFilter
    permission_classes = [HasScope, OperatorOnly]
    ordering_fields = ("priority", "weight", "rule", "supplier")

    def create_object(self, data):
        rule, supplier = data.pop("rule"), data.pop("supplier")
        return services.add_route(rule, actor=self.scope, supplier=supplier, **model_changes(Route, data))

    def update_object(self, route, changes):
        return services.update_route(route, actor=self.scope, changes=model_changes(Route, changes))

    def destroy_object(self, route):
        services.remove_route(route, actor=self.scope)


class QualityStatViewSet(ScopedReadOnlyViewSet):
    """ASR and ACD of each supplier per destination over the cluster's quality window."""

    queryset = QualityStat.objects.all()
    serializer_class = serializers.QualityStatSerializer
    filterset_class = filters.QualityStatFilter
    permission_classes = [HasScope, OperatorOnly]
    ordering_fields = ("attempts", "destination", "window_end")
