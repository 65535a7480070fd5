from rest_framework import serializers

from apps.billing.models import Account, LedgerEntry
from apps.core.api import ModelSerializer
from apps.core.money import MONEY_DIGITS, MONEY_PLACES


class AccountSerializer(ModelSerializer):
    """The money of one peer; its balance changes only through ledger entries."""

    spendable = serializers.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        read_only=True,
        help_text="Balance plus the credit limit when postpaid, before live calls' reservations.",
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
            "balance",
            "spendable",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


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
