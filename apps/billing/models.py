"""Accounts and their ledger: the ledger is the truth, the balance its cached sum."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps.billing.querysets import AccountQuerySet, LedgerQuerySet, ReservationQuerySet
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
    # A cache of the money held by the account's live calls: sum(reservations.amount) of the
    # active ones, changed only in the transaction that opens or releases a reservation.
    # Every reservation writes this row, which is also what makes Galera serialise two
    # nodes reserving on one account (the second commit fails certification and retries).
    reserved = MoneyField(default=0, editable=False)

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

    @property
    def available(self):
        """Money a new call may reserve: spendable minus what live calls hold."""
        return self.spendable - self.reserved


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


class Reservation(models.Model):
    """Money held for one authorized call until its CDR is rated, it fails, or it expires."""

    class Outcome(models.TextChoices):
        RATED = "rated", "Call rated"
        FAILED = "failed", "Call failed before answer"
        EXPIRED = "expired", "Expired (no CDR in time)"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="reservations")
    customer = models.ForeignKey("peers.Peer", on_delete=models.PROTECT, related_name="reservations")
    node = models.ForeignKey("nodes.Node", null=True, on_delete=models.SET_NULL, related_name="reservations")
    call_id = models.CharField(max_length=255)
    amount = MoneyField()
    max_duration = models.PositiveIntegerField(help_text="Seconds granted.")
    prefix = models.CharField(max_length=32, blank=True, help_text="Sell rate prefix matched.")
    destination = models.CharField(max_length=100, blank=True)
    route = models.ForeignKey(
        "routing.Route", null=True, blank=True, on_delete=models.SET_NULL, related_name="reservations"
    )
    supplier = models.ForeignKey(
        "peers.Peer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=7, choices=Outcome.choices, blank=True)

    objects = ReservationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The live calls of an account (count, and the same Call-ID asked twice).
            models.Index(fields=["account", "released_at", "call_id"], name="reservation_live_idx"),
            models.Index(fields=["released_at", "expires_at"], name="reservation_expiry_idx"),
            models.Index(fields=["call_id"], name="reservation_call_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} for {self.call_id}"

    @property
    def is_active(self) -> bool:
        return self.released_at is None
