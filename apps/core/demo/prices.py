"""Demo price lists, computed from fixtures/destinations.csv without touching the database.

Each supplier terminates a share of the world's countries (always whole countries, as real
price lists do) at the destination's typical price times its own factor; the sell lists
take the cheapest supplier's price plus a margin. One supplier raised some prices twelve
days ago and one reseller announced increases ten days ahead, so the history of a prefix
matters when a call is rated.
"""

import csv
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path

from django.conf import settings

from apps.core.demo.cast import SEED, SELL_TABLES, SUPPLIERS
from apps.rates.models import Rate
from apps.rates.tariffs import Tariff

DESTINATIONS_CSV = Path(settings.BASE_DIR) / "fixtures" / "destinations.csv"


@dataclass(frozen=True)
class Destination:
    prefix: str
    name: str
    country: str
    kind: str  # fixed, mobile, special, satellite
    number_length: int
    reference_rate: Decimal


def load_destinations(path: Path = DESTINATIONS_CSV) -> list[Destination]:
    """Read the destination list (prefix, name, country, kind, E.164 length, typical price)."""
    with path.open(newline="") as handle:
        return [
            Destination(
                prefix=row["prefix"],
                name=row["destination"],
                country=row["country"],
                kind=row["kind"],
                number_length=int(row["number_length"]),
                reference_rate=Decimal(row["reference_rate"]),
            )
            for row in csv.DictReader(handle)
        ]


def increments(policy: str, destination: Destination) -> tuple[int, int, int, Decimal]:
    """Minimum, increment and free seconds and the connection fee of a billing policy.

    Suppliers never bill in coarser steps than the sell lists built on them (satellite
    aside, 60/60 on both sides), so short calls do not lose money on the rounding alone.
    """
    satellite = destination.kind in ("satellite", "special")
    nanp = destination.prefix.startswith("1")
    none = Decimal(0)
    fee = Decimal("0.5") if satellite else none
    if policy == "per-second":  # buy: every second
        return 1, 1, 0, none
    if policy == "carrier":  # buy: the classic 30/6 wholesale terms
        return (60, 60, 0, none) if satellite else (1, 1, 0, none) if nanp else (30, 6, 0, none)
    if policy == "wholesale":  # sell: as the carriers bill, plus a fee on satellite calls
        return (60, 60, 0, fee) if satellite else (1, 1, 0, fee) if nanp else (30, 6, 0, fee)
    if policy == "retail":  # sell: whole minutes
        return 60, 60, 0, fee
    if policy == "business":  # sell: 6-second steps, a small set-up fee on mobiles
        if satellite:
            return 60, 60, 0, fee
        mobile_fee = Decimal("0.01") if destination.kind == "mobile" else none
        return (6, 6, 0, mobile_fee) if nanp else (30, 6, 0, mobile_fee)
    raise ValueError(f"Unknown billing policy {policy!r}")


@dataclass
class PriceRow:
    destination: Destination
    price: Decimal
    effective_from: datetime
    effective_to: datetime | None = None


def _round(value: Decimal, places: int, rounding=ROUND_HALF_UP) -> Decimal:
    return max(value.quantize(Decimal(1).scaleb(-places), rounding=rounding), Decimal(1).scaleb(-places))


@dataclass
class PriceBook:
    """Every demo price list as rows in memory, computed from the destinations alone."""

    rows: dict[str, list[PriceRow]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, destinations: list[Destination], *, start: datetime, today: datetime) -> "PriceBook":
        book = cls()
        # A country's world zone is the first digit of its code (2 Africa, 3-4 Europe, ...).
        zones: dict[str, str] = {}
        for dest in destinations:
            zones.setdefault(dest.country, dest.prefix[0])
        current: dict[str, dict[str, Decimal]] = {}  # supplier table -> prefix -> price now
        for spec in SUPPLIERS:
            rng = random.Random(f"{SEED}:prices:{spec.name}")
            covered = set()
            for country in sorted(zones):
                share = 0.9 if zones[country] in spec.strong_in else spec.coverage
                if share >= 1 or rng.random() < share:
                    covered.add(country)
            repriced_at = today - timedelta(days=12)
            rows, prices = [], {}
            for dest in destinations:
                if dest.country not in covered:
                    continue
                strong = zones[dest.country] in spec.strong_in
                factor = spec.price_factor * (Decimal("0.88") if strong else 1)
                jitter = Decimal(rng.randint(92, 108)) / 100
                price = _round(dest.reference_rate * factor * jitter, 4)
                prices[dest.prefix] = price
                if rng.random() < spec.repriced_share:
                    old = _round(price / (Decimal(rng.randint(105, 115)) / 100), 4)
                    rows.append(PriceRow(dest, old, start, repriced_at))
                    rows.append(PriceRow(dest, price, repriced_at))
                else:
                    rows.append(PriceRow(dest, price, start))
            book.rows[spec.table], book.policies[spec.table] = rows, spec.billing
            current[spec.table] = prices
        for spec in SELL_TABLES:
            rng = random.Random(f"{SEED}:prices:{spec.name}")
            increase_at = today + timedelta(days=10)
            rows = []
            for dest in destinations:
                best = min(p[dest.prefix] for p in current.values() if dest.prefix in p)
                price = _round(best * (1 + spec.margin), spec.places, ROUND_CEILING)
                if rng.random() < spec.increase_share:
                    rows.append(PriceRow(dest, price, start, increase_at))
                    rows.append(
                        PriceRow(
                            dest, _round(price * Decimal("1.2"), spec.places, ROUND_CEILING), increase_at
                        )
                    )
                else:
                    rows.append(PriceRow(dest, price, start))
            book.rows[spec.name], book.policies[spec.name] = rows, spec.billing
        return book

    def rates(self, table: str) -> list[Rate]:
        """The unsaved Rate objects of one table."""
        policy = self.policies[table]
        result = []
        for row in self.rows[table]:
            minimum, increment, free, fee = increments(policy, row.destination)
            result.append(
                Rate(
                    prefix=row.destination.prefix,
                    destination=row.destination.name,
                    price=row.price,
                    connection_fee=fee,
                    min_seconds=minimum,
                    increment_seconds=increment,
                    free_seconds=free,
                    effective_from=row.effective_from,
                    effective_to=row.effective_to,
                )
            )
        return result


class RateIndex:
    """Longest-prefix lookup of stored rates at a moment, for the tables calls are rated with."""

    def __init__(self, tables) -> None:
        self._rates: dict[int, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
        rows = Rate.objects.filter(table__in=tables).values_list(
            "table_id",
            "prefix",
            "effective_from",
            "effective_to",
            "price",
            "connection_fee",
            "min_seconds",
            "increment_seconds",
            "free_seconds",
        )
        for table_id, prefix, start, end, price, fee, minimum, increment, free in rows.iterator():
            tariff = Tariff(price, fee, minimum, increment, free)
            self._rates[table_id][prefix].append((start, end, tariff))

    def tariff(self, table_id: int, number: str, moment: datetime) -> Tariff | None:
        by_prefix = self._rates.get(table_id, {})
        for length in range(len(number), 0, -1):
            for start, end, tariff in by_prefix.get(number[:length], ()):
                if start <= moment and (end is None or moment < end):
                    return tariff
        return None
