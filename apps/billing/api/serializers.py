from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from apps.billing.models import Account, LedgerEntry
from apps.core.api import ModelSerializer
from apps.core.money import MONEY_DIGITS, MONEY_PLACES


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, **kwargs)


class AccountSerializer(ModelSerializer):
    """The money of one peer; its balance changes only through ledger entries."""

    spendable = _money(
        read_only=True,
        help_text="Balance plus the credit limit when postpaid, before live calls' reservations.",
    )
    available = _money(
        read_only=True,
        help_text="What a new call may use: spendable minus what live calls hold (reserved).",
    )

    class Meta:
        model = Account
        fields = [
            "id",
            "peer",
            "currency",
            "mode",
            "credit_limit",
            "low_balance_threshold",
            "notification_email",
            "balance",
            "reserved",
            "spendable",
            "available",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"reserved": {"help_text": "Money held by the account's live calls."}}


class LedgerEntrySerializer(ModelSerializer):
    """One immutable movement of money; positive credits, negative debits."""

    class Meta:
        model = LedgerEntry
        # The acting user's id stays internal; its label says who it was.
        fields = [
            "id",
            "account",
            "kind",
            "amount",
            "reference",
            "cdr",
            "description",
            "actor_label",
            "occurred_at",
            "created_at",
        ]
        read_only_fields = fields


# --- bodies of the posting endpoints -----------------------------------------------------
# The services check what the amounts may be (positive payment, non-zero adjustment); their
# refusals come back as 400s naming the field, like the serializers' own.

REFERENCE_HELP = (
    "Your own id of this movement (a transaction id). Posting the same reference again with "
    "the same amount returns the first entry (200) instead of posting twice; with another "
    "amount it is refused (409)."
)


def _reference() -> serializers.CharField:
    return serializers.CharField(max_length=100, help_text=REFERENCE_HELP)


class PaymentSerializer(serializers.Serializer):
    """A payment received: credits the account."""

    amount = _money(help_text='Positive, in the account\'s currency, as a string such as "12.50".')
    reference = _reference()
    description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class RefundSerializer(PaymentSerializer):
    """Money paid back to the customer: debits the account by `amount`."""

    amount = _money(help_text="The money paid back, positive; the entry's amount is its negative.")


class AdjustmentSerializer(serializers.Serializer):
    """A correction: credits (positive) or debits (negative) the account, with its reason."""

    amount = _money(help_text="Positive credits the account, negative debits it; never zero.")
    reason = serializers.CharField(max_length=200, help_text="Shown on the ledger and in the audit trail.")
    reference = _reference()


# --- error bodies, for the schema ----------------------------------------------------------


class FieldErrorsSerializer(serializers.Serializer):
    """{field: [messages]}: what was refused, by the name of the field at fault."""


class FieldErrorsSchema(OpenApiSerializerExtension):
    target_class = FieldErrorsSerializer

    def map_serializer(self, auto_schema, direction):
        return {
            "type": "object",
            "description": "Messages by the name of the field they concern "
            "(`non_field_errors` for the body as a whole).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "example": {"amount": ["A payment is a positive amount."]},
        }


class DetailSerializer(serializers.Serializer):
    """A refusal that concerns no field."""

    detail = serializers.CharField()
