from django_filters import rest_framework as filters

from apps.core.api import FilterSet, IdFilter, MomentFilter, visible
from apps.rates.models import Rate, RateTable, TimeProfile
from apps.tenancy.models import Reseller


class RateTableFilter(FilterSet):
    reseller = IdFilter(queryset=visible(Reseller))

    class Meta:
        model = RateTable
        fields = ["purpose", "currency", "reseller"]


class RateFilter(FilterSet):
    table = IdFilter(queryset=visible(RateTable))
    prefix_startswith = filters.CharFilter(
        field_name="prefix", lookup_expr="startswith", label="Prefix starts with"
    )
    effective_at = MomentFilter(method="filter_effective_at", label="In force at this moment")

    class Meta:
        model = Rate
        fields = ["table", "prefix", "prefix_startswith", "period", "effective_at"]

    def filter_effective_at(self, queryset, name, value):
        return queryset.effective_at(value)


class TimeProfileFilter(FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = TimeProfile
        fields = ["name"]
