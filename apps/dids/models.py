"""DIDs: numbers of ours that suppliers deliver calls to, and where each call goes then."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

from apps.core.models import MoneyField, TimestampedModel, digits_validator
from apps.dids.querysets import DidQuerySet, DidTargetQuerySet
from apps.rates.tariffs import Tariff

# One range may not hold more numbers than this: a typo in its last number ("4420794600009"
# for "442079460009") would otherwise claim a million numbers of somebody else's.
MAX_RANGE = 100_000


class Hunting(models.TextChoices):
    SEQUENCE = "sequence", "In turn (failover)"
    ALL = "all", "All at once (ring group)"


class Did(TimestampedModel):
    """A number (or a block of consecutive numbers) we receive calls for.

    The supplier delivers the calls and charges us (`buy_*`); the customer owns the number
    and pays for it (`sell_*`): monthly fees through recurring fees, per-minute prices
    through the rater, from the tariffs call control puts on the call's reservation. A DID
    without a customer is in stock: its calls are refused with 404.
    """

    Hunting = Hunting

    number = models.CharField(
        max_length=32,
        validators=[digits_validator],
        help_text="The number as the supplier sends it, E.164 digits.",
    )
    last_number = models.CharField(
        max_length=32,
        blank=True,
        validators=[digits_validator],
        help_text="For a block of numbers: its last number, as long as the first. Empty for one number.",
    )
    # len(number), kept for the range lookup (number and last_number compare as text).
    number_length = models.PositiveSmallIntegerField(editable=False, default=0)
    supplier = models.ForeignKey(
        "peers.Peer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dids_supplied",
        help_text="Who delivers its calls (a supplier or user peer). Empty: our own number, "
        "reached only by calls from our customers.",
    )
    customer = models.ForeignKey(
        "peers.Peer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dids",
        help_text="Who owns it and pays for it. Empty: in stock, its calls are refused.",
    )
    buy_monthly = MoneyField(default=0, help_text="What the supplier charges us per month.")
    sell_monthly = MoneyField(default=0, help_text="What the customer pays per month.")
    buy_per_minute = MoneyField(default=0, help_text="What the supplier charges us per minute of a call.")
    sell_per_minute = MoneyField(default=0, help_text="What the customer pays per minute of a call.")
    min_seconds = models.PositiveIntegerField(default=1)
    increment_seconds = models.PositiveIntegerField(default=1)
    buy_fee = models.OneToOneField(
        "billing.RecurringFee",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    sell_fee = models.OneToOneField(
        "billing.RecurringFee",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    hunting = models.CharField(
        max_length=8,
        choices=Hunting.choices,
        default=Hunting.SEQUENCE,
        help_text="How its SIP account targets ring: in turn, or all at once (a ring group; "
        "its gateways are tried after it, in turn).",
    )
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)

    objects = DidQuerySet.as_manager()

    class Meta:
        verbose_name = "DID"
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["number"], name="did_unique_number")]
        indexes = [models.Index(fields=["number_length", "number", "last_number"], name="did_range_idx")]

    def __str__(self) -> str:
        return f"{self.number}-{self.last_number}" if self.last_number else self.number

    def save(self, *args, **kwargs):
        self.number_length = len(self.number or "")
        super().save(*args, **kwargs)

    @property
    def size(self) -> int:
        return int(self.last_number) - int(self.number) + 1 if self.last_number else 1

    def sell_tariff(self) -> Tariff:
        return Tariff(self.sell_per_minute, Decimal(0), self.min_seconds, self.increment_seconds)

    def buy_tariff(self) -> Tariff:
        return Tariff(self.buy_per_minute, Decimal(0), self.min_seconds, self.increment_seconds)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        digits = (self.number or "").isdigit() and (self.last_number or "0").isdigit()
        if not digits:
            errors["number"] = "Digits only."
        elif self.last_number:
            if len(self.last_number) != len(self.number):
                errors["last_number"] = "The last number of a block is as long as its first."
            elif self.last_number < self.number:
                errors["last_number"] = "The last number of a block comes after its first."
            elif self.size > MAX_RANGE:
                errors["last_number"] = f"A block holds at most {MAX_RANGE:,} numbers."
        if self.supplier_id and not self.supplier.is_supplier:
            errors["supplier"] = "DIDs are delivered by a supplier or user peer."
        if self.customer_id and not self.customer.is_customer:
            errors["customer"] = "DIDs belong to a customer or user peer."
        if self.min_seconds is not None and self.min_seconds < 1:
            errors["min_seconds"] = "At least one second."
        if self.increment_seconds is not None and self.increment_seconds < 1:
            errors["increment_seconds"] = "At least one second."
        if not errors and self.number and self.overlapping().exists():
            errors["number"] = f"Another DID already holds a number of {self}."
        if errors:
            raise ValidationError(errors)

    def overlapping(self):
        """Other DIDs holding one of this one's numbers."""
        last = self.last_number or self.number
        single = models.Q(last_number="", number__gte=self.number, number__lte=last)
        block = models.Q(number__lte=last, last_number__gte=self.number) & ~models.Q(last_number="")
        return Did.objects.filter(number_length=len(self.number)).filter(single | block).exclude(pk=self.pk)


class DidTarget(models.Model):
    """Where a DID's calls go, tried in `position` order (a failover list).

    A SIP account is reached wherever it is registered, on any node; a gateway is one of
    the owner's own (a user peer's PBX or SBC).
    """

    did = models.ForeignKey(Did, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveSmallIntegerField(default=0)
    sip_account = models.ForeignKey(
        "peers.SipAccount", null=True, blank=True, on_delete=models.CASCADE, related_name="did_targets"
    )
    gateway = models.ForeignKey(
        "peers.Gateway", null=True, blank=True, on_delete=models.CASCADE, related_name="did_targets"
    )
    setup_timeout = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Seconds without a reply before the next target is tried."
    )

    objects = DidTargetQuerySet.as_manager()

    class Meta:
        ordering = ["did", "position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(sip_account__isnull=True, gateway__isnull=False)
                | models.Q(sip_account__isnull=False, gateway__isnull=True),
                name="didtarget_one_target",
            )
        ]

    def __str__(self) -> str:
        return str(self.sip_account or self.gateway)

    def clean(self) -> None:
        if (self.sip_account_id is None) == (self.gateway_id is None):
            raise ValidationError("Choose a SIP account or a gateway.")
        owner = self.did.customer_id if self.did_id else None
        target = self.sip_account or self.gateway
        if owner is not None and target.peer_id != owner:
            field = "sip_account" if self.sip_account_id else "gateway"
            raise ValidationError({field: "A DID's calls go to its own customer's accounts and gateways."})
