"""Bounds on what an API request may carry: page size, query-string integers, JSON nesting.

Separate from apps.core.api because DRF's settings name these classes (pagination, parser,
filter backend) and import them while rest_framework.views is still loading: this module must
not import views, generics or viewsets. apps.core.api re-exports everything here.
"""

import codecs
import json
import re

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations
from django_filters import rest_framework as drf_filters
from django_filters.conf import settings as filter_settings
from django_filters.fields import ModelChoiceField
from django_filters.filterset import remote_queryset
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework import pagination, parsers, serializers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings

# --- Integers: the same limits on every database ------------------------------------------------

# Django derives an integer column's limits from the connected backend (SQLite: 64 bits,
# MariaDB: unsigned), so the same API would accept different numbers, and publish a different
# schema, on each. The portable ranges are the strictest (PostgreSQL's).
PORTABLE_INTEGER_RANGES = BaseDatabaseOperations.integer_field_ranges
BIGINT_MAX = PORTABLE_INTEGER_RANGES["BigIntegerField"][1]


def integer_range(model_field) -> tuple[int, int] | None:
    """The values an integer model field takes on every database, narrowed by its validators."""
    portable = PORTABLE_INTEGER_RANGES.get(model_field.get_internal_type())
    if portable is None:
        return None
    declared = model_field._validators
    return (
        max([portable[0]] + [v.limit_value for v in declared if isinstance(v, MinValueValidator)]),
        min([portable[1]] + [v.limit_value for v in declared if isinstance(v, MaxValueValidator)]),
    )


def _integer_schema(minimum: int, maximum: int, description: str | None) -> dict:
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if description:
        schema["description"] = description
    return schema


class IntegerFilter(django_filters.NumberFilter):
    """A whole number from `minimum` to `maximum`; anything else is a 400 naming the filter.

    django-filter's NumberFilter reads a decimal up to 10^50 and leaves the range to the
    database, which refuses it (PostgreSQL), overflows (SQLite) or answers nothing.
    """

    field_class = forms.IntegerField

    def __init__(self, *args, minimum: int, maximum: int, **kwargs):
        super().__init__(*args, min_value=minimum, max_value=maximum, **kwargs)
        extend_schema_field(_integer_schema(minimum, maximum, kwargs.get("label")))(self)

    def get_max_validator(self):
        return None


