"""Price lists and their rates, read only: imports go through apps.rates.services."""

from apps.core.api import ScopedModelViewSet, ScopedReadOnlyViewSet, model_changes
from apps.rates.api import filters, serializers
from apps.rates.models import Rate, RateTable, TimeProfile
from apps.rates.services import time_profiles


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


class TimeProfileViewSet(ScopedModelViewSet):
    """Time profiles: everyone reads them, the operator writes them (the name is fixed once made)."""

    queryset = TimeProfile.objects.all()
    serializer_class = serializers.TimeProfileSerializer
    filterset_class = filters.TimeProfileFilter
    ordering_fields = ("name", "created_at")

    def create_object(self, data):
        return time_profiles.create_time_profile(actor=self.scope, **data)

    def update_object(self, profile, changes):
        return time_profiles.update_time_profile(
            profile, actor=self.scope, changes=model_changes(TimeProfile, changes)
        )

    def destroy_object(self, profile):
        time_profiles.delete_time_profile(profile, actor=self.scope)
