from django_filters import rest_framework as filters

from apps.core.api import BooleanFilter, FilterSet, IdFilter, visible
from apps.core.models import digits_validator
from apps.dids.models import Did
from apps.peers.models import Peer
from apps.tenancy.scope import request_scope


def _suppliers(request):
    # Who delivers a number, and so what it costs us, is the operator's to ask.
    if request is None or not request_scope(request).is_operator:
        return Peer.objects.none()
    return Peer.objects.suppliers()


class DigitsFilter(filters.CharFilter):
    """Digits only, at most as long as a number: anything else is a 400 naming the filter."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=32, validators=[digits_validator], **kwargs)


class DidFilter(FilterSet):
    prefix = DigitsFilter(
        field_name="number", lookup_expr="startswith", label="Numbers (first of a block) starting with"
    )
    holds = DigitsFilter(method="filter_holds", label="The DID or block that holds this number")
    customer = IdFilter(queryset=visible(Peer))
    supplier = IdFilter(queryset=_suppliers, model=Peer, label="Supplier (operator only)")
    in_stock = BooleanFilter(field_name="customer", lookup_expr="isnull", label="In stock (no customer)")

    class Meta:
        model = Did
        fields = ["prefix", "holds", "customer", "supplier", "in_stock", "enabled"]

    def filter_holds(self, queryset, name, value):
        return queryset.covering(value)
