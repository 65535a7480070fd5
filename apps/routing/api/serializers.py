"""Routing plans, rules, routes and supplier quality, as the API shows and accepts them."""

from rest_framework import serializers

from apps.core.api import CreateOnlyFieldsMixin, ModelSerializer, ScopedRelatedField
from apps.peers.models import Gateway, Peer
from apps.rates.models import TimeProfile
from apps.routing.models import QualityStat, Route, RoutingPlan, RoutingRule


class RoutingPlanSerializer(ModelSerializer):
    """A named set of rules given to customers or resellers; may inherit a parent's rules."""

    parent = ScopedRelatedField(
        queryset=RoutingPlan.objects.all(),
        required=False,
        allow_null=True,
        help_text="Numbers none of this plan's rules match are routed by the parent's rules.",
    )

    class Meta:
        model = RoutingPlan
        fields = ["id", "name", "parent", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness is checked once, by the service's full_clean().
        validators = []
        extra_kwargs = {"name": {"validators": []}}


class RoutingRuleSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """Where numbers starting with a prefix go, and by which method their routes are ordered."""

    plan = ScopedRelatedField(queryset=RoutingPlan.objects.all())
    time_profile = ScopedRelatedField(
        queryset=TimeProfile.objects.all(),
        required=False,
        allow_null=True,
        help_text="Only in this time profile's hours, on the customer's clock; null: at any time. "
        "In its window a rule wins over one of the same prefix without a window.",
    )

    class Meta:
        model = RoutingRule
        fields = [
            "id",
            "plan",
            "prefix",
            "destination",
            "time_profile",
            "method",
            "quality_metric",
            "quality_tolerance",
            "position",
            "enabled",
            "description",
        ]
        create_only = ["plan"]


class RouteSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """One supplier (or one of its gateways) a rule may send calls to."""

    rule = ScopedRelatedField(queryset=RoutingRule.objects.all())
    supplier = ScopedRelatedField(queryset=Peer.objects.all(), help_text="One of the operator's suppliers.")
    gateway = ScopedRelatedField(
        queryset=Gateway.objects.all(),
        required=False,
        allow_null=True,
        help_text="Empty: every enabled gateway of the supplier, in their priority order.",
    )

    class Meta:
        model = Route
        fields = [
            "id",
            "rule",
            "supplier",
            "gateway",
            "priority",
            "weight",
            "max_calls",
            "setup_timeout",
            "stop_hunting",
            "record_calls",
            "capture_calls",
            "codecs",
            "enabled",
        ]
        create_only = ["rule"]
        # (rule, supplier, gateway) is checked once, by the service's full_clean().
        validators = []


class QualityStatSerializer(ModelSerializer):
    """Attempts, answers, ASR and ACD of one supplier towards one destination in the window."""

    asr = serializers.DecimalField(
        max_digits=5, decimal_places=2, read_only=True, help_text="Answered attempts, in percent."
    )
    acd = serializers.DecimalField(
        max_digits=8, decimal_places=1, read_only=True, help_text="Average answered call, in seconds."
    )

    class Meta:
        model = QualityStat
        fields = [
            "id",
            "supplier",
            "destination",
            "attempts",
            "answered",
            "answered_seconds",
            "asr",
            "acd",
            "window_start",
            "window_end",
        ]
        read_only_fields = fields
