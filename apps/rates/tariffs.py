"""Pure tariff math: a tariff and a duration in, seconds and money out. No ORM, no clock.

Rounding, once and in one direction per purpose (docs/ARCHITECTURE.md, "Rating math"):

- a call's charge is kept at the money precision (six decimal places, in every currency)
  and rounded once, half up, from the exact rational price * seconds / 60;
- an amount shown on an invoice is rounded once more, half up, to the currency's ISO 4217
  minor unit (`round_for_invoice`), and only the total of a line, never call by call.
"""

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from apps.core.money import MONEY_PLACES, money

# ISO 4217 currencies whose minor unit is not the cent (list one, as amended up to 2024).
# Everything else that looks like a currency code has two decimals: a wrong guess here
# would only change what an invoice displays, never what the ledger holds.
_MINOR_UNITS_NOT_TWO = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
_MINOR_UNITS = {code: units for units, codes in _MINOR_UNITS_NOT_TWO.items() for code in codes.split()}
_DEFAULT_MINOR_UNITS = 2
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class Tariff:
    price: Decimal  # per minute
    connection_fee: Decimal = Decimal(0)
    min_seconds: int = 1
    increment_seconds: int = 1
    free_seconds: int = 0

    def __post_init__(self) -> None:
        # A float price would be rated with binary rounding errors, and a negative one
        # would pay the caller: refuse both where the tariff is made, not call by call.
        for name in ("price", "connection_fee"):
            value = getattr(self, name)
            if not isinstance(value, Decimal | int) or isinstance(value, bool):
                raise TypeError(f"A tariff's {name} is a Decimal, not {type(value).__name__}.")
            if value < 0:
                raise ValueError(f"A tariff's {name} cannot be negative ({value}).")
        _check_notation(self.min_seconds, self.increment_seconds, self.free_seconds)


@dataclass(frozen=True)
class CallCharge:
    """What one call costs, in parts that add up to the whole exactly."""

    seconds: int  # billable seconds; 0 means nothing is charged
    usage: Decimal  # price * seconds / 60, at money precision
    connection_fee: Decimal  # charged once per billed call, 0 otherwise

    @property
    def total(self) -> Decimal:
        return self.usage + self.connection_fee


def _check_notation(minimum: int, increment: int, free: int) -> None:
    if increment < 1:
        raise ValueError(f"The billing increment is at least one second (got {increment}).")
    if minimum < 0 or free < 0:
        raise ValueError(f"Minimum and free seconds cannot be negative (got {minimum}/{increment}/{free}).")


