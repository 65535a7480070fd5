"""Accounts and their ledger: the ledger is the truth, the balance its cached sum."""

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.billing.querysets import (
    AccountQuerySet,
    FeeQuerySet,
    LedgerQuerySet,
    RerateRunQuerySet,
    ReservationQuerySet,
)
from apps.core.models import CurrencyField, MoneyField, TimestampedModel


class Account(TimestampedModel):
    """The money of one peer (what a customer has with us, or we with a supplier), or of a
    reseller with the operator: what its customers' traffic costs it at the operator's
    prices, and the credit that bounds what they may spend together."""

    class Mode(models.TextChoices):
        PREPAID = "prepaid", _("Prepaid")
        POSTPAID = "postpaid", _("Postpaid")

    class InvoicePeriod(models.TextChoices):
        MONTHLY = "monthly", _("Monthly")
        WEEKLY = "weekly", _("Weekly (Monday to Sunday)")
        NONE = "none", _("Only on demand")

    peer = models.OneToOneField(
        "peers.Peer", null=True, blank=True, on_delete=models.PROTECT, related_name="account"
    )
    reseller = models.OneToOneField(
        "tenancy.Reseller", null=True, blank=True, on_delete=models.PROTECT, related_name="account"
    )
    currency = CurrencyField()
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PREPAID)
    credit_limit = MoneyField(default=0, help_text="Postpaid: how far below zero the balance may go.")
    low_balance_threshold = MoneyField(
        null=True, blank=True, help_text="Warn the customer when the balance falls below this."
    )
    notification_email = models.EmailField(
        blank=True, help_text="Where low-balance warnings go; the reseller's address when blank."
    )
    # Set when the balance fell below the threshold and the warning was sent; cleared when
    # the balance is back at or above it, so that each crossing warns once.
    low_balance_warned = models.BooleanField(default=False, editable=False)
    invoice_period = models.CharField(
        max_length=7,
        choices=InvoicePeriod.choices,
        default=InvoicePeriod.MONTHLY,
        help_text="Invoices are issued after each period, on the customer's clock; any period on demand.",
    )
    tax_rate = models.DecimalField(
        max_digits=7, decimal_places=4, null=True, blank=True, help_text="Percent; empty: the issuer's rate."
    )
    invoice_language = models.CharField(
        max_length=10, blank=True, help_text="Of invoices and their e-mails; empty: the issuer's language."
    )
    daily_spend_limit = MoneyField(
        null=True, blank=True, help_text="Most the customer may spend on calls in a day (its own time zone)."
    )
    monthly_spend_limit = MoneyField(
        null=True, blank=True, help_text="Most the customer may spend on calls in a calendar month."
    )
    # What calls cost this day and month on the customer's clock (docs/FRAUD.md, spend
    # limits), changed only in the transaction that posts the charge; `spent_day_of` and
    # `spent_month_of` name the day and month (its first day) the sums are of.
    spent_day = MoneyField(default=0, editable=False)
    spent_day_of = models.DateField(null=True, blank=True, editable=False)
    spent_month = MoneyField(default=0, editable=False)
    spent_month_of = models.DateField(null=True, blank=True, editable=False)
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
        constraints = [
            models.CheckConstraint(
                condition=models.Q(peer__isnull=False, reseller__isnull=True)
                | models.Q(peer__isnull=True, reseller__isnull=False),
                name="account_of_a_peer_or_a_reseller",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.peer or self.reseller} ({self.currency})"

    @property
    def holder(self):
        """Whose money this is: the peer, or the reseller (its account with the operator)."""
        return self.peer if self.peer_id else self.reseller

    @property
    def time_zone(self) -> str:
        """The clock its days and months are counted on: the peer's, else the installation's."""
        return self.peer.time_zone if self.peer_id else settings.TIME_ZONE

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self.peer.zone if self.peer_id else zoneinfo.ZoneInfo(settings.TIME_ZONE)

    @property
    def owner_reseller_id(self) -> int | None:
        """The reseller that manages this account: a peer's owner; none for a reseller's own
        account, which only the operator manages."""
        return self.peer.reseller_id if self.peer_id else None

    def clean(self) -> None:
        if self.credit_limit is not None and self.credit_limit < 0:
            raise ValidationError({"credit_limit": "A credit limit is zero or more."})
        if self.mode == self.Mode.PREPAID and self.credit_limit:
            raise ValidationError({"credit_limit": "A prepaid account has no credit limit."})
        for name in ("daily_spend_limit", "monthly_spend_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValidationError({name: "A spend limit is zero or more."})
        if self.tax_rate is not None and not 0 <= self.tax_rate < 1000:
            raise ValidationError({"tax_rate": "Between 0 and 999.9999 percent."})

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
        CHARGE = "charge", _("Call charge")
        PAYMENT = "payment", _("Payment")
        REFUND = "refund", _("Refund")
        FEE = "fee", _("Periodic fee")
        ADJUSTMENT = "adjustment", _("Adjustment")
        TAX = "tax", _("Tax")
        # What a peer that both sends and receives (role "user") earned terminating our
        # calls: credited to its account, so its traffic both ways nets on one balance.
        TERMINATED = "terminated", _("Calls terminated")

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

    # No foreign key in the database for the account and the node (Django still protects
    # and nulls): InnoDB checks a foreign key of an inserted row by share-locking the parent
    # row, and every call of an account reserves while another holds that account's row
    # for its update, so each insert would queue behind it (issue 13); a node's row is
    # written by its heartbeat.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="reservations", db_constraint=False
    )
    customer = models.ForeignKey("peers.Peer", on_delete=models.PROTECT, related_name="reservations")
    node = models.ForeignKey(
        "nodes.Node", null=True, on_delete=models.SET_NULL, related_name="reservations", db_constraint=False
    )
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
    # What call control decided, which the rater charges (docs/BILLING.md): the number it
    # priced (tech prefix removed, ingress rewrites applied; the CDR keeps the number as
    # received), the sell tariff in force and the buy tariff of every supplier it offered,
    # {"<supplier id>": tariff}, each tariff {"prefix", "price", "fee", "min", "inc",
    # "free"} with amounts as strings. Prices rather than rate ids: the price index holds
    # no row ids, and a carried price outlives any later import or edit of the list.
    # NULL on reservations made before these columns: the rater then looks prices up.
    callee = models.CharField(max_length=64, null=True, blank=True, help_text="The number priced.")
    # The caller as call control settled it: the repeated-number controller counts calls
    # from one caller (docs/FRAUD.md). NULL on reservations made before the column.
    caller = models.CharField(max_length=64, null=True, blank=True)
    sell_tariff = models.JSONField(null=True, blank=True)
    buy_tariffs = models.JSONField(null=True, blank=True)
    # What the call counts on of a bundle's period (apps.bundles): seconds of a minutes
    # bundle, or money of a money bundle, held while the call is live. Defaults in the
    # database: the short way's insert (billing 0014's procedure) names none of them.
    bundle_usage = models.ForeignKey(
        "bundles.Usage", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    bundle_seconds = models.PositiveIntegerField(default=0, db_default=0)
    bundle_money = MoneyField(default=0, db_default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # Until the call is answered, an answer deadline when call control set one (its setup
    # time plus a margin); from the answer, its maximum duration plus the grace.
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=7, choices=Outcome.choices, blank=True)
    # Online billing: when the engine was asked to end this call because the account could
    # no longer pay for it (a payment reversed, an adjustment), and what the engine said.
    cut_at = models.DateTimeField(null=True, blank=True)
    cut_result = models.CharField(max_length=200, blank=True)

    objects = ReservationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The live calls of an account (count, and the same Call-ID asked twice).
            models.Index(fields=["account", "released_at", "call_id"], name="reservation_live_idx"),
            models.Index(fields=["released_at", "expires_at"], name="reservation_expiry_idx"),
            # What a bundle period's live calls hold (reservations._bundle_left): the open
            # ones only, however many calls the period has had.
            models.Index(fields=["bundle_usage", "released_at"], name="reservation_bundle_live_idx"),
            models.Index(fields=["call_id"], name="reservation_call_idx"),
            # Repeated numbers: the recent calls to one callee, or from one caller.
            models.Index(fields=["callee", "created_at"], name="reservation_callee_idx"),
            models.Index(fields=["caller", "created_at"], name="reservation_caller_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} for {self.call_id}"

    @property
    def is_active(self) -> bool:
        return self.released_at is None


class ReleaseMarker(models.Model):
    """Remember a release that found no reservation, so that the late reservation is refused.

    OpenSIPS releases by Call-ID when call control's answer did not come in time; the
    reservation may commit after that release. A row, not process memory, so that every
    web process of the node sees it; swept after `MARKER_LIFE` (services/reservations.py).
    """

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="+")
    call_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["call_id", "node"], name="release_marker_call_idx"),
            models.Index(fields=["created_at"], name="release_marker_age_idx"),
        ]

    def __str__(self) -> str:
        return f"released {self.call_id}"


