from rest_framework import serializers

from apps.core.api import ModelSerializer
from apps.rates.models import Rate, RateTable, TimeProfile


class RateTableSerializer(ModelSerializer):
    """A price list: sell (what customers pay) or buy (what a supplier charges)."""

    class Meta:
        model = RateTable
        fields = [
            "id",
            "name",
            "reseller",
            "purpose",
            "currency",
            "price_increase_notice_days",
            "on_net_price",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RateSerializer(ModelSerializer):
    """The per-minute price of one prefix over one period."""

    billing_notation = serializers.CharField(
        read_only=True, help_text="Minimum/increment/free seconds, e.g. 30/6/0."
    )

    class Meta:
        model = Rate
        fields = [
            "id",
            "table",
            "prefix",
            "destination",
            "price",
            "connection_fee",
            "min_seconds",
            "increment_seconds",
            "free_seconds",
            "billing_notation",
            "effective_from",
            "effective_to",
            "period",
        ]
        read_only_fields = fields


class TimeProfileSerializer(ModelSerializer):
    """Named hours of the week (weekend = 'Sat-Sun'): a price list's period column names them,
    routing rules route by them; read on each customer's clock."""

    class Meta:
        model = TimeProfile
        fields = ["id", "name", "windows", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness is checked once, by the service's full_clean().
        validators = []
        extra_kwargs = {"name": {"validators": []}}
