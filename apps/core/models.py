"""Building blocks shared by every domain app."""

import re
from decimal import ROUND_HALF_UP, Context, Decimal

from django.core.validators import RegexValidator
from django.db import DataError, models
from django.db import connection as db_connection

from apps.core.money import MONEY_DIGITS, MONEY_PLACES, MONEY_QUANTUM, STORAGE_LIMIT

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
    """A Decimal amount at the product's money precision, stored exactly on every database.

    MariaDB and PostgreSQL keep DECIMAL(20, 6). SQLite has no exact decimal type: Django's
    DecimalField gets NUMERIC affinity there and comes back through REAL, so 9999999999.999999
    reads back as 10000000000.000000 and SUM() adds floats. On SQLite a MoneyField is
    therefore an INTEGER count of micro-units (10^-6): exact, compared and ordered as a
    number, and SUM() over it is exact integer arithmetic (it raises on int64 overflow rather
    than rounding). int64 holds +-9.2 * 10^12, nine times the largest balance the product
    accepts (apps.core.money). The internal type is the field's own, so that SQLite's
    decimal converter (15 significant digits, then a quantize that raises past 20 digits)
    never sees these values; raw SQL goes through money_to_db() and money_from_db().
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MONEY_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "apps.core.models.MoneyField", args, kwargs

    def get_internal_type(self) -> str:
        return "MoneyField"

    def db_type(self, connection):
        if connection.vendor == "sqlite":
            return "integer"
        return connection.data_types["DecimalField"] % self.db_type_parameters(connection)

    def cast_db_type(self, connection):
        if connection.vendor == "sqlite":
            return "integer"
        template = connection.ops.cast_data_types.get("DecimalField")
        return template % self.db_type_parameters(connection) if template else self.db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if connection.vendor != "sqlite":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        if value is None or hasattr(value, "as_sql"):
            return value
        return to_micro_units(value)

    def get_db_prep_save(self, value, connection):
        prepared = super().get_db_prep_save(value, connection)
        # DECIMAL(20, 6) refuses these on the other databases; so does SQLite.
        if isinstance(prepared, float) and not abs(prepared) < _STORAGE_MICRO:
            raise DataError(f"{value} is out of range for a money column (|x| < {STORAGE_LIMIT:,}).")
        return prepared

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if connection.vendor == "sqlite":
            return from_micro_units(value)
        return value if isinstance(value, Decimal) else Decimal(str(value))


_INT64 = 2**63
_STORAGE_MICRO = float(STORAGE_LIMIT.scaleb(MONEY_PLACES))
_WIDE = Context(prec=60, rounding=ROUND_HALF_UP, Emax=999, Emin=-999)


def to_micro_units(value) -> int | float:
    """A money value as SQLite stores it: an int of micro-units.

    Past int64 (|x| > 9.2 * 10^12, beyond every bound of the product) only a REAL can hold
    it: such values come from rows written before these bounds existed, and from the
    operator's adjustment that cancels one; they are kept, inexactly, rather than refused.
    """
    if isinstance(value, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    micro = (
        Decimal(value)
        .scaleb(MONEY_PLACES, context=_WIDE)
        .to_integral_value(rounding=ROUND_HALF_UP, context=_WIDE)
    )
    if -_INT64 <= micro < _INT64:
        return int(micro)
    return float(micro)


def from_micro_units(value) -> Decimal:
    """A SQLite money column's value (micro-units) as a Decimal at six places.

    Integers are exact. A REAL (a row from before the column held integers, or raw SQL) is
    read as exactly as it is stored; nothing stored can make this raise.
    """
    if isinstance(value, int):
        return Decimal(value).scaleb(-MONEY_PLACES)
    number = Decimal(value) if isinstance(value, float) else Decimal(str(value).strip())
    return number.scaleb(-MONEY_PLACES, context=_WIDE).quantize(MONEY_QUANTUM, context=_WIDE)


_MONEY = MoneyField()


def money_to_db(value, connection=None):
    """`value` as a raw SQL parameter for a MoneyField column: what the ORM itself would send."""
    return _MONEY.get_db_prep_save(value, connection or db_connection)


def money_from_db(value, connection=None) -> Decimal | None:
    """A MoneyField column read by raw SQL, as the ORM would return it."""
    return _MONEY.from_db_value(value, None, connection or db_connection)


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
