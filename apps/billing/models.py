"""Accounts and their ledger: the ledger is the truth, the balance its cached sum."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps.billing.querysets import AccountQuerySet, LedgerQuerySet
from apps.core.models import CurrencyField, MoneyField, TimestampedModel


class Account(TimestampedModel):
    """The money of one peer: what a customer has with us, or we with a supplier."""

    class Mode(models.TextChoices):
        PREPAID = "prepaid", "Prepaid"
        POSTPAID = "postpaid", "Postpaid"

    peer = models.OneToOneField("peers.Peer", on_delete=models.PROTECT, related_name="account")
    currency = CurrencyField()
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PREPAID)
    credit_limit = MoneyField(default=0, help_text="Postpaid: how far below zero the balance may go.")
    low_balance_threshold = MoneyField(
        null=True, blank=True, help_text="Warn the customer when the balance falls below this."
    )
    # A cache of sum(ledger.amount), changed only in the transaction that adds ledger rows.
    balance = MoneyField(default=0, editable=False)

    objects = AccountQuerySet.as_manager()

    class Meta:
        ordering = ["peer__name"]

    def __str__(self) -> str:
        return f"{self.peer} ({self.currency})"

    def clean(self) -> None:
        if self.credit_limit is not None and self.credit_limit < 0:
            raise ValidationError({"credit_limit": "A credit limit is zero or more."})
        if self.mode == self.Mode.PREPAID and self.credit_limit:
            raise ValidationError({"credit_limit": "A prepaid account has no credit limit."})

    @property
    def spendable(self):
        """Money calls may use before reservations: balance, plus credit when postpaid."""
        return self.balance + (self.credit_limit if self.mode == self.Mode.POSTPAID else 0)


class LedgerEntry(models.Model):
    """One immutable movement of money on an account; positive credits, negative debits."""

    class Kind(models.TextChoices):
        CHARGE = "charge", "Call charge"
        PAYMENT = "payment", "Payment"
        REFUND = "refund", "Refund"
        FEE = "fee", "Periodic fee"
        ADJUSTMENT = "adjustment", "Adjustment"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount = MoneyField()
    # Unique per account and kind: a payment's transaction id, "cdr:<id>" for a call charge,
    # "fee:<id>:<period>" for a fee. Retrying a posting with the same reference is a no-op.
    # NULL (no reference) never collides, on every database we support.
    reference = models.CharField(max_length=100, null=True, blank=True)
    cdr = models.ForeignKey(
        "cdr.Cdr", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    description = models.CharField(max_length=200, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=100, default="system")
    # When the movement happened (a call's end, a payment's date), which statements and
    # invoices group by; created_at is when it was written.
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "reference"], name="ledger_unique_reference_per_kind"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="ledger_account_time_idx"),
            models.Index(fields=["account", "occurred_at"], name="ledger_account_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} on {self.account_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise TypeError("Ledger entries are immutable; post a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Ledger entries are immutable; post a correcting entry instead.")
