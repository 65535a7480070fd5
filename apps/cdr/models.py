"""Call detail records: one row per call attempt, with both sides' prices."""

from django.core.exceptions import ValidationError
from django.db import models

from apps.cdr.querysets import CdrQuerySet
from apps.core.models import MoneyField


class Cdr(models.Model):
    """One call attempt through the switch, as OpenSIPS accounted it, with its rating."""

    class RatingState(models.TextChoices):
        UNRATED = "unrated", "Not rated yet"
        RATED = "rated", "Rated"
        ERROR = "error", "Cannot be rated"

    call_id = models.CharField(max_length=255)
    from_tag = models.CharField(max_length=128, blank=True)
    to_tag = models.CharField(max_length=128, blank=True)
    node = models.ForeignKey("nodes.Node", null=True, on_delete=models.PROTECT, related_name="cdrs")
    customer = models.ForeignKey(
        "peers.Peer", null=True, on_delete=models.PROTECT, related_name="cdrs_as_customer"
    )
    supplier = models.ForeignKey(
        "peers.Peer", null=True, blank=True, on_delete=models.PROTECT, related_name="cdrs_as_supplier"
    )
    gateway = models.ForeignKey(
        "peers.Gateway", null=True, blank=True, on_delete=models.SET_NULL, related_name="cdrs"
    )
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    caller = models.CharField(max_length=64, blank=True)
    callee = models.CharField(max_length=64, blank=True)
    # The number as the supplier received it, after egress rewriting.
    callee_out = models.CharField(max_length=64, blank=True)
    destination = models.CharField(
        max_length=100, blank=True, help_text="Destination of the customer's rate (quality statistics)."
    )
    created_at = models.DateTimeField(help_text="When the INVITE arrived.")
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(default=0, help_text="Answered time, exact.")
    # Post-dial delay: from the INVITE to the first ringing (180/183) or the answer; empty
    # when the call got neither, or OpenSIPS did not report it.
    pdd_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Post-dial delay.")
    billable_seconds = models.PositiveIntegerField(default=0, help_text="Customer side.")
    supplier_billable_seconds = models.PositiveIntegerField(default=0)
    sip_code = models.PositiveSmallIntegerField()
    sip_reason = models.CharField(max_length=128, blank=True)
    sell_cost = MoneyField(null=True, blank=True)
    buy_cost = MoneyField(null=True, blank=True)
    # What the customer's reseller pays the operator for the call (its account, at the
    # operator's prices for it); empty for the operator's own customers.
    reseller_cost = MoneyField(null=True, blank=True)
    # What a bundle of the customer's covered (apps.bundles): sell_cost is what is left to
    # pay. Seconds of a minutes bundle (with their worth in bundle_money), or money of a
    # money bundle. Database defaults: CDRs are written by raw inserts too (apps.cdr.ingest).
    bundle_usage = models.ForeignKey(
        "bundles.Usage", null=True, blank=True, on_delete=models.PROTECT, related_name="cdrs"
    )
    bundle_seconds = models.PositiveIntegerField(default=0, db_default=0)
    bundle_money = MoneyField(default=0, db_default=0)
    rating_state = models.CharField(max_length=7, choices=RatingState.choices, default=RatingState.UNRATED)
    rating_error = models.CharField(max_length=200, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    # No OpenSIPS wrote this CDR: its call's dialog was lost (apps.cdr.lost), and its times
    # are estimated from what its node had recorded of it.
    estimated = models.BooleanField(
        default=False, help_text="Made from a lost call's last record, its end estimated."
    )
    # The OpenSIPS accounting row this CDR was made from ("acc:<id>:<time>" or
    # "missed:<id>:<time>"; "lost:<reservation id>" for an estimated one), unique so that
    # importing a row twice cannot make two CDRs.
    source_ref = models.CharField(max_length=48, null=True, blank=True, unique=True, editable=False)

    objects = CdrQuerySet.as_manager()

    class Meta:
        verbose_name = "CDR"
        ordering = ["-created_at", "-id"]
        indexes = [
            # "This customer's calls in a date range" (portal, API, reseller reports).
            models.Index(fields=["customer", "created_at"], name="cdr_customer_time_idx"),
            # Fraud control's "a destination the customer never called" (apps.fraud.controllers).
            models.Index(fields=["customer", "destination", "created_at"], name="cdr_customer_dest_idx"),
            models.Index(fields=["supplier", "created_at"], name="cdr_supplier_time_idx"),
            models.Index(fields=["created_at"], name="cdr_time_idx"),
            # The rater's batches: oldest unrated first.
            models.Index(fields=["rating_state", "id"], name="cdr_rating_queue_idx"),
            models.Index(fields=["call_id"], name="cdr_call_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.caller} → {self.callee} ({self.sip_code})"

    @property
    def margin(self):
        if self.sell_cost is None or self.buy_cost is None:
            return None
        return self.sell_cost - self.buy_cost

    def clean(self) -> None:
        errors = {}
        if self.answered_at and self.answered_at < self.created_at:
            errors["answered_at"] = "A call is answered after it is set up."
        if self.ended_at and self.ended_at < (self.answered_at or self.created_at):
            errors["ended_at"] = "A call ends after it starts."
        if self.answered_at is None and self.duration_ms:
            errors["duration_ms"] = "An unanswered call has no duration."
        if not 100 <= (self.sip_code or 0) <= 699:
            errors["sip_code"] = "A SIP final code is between 100 and 699."
        if errors:
            raise ValidationError(errors)


class RatingErrorManager(models.Manager.from_queryset(CdrQuerySet)):
    def get_queryset(self):
        return super().get_queryset().filter(rating_state=Cdr.RatingState.ERROR)


class RatingError(Cdr):
    """A call that could not be rated, listed until a corrected price list lets it be rated again."""

    objects = RatingErrorManager()

    class Meta:
        proxy = True
        verbose_name = "rating error"
