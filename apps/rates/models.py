"""Price lists ("billing packs") and their per-prefix price history."""

from django.core.exceptions import ValidationError
from django.db import models

from apps.core.models import CurrencyField, MoneyField, TimestampedModel, digits_validator, name_taken
from apps.rates.querysets import RateQuerySet, RateTableQuerySet


class RateTable(TimestampedModel):
    """A price list: what we charge a customer (sell) or what a supplier charges us (buy)."""

    class Purpose(models.TextChoices):
        SELL = "sell", "Sell (customers)"
        BUY = "buy", "Buy (suppliers)"

    name = models.CharField(max_length=100)
    reseller = models.ForeignKey(
        "tenancy.Reseller",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rate_tables",
        help_text="Owner; empty means the operator.",
    )
    purpose = models.CharField(max_length=4, choices=Purpose.choices)
    currency = CurrencyField()
    price_increase_notice_days = models.PositiveSmallIntegerField(
        default=7, help_text="Increases and closed codes taking effect sooner than this are flagged."
    )
    description = models.TextField(blank=True)
    # Readers see the rate rows of this version (see Rate.version_from). An import writes
    # the next version beside the live one, in chunks, then moves this number in one
    # single-row update: nobody ever reads a half-imported table.
    live_version = models.PositiveIntegerField(default=0, editable=False)

    objects = RateTableQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # NULL owners (the operator) do not collide in a unique index, so operator names
            # are kept unique by clean().
            models.UniqueConstraint(fields=["reseller", "name"], name="ratetable_unique_name_per_owner")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    def clean(self) -> None:
        if name_taken(self):
            raise ValidationError({"name": "This owner already has a rate table of that name."})
        if self.reseller_id and self.purpose == self.Purpose.BUY:
            raise ValidationError({"purpose": "Supplier (buy) price lists belong to the operator."})


class Rate(models.Model):
    """The price of one prefix in one table over one period of time."""

    table = models.ForeignKey(RateTable, on_delete=models.CASCADE, related_name="rates")
    prefix = models.CharField(max_length=32, validators=[digits_validator])
    destination = models.CharField(max_length=100, blank=True)
    price = MoneyField(help_text="Price per minute in the table's currency.")
    connection_fee = MoneyField(default=0)
    min_seconds = models.PositiveIntegerField(default=1)
    increment_seconds = models.PositiveIntegerField(default=1)
    free_seconds = models.PositiveIntegerField(default=0)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    # The row belongs to table versions [version_from, version_to): a row replaced by an
    # import keeps its place in history for the versions before, and a staged row is
    # invisible until its table's live_version reaches version_from.
    version_from = models.PositiveIntegerField(default=0, editable=False)
    version_to = models.PositiveIntegerField(null=True, blank=True, editable=False)

    objects = RateQuerySet.as_manager()

    class Meta:
        ordering = ["table", "prefix", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["table", "prefix", "effective_from", "version_from"],
                name="rate_unique_start_per_prefix",
            ),
            models.CheckConstraint(condition=models.Q(price__gte=0), name="rate_price_not_negative"),
            models.CheckConstraint(
                condition=models.Q(increment_seconds__gte=1), name="rate_increment_positive"
            ),
        ]
        indexes = [
            # Longest-prefix lookups at a moment: table + prefix, newest period first.
            models.Index(fields=["table", "prefix", "-effective_from"], name="rate_lookup_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix} {self.destination} {self.price}/min"

    @property
    def billing_notation(self) -> str:
        """Minimum/increment/free seconds as operators write them, e.g. 30/6/0."""
        return f"{self.min_seconds}/{self.increment_seconds}/{self.free_seconds}"

    def clean(self) -> None:
        errors = {}
        if self.price is not None and self.price < 0:
            errors["price"] = "A price cannot be negative."
        if self.connection_fee is not None and self.connection_fee < 0:
            errors["connection_fee"] = "A connection fee cannot be negative."
        if self.increment_seconds == 0:
            errors["increment_seconds"] = "The increment is at least one second."
        if self.effective_to and self.effective_from and self.effective_to <= self.effective_from:
            errors["effective_to"] = "The end must come after the start."
        if errors:
            raise ValidationError(errors)
