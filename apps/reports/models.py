"""Traffic rollups: the rated CDRs summed per hour and per day, what every report reads.

A row is one period (an hour, or a day of the operator's TIME_ZONE) of one customer, one
supplier, one destination and one node. The billing loop adds each batch it rates
(apps.reports.rollups), and re-rating moves the money it changes, so a month's report
reads a few thousand rows instead of millions of CDRs.
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
    """Rated calls of one period and one (customer, supplier, destination, node)."""

    class Grain(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    # SHA-1 of (grain, period_start, customer, supplier, destination, node): the one unique
    # key the rollup upsert adds to (a composite key would let NULL suppliers repeat on
    # MariaDB and SQLite, where NULLs are distinct). apps.reports.rollups.rollup_key makes it.
    key = models.CharField(max_length=40, unique=True, editable=False)
    grain = models.CharField(max_length=4, choices=Grain.choices)
    # The period's first instant (UTC for an hour; the operator's local midnight for a day).
    period_start = models.DateTimeField()
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

    objects = RollupQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["grain", "period_start"], name="rollup_period_idx"),
            models.Index(fields=["customer", "grain", "period_start"], name="rollup_customer_idx"),
            models.Index(fields=["supplier", "grain", "period_start"], name="rollup_supplier_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.period_start:%Y-%m-%d %H:%M} {self.customer_id}/{self.supplier_id}"
