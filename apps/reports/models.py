"""Traffic rollups: the rated CDRs summed per hour and per day, what every report reads.

A row is one period (an hour, or a day of the operator's TIME_ZONE) of one SHAPE: the
"full" shape keeps customer, supplier, destination and node; the smaller ones keep some of
them (the others empty) so that a report by destination sums one row per destination and
day, not one per (customer, supplier, destination, node), which with independent traffic is
one per call (bench/reports.py: 1.8 M day rows for a month of 10 M CDRs). Every CDR is in
every shape (apps.reports.rollups.SHAPES); apps.reports.queries reads the smallest shape
that has what a report groups and filters by. The billing loop adds each batch it rates,
and re-rating moves the money it changes.

The currencies (the customer account's, the supplier account's) are part of a row's
identity, so reports sum money per currency without joining the accounts, in every shape.
"""

from django.db import models

from apps.core.models import MoneyField
from apps.core.querysets import ScopedQuerySet


class RollupQuerySet(ScopedQuerySet):
    # A reseller sees its customers' traffic; a customer its own. The supplier side
    # (supplier, cost, profit) is left out of reseller and customer reports by the views.
    reseller_lookup = "customer__reseller"
    customer_lookup = "customer"


class TrafficRollup(models.Model):
    """Rated calls of one period, one shape and one (customer, supplier, destination, node,
    currency, cost currency), the dimensions the shape does not keep left empty."""

    class Grain(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    # Grain and period, then SHA-1 of the whole identity (apps.reports.rollups.IDENTITY): the one unique
    # key the rollup upsert adds to (a composite key would let NULL suppliers repeat on
    # MariaDB and SQLite, where NULLs are distinct). apps.reports.rollups.rollup_key makes it.
    key = models.CharField(max_length=40, unique=True, editable=False)
    grain = models.CharField(max_length=4, choices=Grain.choices)
    # The period's first instant (UTC for an hour; the operator's local midnight for a day).
    period_start = models.DateTimeField()
    # A name of apps.reports.rollups.SHAPES: which of the four dimensions below this row keeps.
    shape = models.CharField(max_length=24, default="full")
    customer = models.ForeignKey(
        "peers.Peer", null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    supplier = models.ForeignKey(
        "peers.Peer", null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    destination = models.CharField(max_length=100, blank=True)
    node = models.ForeignKey(
        "nodes.Node", null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    # The customer's account currency and the supplier's ("" without one), read with the CDRs.
    currency = models.CharField(max_length=3, blank=True)
    cost_currency = models.CharField(max_length=3, blank=True)

    attempts = models.PositiveIntegerField(default=0)
    answered = models.PositiveIntegerField(default=0)
    # Answered, or ended by the called user (busy, no answer, declined): network effectiveness.
    effective = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveBigIntegerField(default=0)
    billable_seconds = models.PositiveBigIntegerField(default=0)
    supplier_billable_seconds = models.PositiveBigIntegerField(default=0)
    # Post-dial delay of the calls that rang or were answered: its sum and how many had one.
    pdd_ms = models.PositiveBigIntegerField(default=0)
    pdd_calls = models.PositiveIntegerField(default=0)
    # In the customer's currency and the supplier's, as each CDR's costs are.
    sell = MoneyField(default=0)
    buy = MoneyField(default=0)
    # Of the calls of a reseller's customers whose reseller has an account with the
    # operator (docs/BILLING.md, "Two-level money"): what the customers paid (part of
    # `sell`) and what the reseller pays the operator for them. The reseller's margin is
    # resold - wholesale; the operator's revenue sell - resold + wholesale.
    resold = MoneyField(default=0)
    wholesale = MoneyField(default=0)

    objects = RollupQuerySet.as_manager()

    class Meta:
        indexes = [
            # A report reads one shape of one grain over a range, perhaps of one customer or
            # supplier: each index starts with the shape and the grain so it skips the other
            # shapes' and grains' rows. MariaDB reads a report grouped by customer (or
            # supplier) in the order of the second (third) index to spare a temporary table:
            # with the customer before the grain it read the shape's hour rows too, 20 times
            # the day rows (bench/reports.py: a month by customer took 270 ms at 1 M CDRs).
            models.Index(fields=["shape", "grain", "period_start"], name="rollup_shape_period_idx"),
            models.Index(
                fields=["shape", "grain", "customer", "period_start"], name="rollup_shape_customer_idx"
            ),
            models.Index(
                fields=["shape", "grain", "supplier", "period_start"], name="rollup_shape_supplier_idx"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.grain} {self.shape} {self.period_start:%Y-%m-%d %H:%M}"
            f" {self.customer_id}/{self.supplier_id}"
        )
