"""Invoices and credit notes: what the ledger of a period says, numbered, fixed once issued.

An invoice is calculated from the ledger (and the CDRs behind its call charges) over a
period in the customer's time zone; its figures are stored, so that the document it was
sent as can always be shown again, and an issued invoice never changes: a correction is a
credit note, a document of its own that credits the account through the ledger.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import CurrencyField, MoneyField, TimestampedModel
from apps.invoicing.querysets import InvoiceLineQuerySet, InvoiceQuerySet, IssuerQuerySet

RATE_DIGITS, RATE_PLACES = 7, 4  # a tax rate in percent: 0.0000 to 999.9999


class Issuer(TimestampedModel):
    """Who invoices: the operator (no reseller) or a reseller, and what its documents say."""

    reseller = models.OneToOneField(
        "tenancy.Reseller", null=True, blank=True, on_delete=models.PROTECT, related_name="issuer"
    )
    # "operator" or "reseller:<id>": one profile each, on every database (MariaDB has no
    # conditional unique constraint).
    key = models.CharField(max_length=30, unique=True, editable=False)
    legal_name = models.CharField(max_length=200)
    address = models.TextField(blank=True, help_text="As printed on invoices, one line per line.")
    tax_id = models.CharField(max_length=50, blank=True, verbose_name="tax ID")
    email = models.EmailField(blank=True, help_text="Sender and reply-to of invoice e-mails.")
    phone = models.CharField(max_length=50, blank=True)
    website = models.CharField(max_length=200, blank=True)
    bank_details = models.TextField(blank=True, help_text="How to pay, printed under the totals.")
    logo = models.FileField(upload_to="invoicing/logos/", blank=True, help_text="PNG, JPEG or SVG.")
    # The logo's bytes, in the database every node shares: a node that did not receive the
    # upload draws it all the same (the file above stays on the node that did).
    logo_data = models.BinaryField(null=True, blank=True, editable=False)
    logo_type = models.CharField(max_length=30, blank=True, editable=False)
    footer = models.TextField(blank=True)
    language = models.CharField(
        max_length=10, default="en", help_text="Of documents whose account names none."
    )
    invoice_prefix = models.CharField(max_length=20, default="INV-")
    credit_note_prefix = models.CharField(max_length=20, default="CN-")
    # The next sequence of each kind: taken under this row's lock by the transaction that
    # issues, so numbers have no gaps (a rolled-back issue takes nothing).
    next_invoice = models.PositiveIntegerField(default=1, editable=False)
    next_credit_note = models.PositiveIntegerField(default=1, editable=False)
    tax_rate = models.DecimalField(
        max_digits=RATE_DIGITS,
        decimal_places=RATE_PLACES,
        default=0,
        help_text="Percent, for accounts with none.",
    )
    tax_name = models.CharField(max_length=30, default="Tax", help_text="As printed: VAT, GST, Sales tax…")
    payment_terms_days = models.PositiveSmallIntegerField(
        default=14, help_text="Days from issue to due date."
    )

    objects = IssuerQuerySet.as_manager()

    class Meta:
        ordering = ["legal_name"]

    def __str__(self) -> str:
        return self.legal_name

    @staticmethod
    def key_for(reseller_id: int | None) -> str:
        return f"reseller:{reseller_id}" if reseller_id else "operator"

    def clean(self) -> None:
        if not 0 <= self.tax_rate < 1000:
            raise ValidationError({"tax_rate": "Between 0 and 999.9999 percent."})


class Invoice(models.Model):
    """An invoice or credit note of one account; its figures are the ledger's over its period."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", _("Invoice")
        CREDIT_NOTE = "credit", _("Credit note")

    class State(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ISSUED = "issued", _("Issued")
        SENT = "sent", _("Sent")
        PAID = "paid", _("Paid")

    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="invoices")
    account = models.ForeignKey("billing.Account", on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=7, choices=Kind.choices, default=Kind.INVOICE)
    state = models.CharField(max_length=6, choices=State.choices, default=State.DRAFT)
    sequence = models.PositiveIntegerField(null=True, blank=True, editable=False)
    number = models.CharField(max_length=40, blank=True, editable=False)
    # The period: days on the customer's clock (period_end inclusive), and the exact
    # instants [starts_at, ends_at) that the ledger is summed over.
    # "<account>:<starts_at>:<ends_at>" of an invoice, NULL for a credit note: one invoice per
    # account and period, however many nodes run the schedule, on every database.
    period_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    period_start = models.DateField()
    period_end = models.DateField()
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    time_zone = models.CharField(max_length=64)
    currency = CurrencyField()
    language = models.CharField(max_length=10, default="en")
    # Ledger sums over the period, signed as in the ledger (charges and fees negative).
    opening_balance = MoneyField(default=0)
    charges = MoneyField(default=0)
    fees = MoneyField(default=0)
    payments = MoneyField(default=0)
    refunds = MoneyField(default=0)
    adjustments = MoneyField(default=0)
    tax_posted = MoneyField(default=0, help_text="Tax entries of the period (this invoice's own included).")
    # What a peer that sends and receives earned terminating our calls (credited; netted).
    terminated = MoneyField(default=0, help_text="Calls it terminated for us, credited.")
    closing_balance = MoneyField(default=0)
    # What is invoiced: the period's calls and fees, their tax, and what is left to pay.
    tax_rate = models.DecimalField(max_digits=RATE_DIGITS, decimal_places=RATE_PLACES, default=0)
    tax_name = models.CharField(max_length=30, default="Tax")
    prices_include_tax = models.BooleanField(default=False)
    net = MoneyField(default=0)
    tax = MoneyField(default=0)
    total = MoneyField(default=0)
    amount_due = MoneyField(default=0)
    corrects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes"
    )
    reason = models.CharField(max_length=200, blank=True, help_text="Of a credit note.")
    issued_at = models.DateTimeField(null=True, blank=True)
    due_on = models.DateField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    sent_to = models.CharField(max_length=254, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    actor_label = models.CharField(max_length=100, default="system")

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "kind", "sequence"], name="invoice_unique_sequence"),
        ]
        indexes = [models.Index(fields=["account", "-period_start"], name="invoice_account_period_idx")]

    def __str__(self) -> str:
        return self.number or f"{self.get_kind_display()} (draft) {self.period_start}..{self.period_end}"

    def save(self, *args, **kwargs):
        # Issued documents are fixed: only their delivery and payment go on being recorded.
        if self.pk is not None and not self.is_draft and not kwargs.get("force_insert"):
            fields = set(kwargs.get("update_fields") or ())
            if not fields or not fields <= {"state", "sent_at", "sent_to", "paid_at"}:
                raise TypeError("An issued invoice cannot change; issue a credit note instead.")
        super().save(*args, **kwargs)

    @property
    def is_draft(self) -> bool:
        return self.state == self.State.DRAFT


class InvoiceLine(models.Model):
    """One line of an invoice: the calls to a destination, a fee, a payment, the tax…"""

    class Kind(models.TextChoices):
        CALLS = "calls", _("Calls")
        FEE = "fee", _("Fee")
        PAYMENT = "payment", _("Payment")
        REFUND = "refund", _("Refund")
        ADJUSTMENT = "adjustment", _("Adjustment")
        TAX = "tax", _("Tax")
        CREDIT = "credit", _("Credit")
        # What the account's bundles covered: the worth of the calls, for information; the
        # totals are the ledger's, on which covered calls cost nothing.
        BUNDLE = "bundle", _("Bundle")
        TERMINATED = "terminated", _("Calls terminated")

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.CharField(max_length=200)
    occurred_on = models.DateField(null=True, blank=True)
    calls = models.PositiveIntegerField(null=True, blank=True)
    seconds = models.PositiveBigIntegerField(null=True, blank=True)
    # Signed as in the ledger (a call charge negative, a payment positive).
    amount = MoneyField()

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_unique_position"),
        ]

    def __str__(self) -> str:
        return self.description

    @property
    def minutes(self) -> Decimal | None:
        return None if self.seconds is None else (Decimal(self.seconds) / 60).quantize(Decimal("0.01"))