class RecurringFee(TimestampedModel):
    """A charge posted every period (a DID's monthly rent, a daily service fee), in advance.

    The fee for a period is posted on its first day with the reference
    "fee:<id>:<first day>", so a period is charged once however often the task runs. A
    period cut by `starts_on` or `ends_on` is charged for its days only when `prorate`.
    """

    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        MONTHLY = "monthly", "Monthly"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="fees")
    name = models.CharField(max_length=100, help_text="Shown on the ledger, e.g. “DID +44 20 7946 0000”.")
    amount = MoneyField(help_text="Per full period, in the account's currency.")
    period = models.CharField(max_length=7, choices=Period.choices, default=Period.MONTHLY)
    starts_on = models.DateField(help_text="First day charged.")
    ends_on = models.DateField(null=True, blank=True, help_text="Last day charged; empty: until removed.")
    prorate = models.BooleanField(
        default=True, help_text="Charge a partial first or last period by its days."
    )
    enabled = models.BooleanField(default=True)

    objects = FeeQuerySet.as_manager()

    class Meta:
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.amount} {self.get_period_display().lower()})"

    def clean(self) -> None:
        if self.amount is not None and self.amount <= 0:
            raise ValidationError({"amount": "A fee is a positive amount."})
        if self.ends_on and self.starts_on and self.ends_on < self.starts_on:
            raise ValidationError({"ends_on": "A fee ends on or after the day it starts."})