class IdChoiceField(ModelChoiceField):
    """An object's id: a whole number the id column can hold, then an object the scope may see."""

    def __init__(self, *args, id_range: tuple[int, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.number = forms.IntegerField(min_value=id_range[0], max_value=id_range[1])

    def to_python(self, value):
        if value in self.empty_values or (self.null_label is not None and value == self.null_value):
            return super().to_python(value)
        return super().to_python(self.number.clean(value))


class IdFilter(django_filters.ModelChoiceFilter):
    """A ModelChoiceFilter whose value is checked to be an id before the database is asked.

    `model` is needed only when `queryset` is a plain callable (visible() tells its own).
    """

    field_class = IdChoiceField

    def __init__(self, *args, queryset, model=None, **kwargs):
        model = model or queryset.model
        low, high = integer_range(model._meta.pk)
        id_range = (max(low, 1), high)
        super().__init__(*args, queryset=queryset, id_range=id_range, **kwargs)
        extend_schema_field(_integer_schema(*id_range, kwargs.get("label")))(self)


class TrueOrFalseField(forms.Field):
    """`true` or `false` (also 1 and 0, any case); empty means no filter, anything else a 400."""

    VALUES = {"true": True, "false": False, "1": True, "0": False}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return self.VALUES[str(value).lower()]
        except KeyError:
            raise DjangoValidationError("Give true or false.", code="invalid") from None


class BooleanFilter(django_filters.BooleanFilter):
    """django-filter's BooleanFilter reads an unknown value ("yes", "-1") as no filter at all:
    the client gets every row and believes it got the filtered ones. This one refuses it."""

    field_class = TrueOrFalseField


def _bounded_integer_filter(model_field) -> dict:
    minimum, maximum = integer_range(model_field)
    return {"minimum": minimum, "maximum": maximum}


def _id_filter(model_field) -> dict:
    return {
        "queryset": remote_queryset(model_field),
        "to_field_name": model_field.remote_field.field_name,
        "null_label": filter_settings.NULL_CHOICE_LABEL if model_field.null else None,
    }


class FilterSet(drf_filters.FilterSet):
    """The base of every filterset: integers and ids bounded, booleans strict, also those that
    Meta.fields names."""

    FILTER_DEFAULTS = {
        **drf_filters.FilterSet.FILTER_DEFAULTS,
        models.BooleanField: {"filter_class": BooleanFilter},
        models.NullBooleanField: {"filter_class": BooleanFilter},
        **{
            field_class: {"filter_class": IntegerFilter, "extra": _bounded_integer_filter}
            for field_class in (
                models.AutoField,
                models.BigAutoField,
                models.SmallAutoField,
                models.IntegerField,
                models.BigIntegerField,
                models.SmallIntegerField,
                models.PositiveIntegerField,
                models.PositiveBigIntegerField,
                models.PositiveSmallIntegerField,
            )
        },
        models.ForeignKey: {"filter_class": IdFilter, "extra": _id_filter},
        models.OneToOneField: {"filter_class": IdFilter, "extra": _id_filter},
    }


class FilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend whose filtersets from `filterset_fields` are bounded like the others."""

    filterset_base = FilterSet


def query_integer(request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A whole number from the query string; outside [minimum, maximum] a 400 naming it."""
    value = request.query_params.get(name, "")
    if value == "":
        return default
    try:
        return forms.IntegerField(min_value=minimum, max_value=maximum).clean(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({name: exc.messages}) from None


class Pagination(pagination.LimitOffsetPagination):
    """`?limit=&offset=` pages of at most API_MAX_PAGE_SIZE rows; a wrong value is a 400.

    DRF's own falls back to the default page on a limit it cannot read and hands an offset of
    any size to the database.
    """

    @property
    def max_limit(self) -> int:
        return settings.API_MAX_PAGE_SIZE

    def get_limit(self, request):
        default = min(self.default_limit, self.max_limit)
        return query_integer(
            request, self.limit_query_param, default=default, minimum=1, maximum=self.max_limit
        )

    def get_offset(self, request):
        # An offset past the last row is an empty page without a query (DRF compares it with
        # the count first), so any 64-bit offset is safe.
        return query_integer(request, self.offset_query_param, default=0, minimum=0, maximum=BIGINT_MAX)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        ranges = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, BIGINT_MAX)}
        for parameter in parameters:
            minimum, maximum = ranges[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": minimum, "maximum": maximum}
        return parameters


# --- JSON bodies ---------------------------------------------------------------------------------

MAX_JSON_DEPTH = 32

# A string (escapes included), or one bracket outside strings. An unterminated string is no
# match, so its brackets count: the body is refused either way.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class JSONTooDeep(ValueError):
    pass


def check_json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise JSONTooDeep if `text` nests arrays and objects deeper than `limit`.

    Python's json recurses once per level and dies of RecursionError (a 500) near 1,000
    levels; counting brackets first costs one regular-expression pass and no recursion.
    """
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        found = match[0]
        if found in ("[", "{"):
            depth += 1
            if depth > limit:
                raise JSONTooDeep(f"nested deeper than {limit} levels")
        elif found in ("]", "}"):
            depth -= 1


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def loads(body: bytes | str, *, limit: int = MAX_JSON_DEPTH):
    """json.loads for a request body: nesting bounded, NaN and Infinity refused.

    ValueError (JSONTooDeep, json.JSONDecodeError, UnicodeDecodeError) on anything else.
    """
    # json.loads would guess UTF-16 and UTF-32 from the first bytes too; so does this.
    text = body.decode(json.detect_encoding(body), "surrogatepass") if isinstance(body, bytes) else body
    check_json_depth(text, limit)
    return json.loads(text, parse_constant=_refuse_constant)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the nesting of `loads`: a deep body is a 400, not a RecursionError."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(stream.read(), encoding)
            check_json_depth(text)
            parse_constant = _refuse_constant if api_settings.STRICT_JSON else None
            return json.loads(text, parse_constant=parse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}.") from None
