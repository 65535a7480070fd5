"""How amounts, durations and SIP codes are written."""

from decimal import Decimal

import pytest

from apps.portal.templatetags.portal_format import cost, duration, money, sip_class


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("42.500000"), "USD", "42.50 USD"),
        (Decimal("0.012000"), "EUR", "0.01 EUR"),
        (Decimal("0.000450"), "USD", "0.00 USD"),
        (Decimal("1234.5"), "JPY", "1,234 JPY"),
        (Decimal("1234.5"), "BHD", "1,234.500 BHD"),
        (Decimal("0.005"), "USD", "0.00 USD"),
        (Decimal("0.015"), "USD", "0.02 USD"),
        (Decimal("0.0000004"), "USD", "0.00 USD"),
        (Decimal("-20.250000"), "USD", "-20.25 USD"),
        (Decimal("1234567.8"), "GBP", "1,234,567.80 GBP"),
        (Decimal("0E-6"), "USD", "0.00 USD"),
        (Decimal("-0.000000"), "USD", "0.00 USD"),
        (Decimal("100"), "", "100.00"),
        (None, "USD", "—"),
    ],
)
def test_totals_in_minor_units(amount, currency, text):
    assert money(amount, currency) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0.012000"), "0.0120 USD"),
        (Decimal("0.000450"), "0.00045 USD"),
        (Decimal("1.5"), "1.5000 USD"),
        (None, "—"),
    ],
)
def test_call_cost_keeps_four_decimals(amount, text):
    assert cost(amount, "USD") == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0:00"),
        (499, "0:00"),
        (500, "0:01"),
        (60_000, "1:00"),
        (3_599_400, "59:59"),
        (3_725_000, "1:02:05"),
    ],
)
def test_duration(ms, text):
    assert duration(ms) == text


@pytest.mark.parametrize(
    ("code", "css"),
    [
        (200, "sip-answered"),
        (486, "sip-unanswered"),
        (487, "sip-unanswered"),
        (404, "sip-failed"),
        (503, "sip-failed"),
        (None, "sip-other"),
    ],
)
def test_sip_class(code, css):
    assert sip_class(code) == css
