from django.db.models import Q

from apps.cdr.models import Cdr
from apps.core.api import BooleanFilter, FilterSet, IdFilter, MomentFilter, visible
from apps.peers.models import Peer
from apps.tenancy.scope import request_scope


def _suppliers(request):
    # Only the operator may ask which calls went to which supplier.
    if request is None or not request_scope(request).is_operator:
        return Peer.objects.none()
    return Peer.objects.suppliers()


class CdrFilter(FilterSet):
    created_after = MomentFilter(field_name="created_at", lookup_expr="gte", label="Set up at or after")
    created_before = MomentFilter(field_name="created_at", lookup_expr="lt", label="Set up before")
    peer = IdFilter(
        queryset=visible(Peer),
        method="filter_peer",
        label="Peer on either side (the customer side only, for resellers and customers)",
    )
    customer = IdFilter(queryset=visible(Peer))
    supplier = IdFilter(queryset=_suppliers, model=Peer, label="Supplier (operator only)")
    answered = BooleanFilter(field_name="answered_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Cdr
        fields = [
            "created_after",
            "created_before",
            "peer",
            "customer",
            "supplier",
            "sip_code",
            "rating_state",
            "answered",
            "call_id",
        ]

    def filter_peer(self, queryset, name, value):
        if request_scope(self.request).is_operator:
            return queryset.filter(Q(customer=value) | Q(supplier=value))
        return queryset.filter(customer=value)
