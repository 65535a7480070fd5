"""CDRs in two cuts: the operator's, and the one resellers and customers see.

The supplier leg (who terminated the call, at what cost, with which number) is the
operator's business secret: it is not in the tenant serializer at all, so no scope check
in a view can forget to hide it.
"""

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from apps.cdr.models import Cdr
from apps.core.api import ModelSerializer
from apps.core.money import MONEY_DIGITS, MONEY_PLACES

TENANT_FIELDS = [
    "id",
    "call_id",
    "from_tag",
    "to_tag",
    "customer",
    "source_ip",
    "caller",
    "callee",
    "created_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "billable_seconds",
    "sip_code",
    "sip_reason",
    "sell_cost",
    "rating_state",
    "rated_at",
]


class CdrSerializer(ModelSerializer):
    """A call as a reseller or customer sees it: their side only, no supplier leg."""

    class Meta:
        model = Cdr
        fields = TENANT_FIELDS
        read_only_fields = fields


class OperatorCdrSerializer(ModelSerializer):
    """A call as the operator sees it: both sides, supplier, buy cost and margin."""

    margin = serializers.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        read_only=True,
        allow_null=True,
        help_text="Sell cost minus buy cost; empty until both sides are rated.",
    )

    class Meta:
        model = Cdr
        fields = [
            *TENANT_FIELDS,
            "node",
            "supplier",
            "gateway",
            "callee_out",
            "supplier_billable_seconds",
            "buy_cost",
            "margin",
            "rating_error",
        ]
        read_only_fields = fields


class ClosedCdrSchema(OpenApiSerializerExtension):
    """Document Cdr as admitting no other property.

    The list is documented as oneOf(OperatorCdr, Cdr); an operator's row, a superset of a
    tenant's, must then match OperatorCdr alone.
    """

    target_class = CdrSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}
