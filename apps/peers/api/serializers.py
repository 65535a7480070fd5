"""Peers and what hangs off them, as the API shows and accepts them."""

from rest_framework import serializers

from apps.billing.models import Account
from apps.core.api import CreateOnlyFieldsMixin, ModelSerializer, ScopedRelatedField
from apps.core.models import currency_validator
from apps.core.money import MONEY_DIGITS, MONEY_PLACES
from apps.nodes.models import Node
from apps.peers.models import Endpoint, Gateway, Peer, Registration, SipAccount
from apps.rates.models import RateTable
from apps.routing.models import RoutingPlan
from apps.tenancy.models import Reseller
from apps.tenancy.scope import request_scope


class AccountOpeningSerializer(serializers.Serializer):
    """The account a new peer is opened with."""

    currency = serializers.CharField(
        required=False,
        validators=[currency_validator],
        help_text="Defaults to the price list's currency, then the owner's.",
    )
    mode = serializers.ChoiceField(choices=Account.Mode.choices, required=False, help_text="Default prepaid.")
    credit_limit = serializers.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        required=False,
        help_text="Postpaid only: how far below zero the balance may go.",
    )


class PeerSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """A customer or supplier; role, owner, nodes and account are set when creating."""

    reseller = ScopedRelatedField(
        queryset=Reseller.objects.all(),
        required=False,
        allow_null=True,
        help_text="Owner; empty means the operator. A reseller's key always creates for its reseller.",
    )
    status = serializers.ChoiceField(choices=["active", "suspended", "disabled"], read_only=True)
    sell_rate_table = ScopedRelatedField(
        queryset=RateTable.objects.all(),
        required=False,
        allow_null=True,
        help_text="The price list this customer pays.",
    )
    buy_rate_table = ScopedRelatedField(
        queryset=RateTable.objects.all(),
        required=False,
        allow_null=True,
        help_text="The price list this supplier charges.",
    )
    nodes = ScopedRelatedField(
        queryset=Node.objects.all(),
        many=True,
        required=False,
        help_text="Nodes that serve this peer. Set when creating; change with assign-nodes.",
    )
    routing_plan = ScopedRelatedField(
        queryset=RoutingPlan.objects.all(),
        required=False,
        allow_null=True,
        help_text="Operator only. The customer's routing plan; empty: its reseller's, else the "
        "cluster's default.",
    )
    account = AccountOpeningSerializer(
        write_only=True, required=False, help_text="The account opened with the peer (when creating only)."
    )

    # Routing is the operator's: resellers and customers neither see nor set these.
    operator_only = ("routing_plan", "profit_control")

    def to_internal_value(self, data):
        if not request_scope(self.context["request"]).is_operator and hasattr(data, "keys"):
            named = [name for name in self.operator_only if name in data]
            if named:
                raise serializers.ValidationError({name: ["Only the operator sets this."] for name in named})
        return super().to_internal_value(data)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        scope = request_scope(self.context["request"])
        if scope.is_customer:
            # Notes are the operator's or reseller's remarks about the customer.
            data.pop("notes", None)
        if not scope.is_operator:
            for name in self.operator_only:
                data.pop(name, None)
        return data

    class Meta:
        model = Peer
        fields = [
            "id",
            "name",
            "company",
            "billing_address",
            "tax_id",
            "role",
            "reseller",
            "enabled",
            "status",
            "suspended_at",
            "suspended_reason",
            "max_calls",
            "max_cps",
            "max_price",
            "tech_prefix",
            "sell_rate_table",
            "buy_rate_table",
            "routing_plan",
            "profit_control",
            "record_calls",
            "capture_calls",
            "codecs",
            "recording_retention_days",
            "time_zone",
            "nodes",
            "notes",
            "created_at",
            "updated_at",
            "account",
        ]
        read_only_fields = ["suspended_at", "suspended_reason", "created_at", "updated_at"]
        create_only = ["role", "reseller", "nodes", "account"]
        extra_kwargs = {
            "profit_control": {
                "help_text": "Operator only. Which supplier prices this customer's calls may be "
                "routed at, against its sell price."
            },
            "record_calls": {"help_text": "Record this customer's calls."},
            "codecs": {
                "help_text": "Audio codecs this peer takes, comma-separated, of PCMU, PCMA, G722, opus, "
                "GSM; empty: any. A supplier's call that takes none of the caller's is transcoded."
            },
            "time_zone": {
                "help_text": "IANA name (Europe/Berlin): the clock its routing windows and time-of-week "
                "prices are read on; a supplier's, its buy prices'. Default: the installation's TIME_ZONE."
            },
        }
        # Uniqueness is checked once, by the service's full_clean().
        validators = []


class SuspendSerializer(serializers.Serializer):
    """Why the peer is suspended."""

    reason = serializers.CharField(max_length=200, help_text="Why; shown to the operator and the reseller.")


class AssignNodesSerializer(serializers.Serializer):
    """The complete set of nodes that serve the peer."""

    nodes = ScopedRelatedField(queryset=Node.objects.all(), many=True, allow_empty=True)


class EndpointSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """An address or network whose calls are identified as the peer's."""

    peer = ScopedRelatedField(queryset=Peer.objects.all())

    class Meta:
        model = Endpoint
        fields = ["id", "peer", "ip", "mask", "cidr", "port", "transport", "enabled", "description"]
        create_only = ["peer"]


class GatewaySerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """A supplier's SIP destination for outbound calls."""

    peer = ScopedRelatedField(queryset=Peer.objects.all())

    class Meta:
        model = Gateway
        fields = [
            "id",
            "peer",
            "name",
            "host",
            "port",
            "transport",
            "uri",
            "strip_digits",
            "prefix",
            "priority",
            "weight",
            "probing",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        create_only = ["peer"]
        validators = []


class SipAccountSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """A digest login of a customer; the password is write-only, digests never leave."""

    peer = ScopedRelatedField(queryset=Peer.objects.all())
    password = serializers.CharField(
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Given when creating; stored only as HA1 digests.",
    )

    class Meta:
        model = SipAccount
        # HA1 digests are password equivalents for SIP digest auth: never serialized.
        fields = ["id", "peer", "username", "domain", "password", "enabled", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        create_only = ["peer", "username", "domain"]
        validators = []

    def validate_password(self, value):
        if self.instance is not None:
            raise serializers.ValidationError("Change a password with POST sip-accounts/{id}/set-password/.")
        return value


class SipPasswordSerializer(serializers.Serializer):
    """The new SIP password."""

    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})


class RegistrationSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """An outbound registration to a supplier's registrar; the password is write-only."""

    peer = ScopedRelatedField(queryset=Peer.objects.all())
    node = ScopedRelatedField(queryset=Node.objects.all(), required=False, allow_null=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=64,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Stored in clear (uac_registrant answers the registrar's challenge with it); "
        "never returned.",
    )

    class Meta:
        model = Registration
        fields = [
            "id",
            "peer",
            "registrar",
            "proxy",
            "aor",
            "username",
            "password",
            "expiry",
            "node",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        create_only = ["peer"]
        validators = []
