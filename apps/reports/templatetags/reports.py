"""`{% load reports %}`: a report line's cell, money by the one rule (apps.core.formatting)."""

from django import template

from apps.core.formatting import format_total

register = template.Library()


@register.simple_tag
def cell(line, name: str) -> str:
    """`{% cell line "revenue" %}`: totals in their currency's minor units; "—" for none."""
    value = getattr(line, name)
    if name == "cost":
        return format_total(value, line.cost_currency)
    if name in ("revenue", "profit"):
        return format_total(value, line.currency)
    if value is None:
        return "—"
    return f"{value:,}"