class RerateRun(models.Model):
    """One re-pricing of a period's rated calls after a price list was corrected.

    The calls take their new prices; the money moves by adjustment entries on the ledger
    (one per account and batch, referenced "rerate:<run>:<batch>"), never by rewriting the
    charges already posted. Lines keep, per account, how many calls changed and by how much.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    peer = models.ForeignKey(
        "peers.Peer", null=True, blank=True, on_delete=models.PROTECT, related_name="rerate_runs"
    )
    table = models.ForeignKey(
        "rates.RateTable", null=True, blank=True, on_delete=models.PROTECT, related_name="rerate_runs"
    )
    # Whose run it is: the reseller of the peer or table, None for the operator's own.
    reseller = models.ForeignKey(
        "tenancy.Reseller", null=True, blank=True, on_delete=models.PROTECT, related_name="rerate_runs"
    )
    state = models.CharField(max_length=7, choices=State.choices, default=State.PENDING)
    examined = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    # The run goes through the calls in id order; a resumed run starts after this one.
    last_cdr_id = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=100, default="system")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RerateRunQuerySet.as_manager()

    class Meta:
        verbose_name = "re-rating run"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Re-rating {self.pk} ({self.period_start:%Y-%m-%d} to {self.period_end:%Y-%m-%d})"


class RerateLine(models.Model):
    """What one re-rating run changed on one account: calls and money, before and after."""

    run = models.ForeignKey(RerateRun, on_delete=models.CASCADE, related_name="lines")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="rerate_lines")
    calls = models.PositiveIntegerField(default=0)
    before = MoneyField(default=0, help_text="What the changed calls cost as first rated.")
    after = MoneyField(default=0, help_text="What they cost now.")

    class Meta:
        ordering = ["run", "account"]
        constraints = [models.UniqueConstraint(fields=["run", "account"], name="rerate_line_per_account")]

    def __str__(self) -> str:
        return f"{self.account}: {self.calls} calls, {self.before} → {self.after}"

    @property
    def difference(self):
        return self.after - self.before
