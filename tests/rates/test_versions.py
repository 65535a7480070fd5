"""Readers see a rate table's live version only: staged and replaced rows stay hidden."""

from decimal import Decimal

from django.utils import timezone

from apps.rates.models import Rate, RateTable
from tests.factories import make_rate_table


def test_live_rows_follow_the_tables_version(db):
    table = make_rate_table("Versions")
    start = timezone.now()

    def row(prefix, price, version_from, version_to=None):
        return Rate.objects.create(
            table=table,
            prefix=prefix,
            price=Decimal(price),
            effective_from=start,
            version_from=version_from,
            version_to=version_to,
        )

    old = row("44", "0.01", 0, version_to=1)  # replaced by version 1
    new = row("44", "0.02", 1)  # written by the import of version 1
    kept = row("33", "0.05", 0)  # untouched by that import

    assert set(Rate.objects.live()) == {old, kept}
    RateTable.objects.filter(pk=table.pk).update(live_version=1)
    assert set(Rate.objects.live()) == {new, kept}
    assert Rate.objects.live().effective_at(start).get(prefix="44").price == Decimal("0.02")