def ceil_to(value: int, step: int) -> int:
    """Round `value` up to a multiple of `step`."""
    return -(-value // step) * step


def billable_seconds(duration: int, *, minimum: int, increment: int, free: int = 0) -> int:
    """Seconds to bill for `duration` under a min/increment/free tariff such as 30/6/0.

    Free seconds are a grace period, as in the seed product: a call that ends within them
    is not billed at all, a longer one is billed from its first second.
    """
    _check_notation(minimum, increment, free)
    if duration <= 0 or duration <= free:
        return 0
    billed = max(duration, minimum)
    return minimum + ceil_to(billed - minimum, increment)


def duration_seconds(duration_ms: int) -> int:
    """Whole seconds of a call measured in milliseconds, rounded up (a started second counts)."""
    return -(-duration_ms // 1000) if duration_ms > 0 else 0


def round_half_up(value: Fraction, places: int = MONEY_PLACES) -> Decimal:
    """Round an exact rational half up (away from zero) to `places` decimals, exactly."""
    scaled = abs(value) * 10**places
    units = int(scaled + Fraction(1, 2))  # int() truncates; scaled is not negative
    # Built from a string so that no Decimal context (precision, rounding) can touch it.
    return Decimal(f"{'-' if value < 0 else ''}{units}E-{places}")


def usage_cost(price: Decimal, seconds: int) -> Decimal:
    """Price per minute * `seconds` / 60, rounded once, half up, to the money precision.

    Computed on the exact rational: price * seconds / 60 often has no finite decimal
    expansion (0.01 * 7 / 60), and a division under the thread's Decimal context would
    round a first time before money() rounds again.
    """
    if isinstance(price, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    return money(round_half_up(Fraction(price) * seconds / 60))


def rate_call(tariff: Tariff, duration_ms: int) -> CallCharge:
    """Charge an answered call of `duration_ms` under `tariff`, fee and usage apart."""
    seconds = billable_seconds(
        duration_seconds(duration_ms),
        minimum=tariff.min_seconds,
        increment=tariff.increment_seconds,
        free=tariff.free_seconds,
    )
    if seconds == 0:
        # Unanswered, or over within the free seconds: nothing to pay, not even the fee.
        return CallCharge(0, money(0), money(0))
    # A stored fee is already at money precision, so money(fee) + usage equals the single
    # rounding of fee + exact usage: adding an amount on the grid commutes with rounding.
    return CallCharge(seconds, usage_cost(tariff.price, seconds), money(tariff.connection_fee))


def call_cost(tariff: Tariff, duration_ms: int) -> tuple[int, Decimal]:
    """Return (billable seconds, cost) of an answered call of `duration_ms`."""
    charge = rate_call(tariff, duration_ms)
    return charge.seconds, charge.total


def affordable_duration(tariff: Tariff, available: Decimal, *, ceiling: int) -> tuple[int, Decimal] | None:
    """The longest call `available` money pays for under `tariff`, at most `ceiling` seconds.

    Returns (seconds, cost of those seconds) or None when not even the first billable
    period (the minimum, or one increment) is covered. The seconds end on the tariff's
    billing grid (minimum, then whole increments), so the reserved cost is exactly what
    rating will charge for a call that lasts the granted time; a ceiling off the grid bills
    up to a grid point at or below the affordable one, so its cost never exceeds `available`.
    """
    if isinstance(available, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    minimum, increment = tariff.min_seconds, tariff.increment_seconds
    first = billable_seconds(1, minimum=minimum, increment=increment)
    fee = money(tariff.connection_fee)
    if available < fee:
        return None
    if tariff.price == 0:
        seconds = ceiling
    else:
        # Rating charges price * s / 60 rounded half up to the money grid, which stays
        # within `budget` exactly while the unrounded amount is below budget + half a unit:
        # the most seconds are the largest integer strictly below that bound.
        half_unit = Fraction(1, 2 * 10**MONEY_PLACES)
        bound = (Fraction(money(available) - fee) + half_unit) * 60 / Fraction(tariff.price)
        most = -(-bound.numerator // bound.denominator) - 1
        if most < first:
            return None
        paid = minimum + (most - minimum) // increment * increment
        # A call that ends within the free seconds costs nothing, so a grant that covers
        # the first paid period may as well last them all.
        seconds = min(max(paid, tariff.free_seconds), ceiling)
    if seconds < 1:
        return None
    return seconds, rate_call(tariff, seconds * 1000).total


def minor_units(currency: str) -> int:
    """Decimal places of `currency`'s minor unit per ISO 4217 (JPY 0, EUR 2, KWD 3)."""
    if not isinstance(currency, str) or not _CURRENCY_CODE.fullmatch(currency):
        raise ValueError(f"{currency!r} is not a three-letter ISO 4217 code such as USD.")
    return _MINOR_UNITS.get(currency, _DEFAULT_MINOR_UNITS)


def round_for_invoice(amount: Decimal | int | str, currency: str) -> Decimal:
    """Round an amount to `currency`'s minor unit, half up, for an invoice or a payment.

    Round totals, not the calls inside them: a thousand 6-second calls at 0.0045/min are
    0.45 together, and zero each once rounded to the cent.
    """
    if isinstance(amount, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    return Decimal(amount).quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)
