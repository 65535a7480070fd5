"""Price lists and their rates, read only: imports go through apps.rates.services."""

from apps.core.api import ScopedReadOnlyViewSet
from apps.rates.api import filters, serializers
from apps.rates.models import Rate, RateTable


class RateTableViewSet(ScopedReadOnlyViewSet):
    """Sell and buy price lists; a customer sees only the one it pays."""

    queryset = RateTable.objects.all()
    serializer_class = serializers.RateTableSerializer
    filterset_class = filters.RateTableFilter
    ordering_fields = ("name", "created_at")


class RateViewSet(ScopedReadOnlyViewSet):
    """The price of each prefix over time, in the price lists the scope may see."""

    queryset = Rate.objects.live()
    serializer_class = serializers.RateSerializer
    filterset_class = filters.RateFilter
    ordering_fields = ("prefix", "effective_from", "price")
