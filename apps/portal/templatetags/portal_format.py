"""How the portal writes amounts (apps.core.formatting's rule), durations and SIP codes."""

from django import template
from django.urls import reverse

from apps.core.formatting import format_minutes, format_price, format_total
from apps.portal.nav import MENU

register = template.Library()


@register.filter
def money(value, currency: str = "") -> str:
    """A total (balance, limit, sum): `{{ amount|money:currency }}` → "1,234.50 USD"; none → "—"."""
    return format_total(value, currency)


@register.filter
def cost(value, currency: str = "") -> str:
    """A price or one call's cost at its own precision, four places at least: "0.0120 USD"."""
    return format_price(value, currency)


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


@register.inclusion_tag("portal/_nav.html")
def portal_nav(current: str = ""):
    """The main menu, `current` marked: `{% portal_nav nav %}`."""
    return {
        "items": [
            {"key": key, "url": reverse(name), "label": label, "current": key == current}
            for key, name, label in MENU
        ]
    }


@register.filter
def minutes(seconds) -> str:
    """Seconds of a bundle as minutes:seconds, however many minutes: 90 → "1:30"."""
    return format_minutes(seconds)


@register.filter
def bundle_amount(usage, which: str) -> str:
    """What a bundle's period includes, used or has left, as its bundle counts: minutes:seconds
    or money. `{{ usage|bundle_amount:"left" }}`."""
    from apps.bundles import periods

    return {"included": periods.included, "used": periods.used, "left": periods.left}[which](usage)
