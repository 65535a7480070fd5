"""Invoices as the API shows them, and the bodies of what can be done to one.

Amounts are the invoice's stored figures, as strings; signs as in the ledger for the
period's sums and the lines (a call charge negative, a payment positive), while net, tax,
total and amount due are what the document prints.
"""

from rest_framework import serializers

from apps.billing.models import Account
from apps.core.api import ModelSerializer, ScopedRelatedField
from apps.core.money import MAX_AMOUNT, MONEY_DIGITS, MONEY_PLACES
from apps.invoicing.models import Invoice, InvoiceLine
from apps.invoicing.services.invoices import INVOICED_ROLES

MAX_RECIPIENTS = 10


class InvoiceLineSerializer(ModelSerializer):
    """One line: the calls to a destination, a fee, a payment, the tax, a credit…"""

    class Meta:
        model = InvoiceLine
        fields = ["position", "kind", "description", "occurred_on", "calls", "seconds", "amount"]
        read_only_fields = fields
        extra_kwargs = {
            "amount": {"help_text": "Signed as in the ledger: a charge negative, a payment positive."},
            "seconds": {"help_text": "Billed seconds of the calls (calls lines only)."},
        }


class InvoiceSerializer(ModelSerializer):
    """An invoice or credit note: its period, the account over it, and what it invoices."""

    issuer_name = serializers.CharField(source="issuer.legal_name", read_only=True)
    customer = serializers.IntegerField(source="account.peer_id", read_only=True, help_text="The peer.")

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "kind",
            "state",
            "issuer",
            "issuer_name",
            "account",
            "customer",
            "period_start",
            "period_end",
            "time_zone",
            "currency",
            "language",
            "opening_balance",
            "charges",
            "fees",
            "payments",
            "refunds",
            "adjustments",
            "tax_posted",
            "terminated",
            "closing_balance",
            "tax_name",
            "tax_rate",
            "prices_include_tax",
            "net",
            "tax",
            "total",
            "amount_due",
            "corrects",
            "reason",
            "issued_at",
            "due_on",
            "sent_at",
            "sent_to",
            "paid_at",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "number": {"help_text": "Empty until issued."},
            "period_end": {"help_text": "The period's last day, included, on the customer's clock."},
            "tax_rate": {"help_text": "Percent."},
            "corrects": {"help_text": "Of a credit note: the invoice it corrects."},
            "amount_due": {"help_text": "What the account owed at the period's end (0 when in credit)."},
        }


class InvoiceDetailSerializer(InvoiceSerializer):
    """An invoice with its lines, in the order printed."""

    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines"]
        read_only_fields = fields


class DraftSerializer(serializers.Serializer):
    """The account and the days of the period to invoice, on the customer's clock."""

    account = ScopedRelatedField(queryset=Account.objects.filter(peer__role__in=INVOICED_ROLES))
    period_start = serializers.DateField(help_text="The period's first day.")
    period_end = serializers.DateField(help_text="Its last day, included; the period must have ended.")


def _amount(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, max_value=MAX_AMOUNT, **kwargs
    )


class CreditSerializer(serializers.Serializer):
    amount = _amount(help_text="Tax included, in the invoice's currency; credited to the account.")
    reason = serializers.CharField(max_length=200, help_text="Printed on the credit note.")


class PaySerializer(serializers.Serializer):
    amount = _amount(required=False, allow_null=True, help_text="Default: the invoice's amount due.")
    reference = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="The bank's or gateway's transaction id; default: the invoice's number. "
        "Posting the same reference again posts nothing.",
    )

    def validate_reference(self, value):
        return (value or "").strip() or None


class SendSerializer(serializers.Serializer):
    to = serializers.ListField(
        child=serializers.EmailField(),
        required=False,
        max_length=MAX_RECIPIENTS,
        help_text="Default: the account's notification address, else its reseller's.",
    )
