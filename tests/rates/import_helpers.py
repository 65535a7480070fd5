"""Shared helpers of the price-import tests."""

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.rates.models import Rate

BAD_PRICES = Path(settings.BASE_DIR) / "fixtures" / "bad_prices"
SAMPLE_PRICES = BAD_PRICES.parent / "sample_prices" / "cobalt_networks_2026-12.csv"
SAMPLE_STARTS = date(2026, 12, 1)  # the day most of the sample's prices start
HEADER = (
    "prefix,destination,rate,connection_fee,min_seconds,increment_seconds,free_seconds,"
    "effective_from,effective_to"
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def deck(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def sample_price_list(*, starts_in_days: int = 1) -> bytes:
    """The sample supplier list with every date moved so that its prices start `starts_in_days`
    after today: what it previews (new, decreased, scheduled) is then the same on any date."""
    shift = timezone.now().date() + timedelta(days=starts_in_days) - SAMPLE_STARTS

    def moved(match: re.Match) -> str:
        return (date.fromisoformat(match.group(1)) + shift).isoformat()

    return re.sub(r"(\d{4}-\d{2}-\d{2})(?=T)", moved, SAMPLE_PRICES.read_text()).encode()


def corpus() -> list[tuple[str, str]]:
    """(file, expected error) pairs from fixtures/bad_prices/README.md."""
    pairs = []
    for line in (BAD_PRICES / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            name, expected = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
            pairs.append((name, expected))
    return pairs


def price_at(table, number: str, moment: datetime):
    """What a CDR to `number` at `moment` pays: longest prefix, then the newest start."""
    prefixes = [number[:length] for length in range(len(number), 0, -1)]
    rates = Rate.objects.live().effective_at(moment).filter(table=table, prefix__in=prefixes)
    best = max(rates, key=lambda rate: (len(rate.prefix), rate.effective_from), default=None)
    return best.price if best else None


def snapshot(table) -> list[tuple]:
    """Everything readers can see of a table, to prove an import left it alone."""
    return list(
        Rate.objects.live()
        .filter(table=table)
        .order_by("prefix", "effective_from")
        .values_list("prefix", "price", "effective_from", "effective_to")
    )
