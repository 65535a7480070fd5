"""`{% load money %}`: the one way templates write amounts (apps.core.formatting)."""

from django import template

from apps.core.formatting import format_entry, format_price, format_total

register = template.Library()


@register.filter
def total(value, currency: str = "") -> str:
    """`{{ account.balance|total:account.currency }}` → "1,234.50 USD"."""
    return format_total(value, currency)


@register.filter
def price(value, currency: str = "") -> str:
    """`{{ rate.price|price:currency }}` or a call's cost → "0.0125 USD"."""
    return format_price(value, currency)


@register.filter
def entry(value, currency: str = "") -> str:
    """One ledger amount, exact: `{{ entry.amount|entry:currency }}` → "100.00 USD", "0.00045 USD"."""
    return format_entry(value, currency)
