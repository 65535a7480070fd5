"""Building blocks shared by every domain app."""

import re

from django.core.validators import RegexValidator
from django.db import models

from apps.core.money import MONEY_DIGITS, MONEY_PLACES

currency_validator = RegexValidator(
    re.compile(r"^[A-Z]{3}$"), "Use a three-letter ISO 4217 code such as USD or EUR."
)
digits_validator = RegexValidator(re.compile(r"^[0-9]+$"), "Use digits only.")


def name_taken(obj, *, owner_field: str = "reseller") -> bool:
    """Tell whether another row of `obj`'s owner already uses its name.

    A unique (owner, name) index does not stop two operator-owned rows (owner NULL) from
    sharing a name, and its error names no field; clean() calls this instead.
    """
    owner_id = getattr(obj, f"{owner_field}_id")
    same = type(obj)._default_manager.filter(**{owner_field: owner_id, "name": obj.name})
    return bool(obj.name) and same.exclude(pk=obj.pk).exists()


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
