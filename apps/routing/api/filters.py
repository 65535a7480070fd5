from django_filters import rest_framework as filters

from apps.core.api import FilterSet, IdFilter, visible
from apps.peers.models import Gateway, Peer
from apps.rates.models import TimeProfile
from apps.routing.models import QualityStat, Route, RoutingPlan, RoutingRule


class RoutingPlanFilter(FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    parent = IdFilter(queryset=visible(RoutingPlan))

    class Meta:
        model = RoutingPlan
        fields = ["name", "parent"]


class RoutingRuleFilter(FilterSet):
    plan = IdFilter(queryset=visible(RoutingPlan))
    time_profile = IdFilter(queryset=visible(TimeProfile))
    prefix_startswith = filters.CharFilter(
        field_name="prefix", lookup_expr="startswith", label="Prefix starts with"
    )

    class Meta:
        model = RoutingRule
        fields = ["plan", "prefix", "prefix_startswith", "time_profile", "method", "enabled"]


class RouteFilter(FilterSet):
    rule = IdFilter(queryset=visible(RoutingRule))
    plan = IdFilter(field_name="rule__plan", queryset=visible(RoutingPlan), label="Plan")
    supplier = IdFilter(queryset=visible(Peer))
    gateway = IdFilter(queryset=visible(Gateway))

    class Meta:
        model = Route
        fields = ["rule", "plan", "supplier", "gateway", "enabled", "stop_hunting"]


class QualityStatFilter(FilterSet):
    supplier = IdFilter(queryset=visible(Peer))
    destination = filters.CharFilter(lookup_expr="istartswith", label="Destination starts with")

    class Meta:
        model = QualityStat
        fields = ["supplier", "destination"]
