from django_filters import rest_framework as filters

from apps.core.api import visible
from apps.peers.models import Gateway, Peer
from apps.routing.models import QualityStat, Route, RoutingPlan, RoutingRule


class RoutingPlanFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    parent = filters.ModelChoiceFilter(queryset=visible(RoutingPlan))

    class Meta:
        model = RoutingPlan
        fields = ["name", "parent"]


class RoutingRuleFilter(filters.FilterSet):
    plan = filters.ModelChoiceFilter(queryset=visible(RoutingPlan))
    prefix_startswith = filters.CharFilter(
        field_name="prefix", lookup_expr="startswith", label="Prefix starts with"
    )

    class Meta:
        model = RoutingRule
        fields = ["plan", "prefix", "prefix_startswith", "method", "enabled"]


class RouteFilter(filters.FilterSet):
    rule = filters.ModelChoiceFilter(queryset=visible(RoutingRule))
    plan = filters.ModelChoiceFilter(field_name="rule__plan", queryset=visible(RoutingPlan), label="Plan")
    supplier = filters.ModelChoiceFilter(queryset=visible(Peer))
    gateway = filters.ModelChoiceFilter(queryset=visible(Gateway))

    class Meta:
        model = Route
        fields = ["rule", "plan", "supplier", "gateway", "enabled", "stop_hunting"]


class QualityStatFilter(filters.FilterSet):
    supplier = filters.ModelChoiceFilter(queryset=visible(Peer))
    destination = filters.CharFilter(lookup_expr="istartswith", label="Destination starts with")

    class Meta:
        model = QualityStat
        fields = ["supplier", "destination"]
