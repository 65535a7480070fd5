"""How amounts are written, everywhere: portal, admin, exports' totals, e-mails.

One rule (issue 17):
- a total (a balance, a credit limit, a sum over calls or days, an invoice line) is shown
  in its currency's minor units: 1,234.50 USD, 1,235 JPY, 12.345 BHD;
- a price or a single call's cost keeps its own precision, at least four places, so a
  0.00045 call or a 0.0125/min rate never shows as 0.00;
- one ledger entry (a payment, a call's charge) is exact too, with at least the minor
  units: 100.00 USD, 0.00045 USD.

Stored amounts are never rounded: this is display only. Exports write the stored value.
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from apps.core.money import MONEY_PLACES, MONEY_QUANTUM

# ISO 4217 exponents that are not 2; every other code has cents.
_MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF"), 0),
    **dict.fromkeys(("UGX", "VND", "VUV", "XAF", "XOF", "XPF", "IDR"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
PRICE_PLACES = 4


def minor_units(currency: str) -> int:
    """Decimal places of `currency`'s minor unit (2 when unknown or empty)."""
    return _MINOR_UNITS.get((currency or "").upper(), 2)


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(value).quantize(MONEY_QUANTUM)
    except (InvalidOperation, TypeError, ValueError):
        return None


def _written(amount: Decimal, places: int) -> str:
    amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if amount == 0:
        amount = abs(amount)  # never "-0.00"
    return f"{amount:,.{places}f}"


def format_total(value, currency: str = "") -> str:
    """A total in `currency`'s minor units with thousands separators; "—" for none."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    text = _written(amount, minor_units(currency))
    return f"{text} {currency}" if currency else text


def format_price(value, currency: str = "", *, min_places: int = PRICE_PLACES) -> str:
    """A price or a call's cost at its own precision: `min_places` to 6 decimals; "—" for none."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    significant = -amount.normalize().as_tuple().exponent
    text = _written(amount, min(max(min_places, significant), MONEY_PLACES))
    return f"{text} {currency}" if currency else text


def format_entry(value, currency: str = "") -> str:
    """One ledger amount, exact: its own precision, at least the currency's minor units."""
    return format_price(value, currency, min_places=minor_units(currency))


def format_minutes(seconds) -> str:
    """Seconds as minutes:seconds, however many minutes (a bundle's 1000 minutes: "1,000:00")."""
    try:
        seconds = int(seconds)
    except (TypeError, ValueError):
        return "—"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes:,}:{rest:02d}"
