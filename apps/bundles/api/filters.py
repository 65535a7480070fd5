import django_filters

from apps.billing.models import Account
from apps.bundles.models import Bundle, Subscription, Usage
from apps.core.api import BooleanFilter, FilterSet, IdFilter, visible
from apps.tenancy.models import Reseller


class BundleFilter(FilterSet):
    reseller = IdFilter(queryset=visible(Reseller), label="Of this reseller's catalogue")
    operator = BooleanFilter(
        field_name="reseller", lookup_expr="isnull", label="Of the operator's own catalogue (true)"
    )

    class Meta:
        model = Bundle
        fields = ["kind", "period", "reseller", "operator"]


class SubscriptionFilter(FilterSet):
    account = IdFilter(queryset=visible(Account))
    bundle = IdFilter(queryset=visible(Bundle))
    in_force_on = django_filters.DateFilter(method="in_force", label="In force on this day")

    class Meta:
        model = Subscription
        fields = ["account", "bundle", "in_force_on"]

    def in_force(self, queryset, name, value):
        return queryset.in_force(value)


class UsageFilter(FilterSet):
    subscription = IdFilter(queryset=visible(Subscription))
    period_start = django_filters.DateFilter(label="The period that starts on this day")
    period = django_filters.DateFilter(method="containing", label="The period that holds this day")

    class Meta:
        model = Usage
        fields = ["subscription", "period_start", "period"]

    def containing(self, queryset, name, value):
        return queryset.filter(period_start__lte=value, period_end__gte=value)
