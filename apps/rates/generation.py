"""Sell price generation (the seed's "billing pack generation"), pure: no ORM, no clock.

Supplier rows in force at one moment go in, the rows of a customer (sell) table come out,
with the prefixes that could not be priced and why. The caller reads the supplier tables,
converts them to the sell table's currency, and writes the result through the import
pipeline like any other price list, so a generated table has the same history, preview
and margin check as an uploaded one.

How a sell price is made (docs/ARCHITECTURE.md, "Rating math"):

    base   = the chosen supplier's price, or the mean of the N cheapest
    sell   = base * (1 + margin_percent / 100) + margin_absolute
    sell   = max(sell, base + minimum_margin)
    sell   = sell rounded UP to `rounding` decimals

Percent and absolute margins add up, both computed on the buy price; the minimum margin
is a floor on (sell - base), not a third addition. Rounding is always towards the
ceiling, so the rounded price never drops below the floor. The margins are per minute:
connection fees and billing increments are passed through from the supplier(s).
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from apps.core.money import MONEY_PLACES
from apps.rates.rows import RateRow


class Rule(StrEnum):
    """Which supplier price a sell price is built on."""

    CHEAPEST = "cheapest"
    AVERAGE_OF_N_CHEAPEST = "average_of_n_cheapest"
    NAMED_SUPPLIER = "named_supplier"


@dataclass(frozen=True)
class Source:
    """The supplier row a sell price was built on."""

    supplier: str
    prefix: str  # the supplier's own prefix: the sell prefix itself or a shorter one covering it
    price: Decimal


@dataclass(frozen=True)
class SkippedPrefix:
    prefix: str
    reason: str


@dataclass
class GenerationResult:
    rows: list[RateRow] = field(default_factory=list)  # by prefix
    skipped: list[SkippedPrefix] = field(default_factory=list)  # by prefix
    sources: dict[str, tuple[Source, ...]] = field(default_factory=dict)  # sell prefix -> used rows


def rows_in_force(rows: Iterable[RateRow], at: datetime) -> list[RateRow]:
    """The rows whose period [effective_from, effective_to) contains `at`.

    A row without a start is one an import has not activated yet and counts as in force,
    as the import pipeline gives it the activation time.
    """
    return [
        row
        for row in rows
        if (row.effective_from is None or row.effective_from <= at)
        and (row.effective_to is None or at < row.effective_to)
    ]


def _fraction(value: object, what: str) -> Fraction:
    if isinstance(value, float | bool):
        raise TypeError(f"{what} is a Decimal, never a {type(value).__name__}.")
    if not isinstance(value, Decimal | int):
        raise TypeError(f"{what} is a Decimal, not {type(value).__name__}.")
    if not Decimal(value).is_finite():
        raise ValueError(f"{what} must be a finite number (got {value}).")
    if value < 0:
        raise ValueError(f"{what} cannot be negative (got {value}).")
    return Fraction(value)


def sell_price(
    buy: Decimal | Fraction,
    *,
    margin_percent: Decimal | None = None,
    margin_absolute: Decimal | None = None,
    minimum_margin: Decimal | None = None,
    rounding: int = 4,
) -> Decimal:
    """The sell price per minute for a buy price per minute, margins applied, rounded up."""
    if not 0 <= rounding <= MONEY_PLACES:
        # Prices are stored at MONEY_PLACES; a finer price would be rounded again by the
        # database, maybe below the floor.
        raise ValueError(f"Sell prices are rounded to 0..{MONEY_PLACES} decimals (got {rounding}).")
    base = buy if isinstance(buy, Fraction) else _fraction(buy, "A buy price")
    percent = _fraction(margin_percent, "The margin percent") if margin_percent is not None else 0
    absolute = _fraction(margin_absolute, "The absolute margin") if margin_absolute is not None else 0
    floor = base + (_fraction(minimum_margin, "The minimum margin") if minimum_margin is not None else 0)
    exact = max(base * (1 + Fraction(percent) / 100) + absolute, floor)
    # math.ceil on a Fraction is exact; the string keeps every Decimal context out of it.
    units = math.ceil(exact * 10**rounding)
    return Decimal(f"{units}E-{rounding}") if rounding else Decimal(units)


class _Ambiguous:
    """Marks a supplier prefix listed twice with different terms."""


_AMBIGUOUS = _Ambiguous()


def _index(supplier: str, rows: Iterable[RateRow]) -> dict[str, RateRow | _Ambiguous]:
    """One row per prefix; a prefix listed twice with different terms is ambiguous."""
    by_prefix: dict[str, RateRow | _Ambiguous] = {}
    for row in rows:
        _fraction(row.price, f"{supplier} {row.prefix}: the price")
        _fraction(row.connection_fee, f"{supplier} {row.prefix}: the connection fee")
        seen = by_prefix.get(row.prefix)
        if seen is None:
            by_prefix[row.prefix] = row
        elif seen is not _AMBIGUOUS and _terms(seen) != _terms(row):
            by_prefix[row.prefix] = _AMBIGUOUS
    return by_prefix


def _terms(row: RateRow) -> tuple:
    return (row.price, row.connection_fee, row.min_seconds, row.increment_seconds, row.free_seconds)


def _longest_match(
    by_prefix: dict[str, RateRow | _Ambiguous], prefix: str
) -> tuple[str, RateRow | _Ambiguous] | None:
    # A supplier without the exact prefix still carries those numbers at its longest
    # shorter prefix, as routing will (a deck with 44 and no 447 prices UK mobiles at 44).
    for length in range(len(prefix), 0, -1):
        found = by_prefix.get(prefix[:length])
        if found is not None:
            return prefix[:length], found
    return None


def generate_sell_rates(
    supplier_rates: Mapping[str, Iterable[RateRow]],
    *,
    rule: Rule | str,
    margin_percent: Decimal | None = None,
    margin_absolute: Decimal | None = None,
    minimum_margin: Decimal | None = None,
    n_cheapest: int = 3,
    supplier: str | None = None,
    rounding: int = 4,
) -> GenerationResult:
    """Build sell rows for every prefix any supplier lists, from the rows in force now.

    `supplier_rates` maps a supplier's name to its rows in force at one moment (see
    rows_in_force), all in the sell table's currency. `rounding` is the number of
    decimals of the sell price, always rounded up. A prefix offered by fewer than
    `n_cheapest` suppliers is averaged over those there are.
    """
    rule = Rule(rule)
    if rule is Rule.NAMED_SUPPLIER:
        if supplier is None:
            raise ValueError("The named-supplier rule needs a supplier.")
        if supplier not in supplier_rates:
            raise ValueError(f"No rows were given for supplier {supplier!r}.")
    elif supplier is not None:
        raise ValueError(f"A supplier is only named with the {Rule.NAMED_SUPPLIER} rule.")
    if rule is Rule.AVERAGE_OF_N_CHEAPEST and n_cheapest < 1:
        raise ValueError(f"The average is over at least one supplier (got {n_cheapest}).")
    margins = {
        "margin_percent": margin_percent,
        "margin_absolute": margin_absolute,
        "minimum_margin": minimum_margin,
        "rounding": rounding,
    }
    sell_price(Decimal(0), **margins)  # refuse bad margins even when there are no rows

    indexes = {name: _index(name, rows) for name, rows in supplier_rates.items()}
    prefixes = sorted({prefix for index in indexes.values() for prefix in index})
    result = GenerationResult()
    for prefix in prefixes:
        offers: list[tuple[str, str, RateRow]] = []  # (supplier, its prefix, row)
        ambiguous: list[str] = []
        for name in (supplier,) if rule is Rule.NAMED_SUPPLIER else sorted(indexes):
            match = _longest_match(indexes[name], prefix)
            if match is None:
                continue
            if match[1] is _AMBIGUOUS:
                ambiguous.append(f"{name} ({match[0]})")
            else:
                offers.append((name, match[0], match[1]))
        if ambiguous:
            # Any choice would be a guess, and the guess could be the cheapest price.
            reason = "listed twice with different terms at " + ", ".join(ambiguous)
            result.skipped.append(SkippedPrefix(prefix, reason))
            continue
        if not offers:
            result.skipped.append(SkippedPrefix(prefix, f"supplier {supplier} has no price for it"))
            continue
        # Cheapest first; on a tie the lower fee, then the name, so the result is stable.
        offers.sort(key=lambda offer: (offer[2].price, offer[2].connection_fee, offer[0]))
        chosen = offers[:n_cheapest] if rule is Rule.AVERAGE_OF_N_CHEAPEST else offers[:1]
        result.rows.append(_sell_row(prefix, chosen, offers, margins))
        result.sources[prefix] = tuple(Source(name, own, row.price) for name, own, row in chosen)
    return result


def _sell_row(
    prefix: str,
    chosen: list[tuple[str, str, RateRow]],
    offers: list[tuple[str, str, RateRow]],
    margins: dict,
) -> RateRow:
    """The sell row for `prefix` built on the `chosen` offers (one, or the N cheapest)."""
    rows = [row for _name, _own, row in chosen]
    base = sum((Fraction(row.price) for row in rows), Fraction(0)) / len(rows)
    return RateRow(
        prefix=prefix,
        price=sell_price(base, **margins),
        destination=_destination(prefix, chosen, offers),
        # With an average the call may be routed to any of the N suppliers (cost-based
        # routing picks whichever is cheapest at the time); the largest fee and the
        # coarsest billing among them make sure neither the fee nor the rounding of the
        # duration loses money on whichever one carries it.
        connection_fee=max(row.connection_fee for row in rows),
        min_seconds=max(row.min_seconds for row in rows),
        increment_seconds=max(row.increment_seconds for row in rows),
        free_seconds=min(row.free_seconds for row in rows),
    )


def _destination(prefix: str, chosen: list, offers: list) -> str:
    # The chosen supplier's name for its own row of this prefix; when it covers the prefix
    # through a shorter one ("United Kingdom" for 447), a supplier naming this very
    # prefix ("United Kingdom Mobile") says more.
    for _name, own, row in (*chosen, *offers):
        if own == prefix and row.destination:
            return row.destination
    return next((row.destination for _name, _own, row in chosen if row.destination), "")
