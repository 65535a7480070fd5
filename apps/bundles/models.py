"""Bundles: included minutes or money per period, for some destinations, sold for a fee.

A bundle is a product of the operator's or a reseller's catalogue; an account subscribes to
it from a day, which adds the bundle's price as a recurring fee of the account. Each period
of a subscription has a usage row, made when the period is first used: what the period
includes (prorated when the subscription starts or ends within it) and what calls used.
The rater takes a matching call's billable seconds (a minutes bundle) or its price (a money
bundle) from the usage row before it charges money, in the transaction that rates the call,
so a call is covered once; call control counts what the period has left, less what live
calls hold, when it decides how long a call may last (docs/BUNDLES.md).
"""

import re

from django.core.exceptions import ValidationError
from django.db import models

from apps.bundles.querysets import BundleQuerySet, SubscriptionQuerySet, UsageQuerySet
from apps.core.models import MoneyField, TimestampedModel

PREFIX = re.compile(r"\d{1,32}")


def split_lines(text: str) -> list[str]:
    """The non-blank lines of `text`, stripped, in order, without repeats."""
    seen = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
    return seen


class Bundle(TimestampedModel):
    class Kind(models.TextChoices):
        MINUTES = "minutes", "Included minutes"
        MONEY = "money", "Included money"

    class Period(models.TextChoices):
        # As the recurring fee that charges its price (billing.RecurringFee.Period).
        DAILY = "daily", "Daily"
        MONTHLY = "monthly", "Monthly"

    reseller = models.ForeignKey(
        "tenancy.Reseller",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bundles",
        help_text="Whose catalogue it is in; empty: the operator's.",
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=7, choices=Kind.choices, default=Kind.MINUTES)
    minutes = models.PositiveIntegerField(null=True, blank=True, help_text="Included per period.")
    money = MoneyField(null=True, blank=True, help_text="Included per period, in the account's currency.")
    period = models.CharField(max_length=7, choices=Period.choices, default=Period.MONTHLY)
    price = MoneyField(default=0, help_text="Charged every period as a recurring fee (0: free).")
    prefixes = models.TextField(
        blank=True, help_text="Numbers it covers by prefix, one per line (as priced: 4420, 331)."
    )
    destinations = models.TextField(
        blank=True,
        help_text="Destinations it covers by name as the sell price list names them, one per line.",
    )

    objects = BundleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def allowance(self) -> str:
        return f"{self.minutes} min" if self.kind == self.Kind.MINUTES else f"{self.money}"

    def prefix_list(self) -> list[str]:
        return split_lines(self.prefixes)

    def destination_list(self) -> list[str]:
        return split_lines(self.destinations)

    def clean(self) -> None:
        errors = {}
        if self.kind == self.Kind.MINUTES:
            if not self.minutes:
                errors["minutes"] = "A minutes bundle includes at least one minute per period."
            if self.money is not None:
                errors["money"] = "A minutes bundle includes minutes, not money."
        else:
            if self.money is None or self.money <= 0:
                errors["money"] = "A money bundle includes a positive amount per period."
            if self.minutes is not None:
                errors["minutes"] = "A money bundle includes money, not minutes."
        if self.price is not None and self.price < 0:
            errors["price"] = "A price is zero or more."
        bad = [p for p in self.prefix_list() if not PREFIX.fullmatch(p)]
        if bad:
            errors["prefixes"] = f"Prefixes are 1 to 32 digits; not: {', '.join(bad[:5])}."
        if not self.prefix_list() and not self.destination_list():
            errors["prefixes"] = "Name the destinations it covers: prefixes, destination names or both."
        if errors:
            raise ValidationError(errors)


class Subscription(TimestampedModel):
    """An account's bundle from `starts_on` (through `ends_on`), its price a recurring fee."""

    account = models.ForeignKey(
        "billing.Account", on_delete=models.PROTECT, related_name="bundle_subscriptions"
    )
    bundle = models.ForeignKey(Bundle, on_delete=models.PROTECT, related_name="subscriptions")
    starts_on = models.DateField(help_text="First day included, on the customer's clock.")
    ends_on = models.DateField(null=True, blank=True, help_text="Last day included; empty: until ended.")
    fee = models.OneToOneField(
        "billing.RecurringFee",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bundle_subscription",
        editable=False,
    )

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["account", "starts_on", "pk"]

    def __str__(self) -> str:
        return f"{self.bundle} from {self.starts_on}"

    def clean(self) -> None:
        if self.ends_on and self.starts_on and self.ends_on < self.starts_on:
            raise ValidationError({"ends_on": "A subscription ends on or after the day it starts."})


class Usage(models.Model):
    """One period of a subscription: what it includes and what calls used of it.

    Written under its row lock by the rater (used_*, calls) and by call control (authorized:
    a write, so that two nodes granting the last of a period at once conflict in Galera's
    certification and one of them decides again).
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="usages")
    period_start = models.DateField()
    period_end = models.DateField()
    included_seconds = models.PositiveIntegerField(default=0)
    included_money = MoneyField(default=0)
    used_seconds = models.PositiveBigIntegerField(default=0)
    used_money = MoneyField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="Calls it covered, wholly or in part.")
    authorized = models.PositiveBigIntegerField(default=0, editable=False)

    objects = UsageQuerySet.as_manager()

    class Meta:
        ordering = ["subscription", "period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start"], name="bundles_usage_one_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subscription.bundle} {self.period_start} to {self.period_end}"

    @property
    def left_seconds(self) -> int:
        return max(self.included_seconds - self.used_seconds, 0)

    @property
    def left_money(self):
        return max(self.included_money - self.used_money, 0)
