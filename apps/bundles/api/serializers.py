"""Bundles, subscriptions and their periods as the API shows them, and the bodies it takes.

Amounts travel as strings. A subscription is made by subscribe and ended by
end_subscription (apps.bundles.services.catalogue); a period's usage is read only.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.billing.models import Account
from apps.bundles.models import Bundle, Subscription, Usage
from apps.core.api import CreateOnlyFieldsMixin, ModelSerializer, ScopedRelatedField
from apps.core.money import MAX_AMOUNT
from apps.tenancy.models import Reseller
from apps.tenancy.scope import request_scope


class BundleSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """A bundle: minutes or money included each period for calls to some destinations, for a price.

    Once sold, its kind and period are fixed; a new price is charged from the next period not
    yet charged. A reseller's key always creates bundles of its own catalogue.
    """

    reseller = ScopedRelatedField(
        queryset=Reseller.objects.all(),
        required=False,
        allow_null=True,
        help_text="Operator only. Whose catalogue; empty means the operator's. A reseller's key always "
        "creates for its reseller.",
    )

    class Meta:
        model = Bundle
        fields = [
            "id",
            "reseller",
            "name",
            "kind",
            "minutes",
            "money",
            "period",
            "price",
            "prefixes",
            "destinations",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        create_only = ("reseller",)
        extra_kwargs = {
            "money": {"min_value": 0, "max_value": MAX_AMOUNT},
            "price": {"min_value": 0, "max_value": MAX_AMOUNT},
            "prefixes": {"help_text": "Numbers it covers by prefix, one per line (as priced: 4420, 331)."},
        }

    def to_internal_value(self, data):
        if (
            not request_scope(self.context["request"]).is_operator
            and hasattr(data, "keys")
            and "reseller" in data
        ):
            raise serializers.ValidationError({"reseller": ["Only the operator sets this."]})
        return super().to_internal_value(data)


class PeriodSerializer(ModelSerializer):
    """One period of a subscription: what it includes, what calls used of it, what is left."""

    left_seconds = serializers.IntegerField(read_only=True, help_text="Minutes bundles: seconds left.")
    left_money = serializers.DecimalField(
        max_digits=20, decimal_places=6, read_only=True, help_text="Money bundles: money left."
    )

    class Meta:
        model = Usage
        fields = [
            "period_start",
            "period_end",
            "included_seconds",
            "included_money",
            "used_seconds",
            "used_money",
            "left_seconds",
            "left_money",
            "calls",
        ]
        read_only_fields = fields


class UsageSerializer(PeriodSerializer):
    """A period some call used (a period no call used has no row yet)."""

    class Meta(PeriodSerializer.Meta):
        fields = ["id", "subscription", *PeriodSerializer.Meta.fields]
        read_only_fields = fields


class SubscriptionSerializer(ModelSerializer):
    """An account's bundle from `starts_on` through `ends_on`; its price is a recurring fee."""

    bundle_name = serializers.CharField(source="bundle.name", read_only=True)
    kind = serializers.CharField(source="bundle.kind", read_only=True, help_text="minutes or money.")
    current_period = serializers.SerializerMethodField(
        help_text="This period on the customer's clock; null when the subscription is not in force today."
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "account",
            "bundle",
            "bundle_name",
            "kind",
            "starts_on",
            "ends_on",
            "fee",
            "current_period",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"fee": {"help_text": "The recurring fee that charges its price (none when free)."}}

    @extend_schema_field(PeriodSerializer(allow_null=True))
    def get_current_period(self, subscription):
        usage = self.context.get("current", {}).get(subscription.pk)
        return None if usage is None else PeriodSerializer(usage).data


class SubscribeSerializer(serializers.Serializer):
    """The customer's account, the bundle (of the account's owner's catalogue) and its days."""

    account = ScopedRelatedField(queryset=Account.objects.filter(peer__isnull=False))
    bundle = ScopedRelatedField(queryset=Bundle.objects.all())
    starts_on = serializers.DateField(help_text="First day included, on the customer's clock.")
    ends_on = serializers.DateField(
        required=False, allow_null=True, help_text="Last day included; empty: until ended."
    )


class EndSerializer(serializers.Serializer):
    ends_on = serializers.DateField(
        help_text="Last day included, on the customer's clock; its fee ends with it."
    )
