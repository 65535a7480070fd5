"""Money is Decimal, quantized in one place."""

from decimal import ROUND_HALF_UP, Decimal

# Amounts are kept to the micro-unit: a 6-second call at 0.0045/min costs 0.00045 and
# must not round to zero before it reaches the ledger.
MONEY_PLACES = 6
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
MONEY_DIGITS = 20


def money(value: Decimal | int | str) -> Decimal:
    """Return `value` as a Decimal quantized to the money precision (half up)."""
    if isinstance(value, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    return Decimal(value).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)


ZERO = money(0)
