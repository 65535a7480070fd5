"""Rollups of the cast's traffic, written as the rater would: customer A's calls in USD,
customer B's in EUR, the operator's direct customer's, all through the cast's supplier."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import Account
from apps.reports import rollups
from apps.reports.rollups import Sums

# (peer attribute, destination, attempts, answered, minutes, sell, buy)
TRAFFIC = (
    ("a", "Germany", 10, 6, 12, "1.20", "0.40"),
    ("a", "France", 4, 2, 3, "0.60", "0.30"),
    ("b", "Spain", 8, 4, 8, "2.00", "0.50"),
    ("operator", "Italy", 5, 5, 10, "3.00", "1.00"),
)


def write_traffic(cast, *, when=None, b_currency="EUR"):
    """Add TRAFFIC at `when` (default: two hours ago) to the hour and day rollups of
    every shape."""
    when = when or timezone.now() - timedelta(hours=2)
    Account.objects.filter(peer=cast.b.customer).update(currency=b_currency)
    peers = {"a": cast.a.customer, "b": cast.b.customer, "operator": cast.operator_customer}
    currency = dict(Account.objects.values_list("peer_id", "currency"))
    sums = {}
    zone = rollups.local_zone()
    for who, destination, attempts, answered, minutes, sell, buy in TRAFFIC:
        for grain, start in (
            ("hour", rollups.hour_start(when)),
            ("day", rollups.day_start(when.astimezone(zone).date(), zone)),
        ):
            peer = peers[who]
            sums[
                grain,
                start,
                "full",
                peer.pk,
                cast.supplier.pk,
                destination,
                cast.node.pk,
                currency.get(peer.pk, ""),
                currency.get(cast.supplier.pk, ""),
            ] = Sums(
                attempts=attempts,
                answered=answered,
                effective=answered + 1,
                duration_ms=minutes * 60_000,
                billable_seconds=minutes * 60,
                pdd_ms=2000 * attempts,
                pdd_calls=attempts,
                sell=Decimal(sell),
                buy=Decimal(buy),
            )
    rollups.upsert(rollups.shaped(sums))


@pytest.fixture
def traffic(cast):
    write_traffic(cast)
    return cast
