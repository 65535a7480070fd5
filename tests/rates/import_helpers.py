"""Shared helpers of the price-import tests."""

from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from apps.rates.models import Rate

BAD_PRICES = Path(settings.BASE_DIR) / "fixtures" / "bad_prices"
HEADER = (
    "prefix,destination,rate,connection_fee,min_seconds,increment_seconds,free_seconds,"
    "effective_from,effective_to"
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def deck(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


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
