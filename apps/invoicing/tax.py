"""Tax of an invoice: pure arithmetic on Decimals."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Taxed:
    net: Decimal
    tax: Decimal
    total: Decimal


def split(amount: Decimal, rate: Decimal, *, included: bool, places: int) -> Taxed:
    """Net, tax and total of `amount` at `rate` percent, the tax rounded half up to `places`.

    `included`: `amount` is the total, tax in it (the customer's prices include tax); else it
    is the net and the tax comes on top. Net + tax = total exactly, either way.
    """
    quantum = Decimal(1).scaleb(-places)
    if included:
        net = (amount * HUNDRED / (HUNDRED + rate)) if rate else amount
        tax = (amount - net).quantize(quantum, rounding=ROUND_HALF_UP)
        return Taxed(net=amount - tax, tax=tax, total=amount)
    tax = (amount * rate / HUNDRED).quantize(quantum, rounding=ROUND_HALF_UP)
    return Taxed(net=amount, tax=tax, total=amount + tax)
