from django_filters import rest_framework as filters

from apps.core.api import BooleanFilter, FilterSet, IdFilter, visible
from apps.peers.models import Endpoint, Gateway, Peer, Registration, SipAccount
from apps.tenancy.models import Reseller


class PeerFilter(FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    reseller = IdFilter(queryset=visible(Reseller))
    operator_owned = BooleanFilter(
        field_name="reseller", lookup_expr="isnull", label="Owned by the operator (no reseller)"
    )
    suspended = BooleanFilter(field_name="suspended_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Peer
        fields = ["name", "role", "enabled", "reseller", "operator_owned", "suspended", "tech_prefix"]


class PeerChildFilter(FilterSet):
    peer = IdFilter(queryset=visible(Peer))


class EndpointFilter(PeerChildFilter):
    class Meta:
        model = Endpoint
        fields = ["peer", "ip", "transport", "enabled"]


class GatewayFilter(PeerChildFilter):
    class Meta:
        model = Gateway
        fields = ["peer", "host", "transport", "enabled"]


class SipAccountFilter(PeerChildFilter):
    class Meta:
        model = SipAccount
        fields = ["peer", "username", "domain", "enabled"]


class RegistrationFilter(PeerChildFilter):
    class Meta:
        model = Registration
        fields = ["peer", "node", "enabled"]
