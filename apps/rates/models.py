"""Price lists ("billing packs") and their per-prefix price history."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from apps.core.errors import OutOfRange
from apps.core.models import CurrencyField, MoneyField, TimestampedModel, digits_validator, name_taken
from apps.core.money import check_price
from apps.core.querysets import ScopedQuerySet
from apps.rates.querysets import RateQuerySet, RateTableQuerySet, TimeProfileQuerySet
from apps.rates.time_windows import WindowError, Windows

period_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,19}$", "Lower-case letters, digits, - and _ (at most 20), e.g. offpeak."
)


class TimeProfile(TimestampedModel):
    """Named hours of the week (weekend, offpeak, night) that prices and routing rules apply in."""

    name = models.CharField(
        max_length=20,
        unique=True,
        validators=[period_name_validator],
        help_text="The name price lists use in their period column, e.g. weekend; fixed once created.",
    )
    windows = models.CharField(
        max_length=200,
        help_text="Days and hours, separated by semicolons: 'Sat-Sun', 'Mon-Fri 19:00-08:00; Sat-Sun', "
        "'daily 22:00-06:00'. An end at or before the start runs past midnight and belongs to the "
        "day it starts. Read on each customer's clock (its time zone).",
    )
    description = models.CharField(max_length=200, blank=True)

    objects = TimeProfileQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.windows})"

    def clean(self) -> None:
        try:
            Windows.parse(self.windows or "")
        except WindowError as exc:
            raise ValidationError({"windows": str(exc)}) from None


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
    on_net_price = MoneyField(
        default=0,
        help_text="Sell lists: the price per minute of a call to a SIP account or DID of ours "
        "(an on-net call), charged by the second.",
    )
    description = models.TextField(blank=True)
    prices_include_tax = models.BooleanField(
        default=False,
        help_text="Sell prices with tax in them: invoices take the tax out of the charges "
        "instead of adding it.",
    )
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
        if self.on_net_price is not None and self.on_net_price < 0:
            raise ValidationError({"on_net_price": "A price cannot be negative."})


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
    period = models.CharField(
        max_length=20,
        blank=True,
        default="",
        db_default="",
        validators=[period_name_validator],
        help_text="A time profile's name (weekend, offpeak): the price applies in its hours only, "
        "and there before the price without a period. Empty: any time.",
    )
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
                fields=["table", "prefix", "period", "effective_from", "version_from"],
                name="rate_unique_start_per_prefix_period",
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
        period = f" ({self.period})" if self.period else ""
        return f"{self.prefix}{period} {self.destination} {self.price}/min"

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
        for name in ("price", "connection_fee"):
            value = getattr(self, name)
            if name not in errors and value is not None:
                try:
                    check_price(value, field=name)
                except OutOfRange as refused:
                    errors[name] = refused.message
        if self.increment_seconds == 0:
            errors["increment_seconds"] = "The increment is at least one second."
        if self.effective_to and self.effective_from and self.effective_to <= self.effective_from:
            errors["effective_to"] = "The end must come after the start."
        if errors:
            raise ValidationError(errors)


class ImportQuerySet(ScopedQuerySet):
    reseller_lookup = "table__reseller"


class ImportTemplate(TimestampedModel):
    """How one supplier writes its price lists: header names, number and date formats."""

    name = models.CharField(max_length=100, unique=True)
    table = models.ForeignKey(
        RateTable,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="import_templates",
        help_text="The price list this template is for; empty: usable for any operator list.",
    )
    columns = models.JSONField(
        default=dict,
        blank=True,
        help_text='Header in the file -> our column, e.g. {"Code": "prefix", "Price": "rate"}; '
        'map a header to "" to ignore that column.',
    )
    decimal_comma = models.BooleanField(default=False, help_text="Numbers are written 0,0125.")
    date_format = models.CharField(
        max_length=40, blank=True, help_text="strftime format such as %d/%m/%Y; empty means ISO 8601."
    )
    increment_column = models.CharField(
        max_length=60, blank=True, help_text='A header whose cells read "30/6" or "30/6/0".'
    )
    clean_prefix = models.BooleanField(
        default=True, help_text="Drop a leading + or 00 and spaces, dots and dashes from prefixes."
    )
    skip_lines = models.PositiveSmallIntegerField(default=0, help_text="Lines before the header row.")
    delimiter = models.CharField(max_length=1, default=",")

    objects = ImportQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from apps.rates.importing.parsing import CANONICAL, INCREMENT

        errors = {}
        if not isinstance(self.columns, dict):
            errors["columns"] = 'Map headers to columns as {"Header": "column"}.'
        else:
            allowed = {*CANONICAL, INCREMENT, ""}
            wrong = sorted(str(target) for target in self.columns.values() if target not in allowed)
            if wrong:
                errors["columns"] = (
                    f"Unknown column(s) {', '.join(wrong)}; use {', '.join(CANONICAL)}, "
                    f"{INCREMENT} or an empty string."
                )
        if self.date_format:
            try:
                sample = datetime(2026, 12, 31, 23, 59, 58)
                if (
                    datetime.strptime(sample.strftime(self.date_format), self.date_format).date()
                    != sample.date()
                ):
                    raise ValueError
            except ValueError:
                errors["date_format"] = "This format does not write and read back a date (e.g. %d/%m/%Y)."
        if self.delimiter in ("", "\n", "\r", '"') or self.delimiter.isalnum() or self.delimiter == ".":
            errors["delimiter"] = "Use a separator such as , ; | or a tab."
        if errors:
            raise ValidationError(errors)


class PriceImport(TimestampedModel):
    """One upload of a price list into a table: its staged rows, preview, activation and report."""

    class Mode(models.TextChoices):
        FULL = "full", "Full price list (absent codes close)"
        CHANGES = "changes", "Changes only"

    class State(models.TextChoices):
        RECEIVED = "received", "Uploaded, waiting for a worker"
        READING = "reading", "Reading and checking the file"
        INVALID = "invalid", "Rejected (errors)"
        STAGED = "staged", "Previewed, waiting for confirmation"
        QUEUED = "queued", "Confirmed, waiting for a worker"
        ACTIVATING = "activating", "Activating"
        DONE = "done", "Live"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    table = models.ForeignKey(RateTable, on_delete=models.PROTECT, related_name="imports")
    template = models.ForeignKey(ImportTemplate, null=True, blank=True, on_delete=models.SET_NULL)
    mode = models.CharField(max_length=7, choices=Mode.choices, default=Mode.CHANGES)
    state = models.CharField(max_length=10, choices=State.choices, default=State.STAGED)
    effective_from = models.DateTimeField(
        null=True, blank=True, help_text="Start of rows without a date; empty: the activation time."
    )
    skip_invalid = models.BooleanField(default=False)
    # An uploaded file waits in settings.PRICE_IMPORT_DIR of the node that received it
    # (`node`) until that node's worker has read it; then only its parsed rows (StagedRate)
    # and the checksum, which proves which file it was, are kept.
    node = models.CharField(
        max_length=100, blank=True, help_text="The node that holds the uploaded file until it is read."
    )
    file_name = models.CharField(max_length=255, blank=True)
    file_size = models.PositiveBigIntegerField(default=0)
    file_sha256 = models.CharField(max_length=64, blank=True)
    phase = models.CharField(max_length=20, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    rows_per_second = models.FloatField(default=0)
    report = models.JSONField(default=dict, blank=True)
    base_version = models.PositiveIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="The table version it made live.")
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ImportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name or 'rows'} -> {self.table.name} ({self.get_state_display()})"

    @property
    def percent(self) -> int:
        return min(int(100 * self.rows_done / self.rows_total), 100) if self.rows_total else 0

    @property
    def busy(self) -> bool:
        """A worker has this import to do, or is doing it (the admin page refreshes itself)."""
        return self.state in BUSY_STATES


BUSY_STATES = frozenset(
    {
        PriceImport.State.RECEIVED,
        PriceImport.State.READING,
        PriceImport.State.QUEUED,
        PriceImport.State.ACTIVATING,
    }
)


class StagedRate(models.Model):
    """A parsed, valid row of a price import, waiting for activation (built for 10^6 rows)."""

    # No foreign-key constraint and no cascade: a million rows are removed by chunked
    # DELETEs in the import pipeline, never by Django's collector one object at a time.
    price_import = models.ForeignKey(
        PriceImport, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    line = models.PositiveIntegerField()
    prefix = models.CharField(max_length=32)
    destination = models.CharField(max_length=100, blank=True)
    price = MoneyField()
    connection_fee = MoneyField(default=0)
    min_seconds = models.PositiveIntegerField(default=1)
    increment_seconds = models.PositiveIntegerField(default=1)
    free_seconds = models.PositiveIntegerField(default=0)
    effective_from = models.DateTimeField(null=True, blank=True)  # None: the import's start
    effective_to = models.DateTimeField(null=True, blank=True)
    period = models.CharField(max_length=20, blank=True, db_default="")  # a time profile's name
    # Set by the diff: the earliest row of its prefix is the one that ends the live periods;
    # `current_id` is the live rate it replaces (0: none; never NULL, so that the diff
    # rewrites a row in place instead of growing it), `unchanged` rows are not written at all.
    # Database defaults: the bulk INSERT names only the parsed columns.
    is_first = models.BooleanField(db_default=True)
    single = models.BooleanField(db_default=True)
    current_id = models.BigIntegerField(db_default=0)
    superseded = models.BooleanField(db_default=False)
    unchanged = models.BooleanField(db_default=False)

    class Meta:
        indexes = [models.Index(fields=["price_import", "prefix"], name="stagedrate_import_prefix")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.prefix} {self.price}"
