"""Building blocks shared by every domain app."""

import re

from django.core.validators import RegexValidator
from django.db import models

from apps.core.money import MONEY_DIGITS, MONEY_PLACES

currency_validator = RegexValidator(
    re.compile(r"^[A-Z]{3}$"), "Use a three-letter ISO 4217 code such as USD or EUR."
)
digits_validator = RegexValidator(re.compile(r"^[0-9]+$"), "Use digits only.")


class MoneyField(models.DecimalField):
    """A Decimal amount at the product's money precision."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MONEY_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "apps.core.models.MoneyField", args, kwargs


class CurrencyField(models.CharField):
    """An ISO 4217 currency code."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 3)
        kwargs.setdefault("validators", [currency_validator])
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        kwargs.pop("validators", None)
        return name, "apps.core.models.CurrencyField", args, kwargs


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
