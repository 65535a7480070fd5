from django_filters import rest_framework as filters

from apps.core.api import BooleanFilter, FilterSet, IdFilter, MomentFilter, visible
from apps.fraud.models import Alert, Controller
from apps.peers.models import Peer


class AlertFilter(FilterSet):
    open = BooleanFilter(field_name="ended_at", lookup_expr="isnull", label="Not yet over (true) or over")
    peer = IdFilter(queryset=visible(Peer), label="About this customer or supplier")
    controller = IdFilter(queryset=visible(Controller))
    since = MomentFilter(field_name="started_at", lookup_expr="gte", label="Started at or after")
    before = MomentFilter(field_name="started_at", lookup_expr="lt", label="Started before")
    source_ip = filters.CharFilter(max_length=45, label="About this source address")
    number = filters.CharFilter(max_length=64, label="About this number")

    class Meta:
        model = Alert
        fields = ["kind", "effect", "open", "peer", "controller", "since", "before", "source_ip", "number"]


class ControllerFilter(FilterSet):
    peer = IdFilter(queryset=visible(Peer))

    class Meta:
        model = Controller
        fields = ["kind", "action", "enabled", "peer"]
