"""How the portal writes amounts, durations and SIP codes."""

from decimal import Decimal, InvalidOperation

from django import template

from apps.core.money import MONEY_PLACES, MONEY_QUANTUM

register = template.Library()


def format_amount(value, *, min_places: int = 2) -> str:
    """Write `value` with thousands separators and `min_places` to 6 decimals.

    Call costs are often fractions of a cent (0.00045); rounding them to cents would show
    0.00 for a call that was charged, so digits past `min_places` stay while they count.
    """
    try:
        amount = Decimal(value).quantize(MONEY_QUANTUM)
    except (InvalidOperation, TypeError, ValueError):
        return ""
    significant = -amount.normalize().as_tuple().exponent
    places = min(max(min_places, significant), MONEY_PLACES)
    amount = amount.quantize(Decimal(1).scaleb(-places))
    if amount == 0:
        amount = abs(amount)  # never "-0.00"
    return f"{amount:,.{places}f}"


@register.filter
def money(value, currency: str = "") -> str:
    """`{{ amount|money:currency }}` → "1,234.50 USD"; empty amounts print an em dash."""
    if value is None or value == "":
        return "—"
    text = format_amount(value)
    return f"{text} {currency}" if currency else text


@register.filter
def cost(value, currency: str = "") -> str:
    """`{{ cdr.sell_cost|cost:currency }}` → "0.0120 USD": four decimals at least, so a column lines up."""
    if value is None or value == "":
        return "—"
    text = format_amount(value, min_places=4)
    return f"{text} {currency}" if currency else text


@register.filter
def duration(milliseconds) -> str:
    """Answered time as m:ss or h:mm:ss, to the nearest second."""
    try:
        seconds = (int(milliseconds) + 500) // 1000
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@register.filter
def sip_class(code) -> str:
    """A CSS class for a final SIP code: answered, busy or no answer, or failed."""
    try:
        code = int(code)
    except (TypeError, ValueError):
        return "sip-other"
    if 200 <= code < 300:
        return "sip-answered"
    if code in (486, 480, 487, 600, 603):
        return "sip-unanswered"
    return "sip-failed"
