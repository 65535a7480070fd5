from decimal import Decimal

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.billing.models import Account, LedgerEntry
from apps.billing.services.ledger import STORABLE
from apps.billing.spending import spent
from apps.core.api import ModelSerializer
from apps.core.models import MoneyField
from apps.core.money import (
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_CREDIT_LIMIT,
    MONEY_DIGITS,
    MONEY_PLACES,
    amount_in_range,
    shown,
)


class MoneyReadField(serializers.DecimalField):
    """A stored amount as a string at six places, whatever its size: reading never fails.

    DRF's DecimalField quantizes within max_digits and raises past it; a number stored
    before the bounds existed (or computed from two of them, like `spendable`) may be
    longer. It is shown as it is, and `out_of_range` says so.
    """

    def to_representation(self, value):
        if value is None:
            return None
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        return f"{shown(number):f}"


def _money(**kwargs) -> serializers.DecimalField:
    field = MoneyReadField if kwargs.get("read_only") else serializers.DecimalField
    return field(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, **kwargs)


def _bounded(maximum: Decimal, **kwargs) -> serializers.DecimalField:
    # The services' bounds, checked first here so that the 400 names the field at once.
    return _money(max_value=maximum, min_value=-maximum, **kwargs)


class _FlagsOutOfRange:
    """`out_of_range`: which of the object's amounts lie past apps.core.money's bounds."""

    limits: dict[str, Decimal] = {}

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_out_of_range(self, obj) -> list[str]:
        return [name for name, limit in self.limits.items() if not amount_in_range(getattr(obj, name), limit)]


OUT_OF_RANGE_HELP = (
    "Names of the amounts past the product's bounds (balances +-10^12, amounts 10^9): only "
    "rows written around the API (an older version's bug, a hand edit) can be. Empty normally."
)


class AccountSerializer(_FlagsOutOfRange, ModelSerializer):
    """The money of one peer; its balance changes only through ledger entries."""

    serializer_field_mapping = {**ModelSerializer.serializer_field_mapping, MoneyField: MoneyReadField}
    limits = {
        "balance": MAX_BALANCE,
        "credit_limit": MAX_CREDIT_LIMIT,
        "low_balance_threshold": MAX_AMOUNT,
        "reserved": MAX_BALANCE,
        "spendable": MAX_BALANCE + MAX_CREDIT_LIMIT,
        "available": MAX_BALANCE + MAX_CREDIT_LIMIT,
    }

    out_of_range = serializers.SerializerMethodField(help_text=OUT_OF_RANGE_HELP)
    spendable = _money(
        read_only=True,
        help_text="Balance plus the credit limit when postpaid, before live calls' reservations.",
    )
    available = _money(
        read_only=True,
        help_text="What a new call may use: spendable minus what live calls hold (reserved).",
    )
    spent_today = serializers.SerializerMethodField(
        help_text="Calls charged today on the customer's clock (its time zone), as a string."
    )
    spent_this_month = serializers.SerializerMethodField(
        help_text="Calls charged this calendar month on the customer's clock, as a string."
    )

    @extend_schema_field(serializers.CharField())
    def get_spent_today(self, account) -> str:
        return MoneyReadField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES).to_representation(
            spent(account).today
        )

    @extend_schema_field(serializers.CharField())
    def get_spent_this_month(self, account) -> str:
        return MoneyReadField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES).to_representation(
            spent(account).this_month
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
            "daily_spend_limit",
            "monthly_spend_limit",
            "balance",
            "reserved",
            "spendable",
            "available",
            "spent_today",
            "spent_this_month",
            "out_of_range",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "reserved": {"help_text": "Money held by the account's live calls."},
            "daily_spend_limit": {
                "help_text": "Most its calls may cost in a day (its time zone); null: none."
            },
            "monthly_spend_limit": {"help_text": "Most its calls may cost in a calendar month; null: none."},
        }


class LedgerEntrySerializer(_FlagsOutOfRange, ModelSerializer):
    """One immutable movement of money; positive credits, negative debits."""

    serializer_field_mapping = {**ModelSerializer.serializer_field_mapping, MoneyField: MoneyReadField}
    limits = {"amount": MAX_BALANCE}

    out_of_range = serializers.SerializerMethodField(help_text=OUT_OF_RANGE_HELP)

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
            "out_of_range",
        ]
        read_only_fields = fields


# --- bodies of the posting endpoints -----------------------------------------------------
# The services check what the amounts may be (positive payment, non-zero adjustment, within
# apps.core.money's bounds); the bounds are checked here first. Refusals come back as 400s
# naming the field, like the serializers' own.

REFERENCE_HELP = (
    "Your own id of this movement (a transaction id). Posting the same reference again with "
    "the same amount returns the first entry (200) instead of posting twice; with another "
    "amount it is refused (409)."
)


def _reference() -> serializers.CharField:
    return serializers.CharField(max_length=100, help_text=REFERENCE_HELP)


class PaymentSerializer(serializers.Serializer):
    """A payment received: credits the account."""

    amount = _bounded(
        MAX_AMOUNT,
        help_text='Positive, at most 1000000000, in the account\'s currency, as a string such as "12.50".',
    )
    reference = _reference()
    description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class RefundSerializer(PaymentSerializer):
    """Money paid back to the customer: debits the account by `amount`."""

    amount = _bounded(
        MAX_AMOUNT,
        help_text="The money paid back, positive, at most what was paid and not refunded yet; the "
        "entry's amount is its negative.",
    )
    allow_over_refund = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Operator only: refund more than was paid (e.g. a goodwill credit paid out).",
    )


ADJUSTMENT_HELP = "Positive credits the account, negative debits it; never zero; within +-1000000000."


class AdjustmentSerializer(serializers.Serializer):
    """A correction: credits (positive) or debits (negative) the account, with its reason."""

    amount = _bounded(MAX_AMOUNT, help_text=ADJUSTMENT_HELP)
    reason = serializers.CharField(max_length=200, help_text="Shown on the ledger and in the audit trail.")
    reference = _reference()


class OperatorAdjustmentSerializer(AdjustmentSerializer):
    """The operator's adjustment may also bring a balance already out of range back into it."""

    amount = _bounded(STORABLE, help_text=ADJUSTMENT_HELP)


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
