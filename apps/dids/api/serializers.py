"""DIDs as the API shows and accepts them; what a number costs us is the operator's alone."""

from decimal import Decimal

from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from apps.core.api import ModelSerializer, ScopedRelatedField
from apps.core.money import MAX_AMOUNT, MAX_PRICE
from apps.dids.models import Did, DidTarget, Hunting
from apps.dids.services import MAX_TARGETS
from apps.peers.models import Gateway, Peer, SipAccount
from apps.tenancy.scope import request_scope


class DidTargetSerializer(ModelSerializer):
    """One target of a DID: a SIP account or a gateway of its customer, tried in list order."""

    sip_account = ScopedRelatedField(
        queryset=SipAccount.objects.all(),
        required=False,
        allow_null=True,
        help_text="One of the customer's SIP accounts, reached wherever it is registered.",
    )
    gateway = ScopedRelatedField(
        queryset=Gateway.objects.all(),
        required=False,
        allow_null=True,
        help_text="One of the customer's own gateways (a user peer's PBX or SBC).",
    )
    setup_timeout = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=300,
        help_text="Seconds without a reply before the next target is tried; empty: until it fails.",
    )
    name = serializers.CharField(source="__str__", read_only=True, help_text="user@domain, or the gateway.")

    class Meta:
        model = DidTarget
        fields = ["sip_account", "gateway", "setup_timeout", "name"]

    def validate(self, attrs):
        if (attrs.get("sip_account") is None) == (attrs.get("gateway") is None):
            raise serializers.ValidationError("Choose a SIP account or a gateway.")
        return attrs


def _price(maximum: Decimal, text: str) -> dict:
    return {"min_value": Decimal(0), "max_value": maximum, "help_text": f"{text}; 0 to {maximum:f}."}


def targets_field(**kwargs) -> DidTargetSerializer:
    return DidTargetSerializer(
        many=True,
        max_length=MAX_TARGETS,
        help_text=f"Where calls go, in the order tried (at most {MAX_TARGETS}); an empty list: "
        "none, the DID's calls are refused.",
        **kwargs,
    )


def as_targets(rows: list[dict]) -> list[tuple]:
    """Validated target rows as the services take them: (SIP account or gateway, timeout)."""
    return [(row.get("sip_account") or row.get("gateway"), row.get("setup_timeout")) for row in rows]


class DidSerializer(ModelSerializer):
    """A number or a block of numbers, its customer, its prices and where its calls go."""

    supplier = ScopedRelatedField(
        queryset=Peer.objects.all(),
        required=False,
        allow_null=True,
        help_text="Operator only. Who delivers its calls (a supplier or user peer); empty: our own number.",
    )
    customer = ScopedRelatedField(
        queryset=Peer.objects.all(),
        required=False,
        allow_null=True,
        help_text="Who owns and pays for it. Setting it assigns the DID (with `targets`), its "
        "monthly fee starting today; null releases it to stock (its fee ends).",
    )
    targets = targets_field(required=False)
    size = serializers.IntegerField(read_only=True, help_text="How many numbers it holds.")

    # What a number costs us and who delivers it: neither shown to nor set by resellers and customers.
    operator_only = ("supplier", "buy_monthly", "buy_per_minute")

    class Meta:
        model = Did
        fields = [
            "id",
            "number",
            "last_number",
            "size",
            "supplier",
            "customer",
            "targets",
            "buy_monthly",
            "sell_monthly",
            "buy_per_minute",
            "sell_per_minute",
            "min_seconds",
            "increment_seconds",
            "hunting",
            "enabled",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        # The services' bounds (apps.core.money), checked here first so that the 400 names the field.
        extra_kwargs = {
            "buy_monthly": _price(MAX_AMOUNT, "Operator only. What the supplier charges us per month"),
            "sell_monthly": _price(MAX_AMOUNT, "What the customer pays per month"),
            "buy_per_minute": _price(MAX_PRICE, "Operator only. What the supplier charges us per minute"),
            "sell_per_minute": _price(MAX_PRICE, "What the customer pays per minute"),
            "min_seconds": {"min_value": 1, "help_text": "Seconds billed at least, per call."},
            "increment_seconds": {"min_value": 1, "help_text": "Seconds billed by, after the first."},
        }
        # Uniqueness and overlapping blocks are checked once, by the service's full_clean().
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        # The number's own check (Did.clean) also catches blocks that overlap it.
        fields["number"].validators = [
            v for v in fields["number"].validators if not isinstance(v, UniqueValidator)
        ]
        return fields

    def to_internal_value(self, data):
        if not request_scope(self.context["request"]).is_operator and hasattr(data, "keys"):
            named = [name for name in self.operator_only if name in data]
            if named:
                raise serializers.ValidationError({name: ["Only the operator sets this."] for name in named})
        return super().to_internal_value(data)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not request_scope(self.context["request"]).is_operator:
            for name in self.operator_only:
                data.pop(name, None)
        return data


class TargetsSerializer(serializers.Serializer):
    """The complete, ordered list of where a DID's calls go, and how its accounts ring."""

    targets = targets_field(allow_empty=True)
    hunting = serializers.ChoiceField(
        choices=Hunting.choices,
        required=False,
        help_text="sequence: in turn; all: the SIP accounts ring at once, then the gateways in turn.",
    )
