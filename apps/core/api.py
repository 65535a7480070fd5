"""What every API viewset shares: scoping, bounded inputs (page size, query-string integers,
JSON nesting), and one mapping of domain and database errors to HTTP."""

import decimal
import logging
import re
from datetime import UTC, datetime, timedelta

import django_filters
from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import DataError
from django.http import Http404
from django_filters.fields import IsoDateTimeField
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from apps.core.api_limits import (
    MAX_JSON_DEPTH,
    BooleanFilter,
    FilterBackend,
    FilterSet,
    IdFilter,
    IntegerFilter,
    JSONParser,
    Pagination,
    integer_range,
    loads,
)
from apps.core.errors import DomainError
from apps.tenancy.api.permissions import HasScope, ReadOnlyForCustomers
from apps.tenancy.scope import Scope, request_scope


class MomentField(IsoDateTimeField):
    """An ISO 8601 moment within years 1970 to 9998; anything else is a 400 naming the filter."""

    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(9998, 12, 31, tzinfo=UTC)

    def to_python(self, value):
        try:
            moment = super().to_python(value)
        except (OverflowError, ValueError):
            # Year 1 with a positive UTC offset falls before year 1 in UTC: Python overflows.
            moment = self.LATEST + timedelta(days=1)
        if moment is not None and not self.EARLIEST <= moment <= self.LATEST:
            raise DjangoValidationError("Give a moment between 1970 and 9998, e.g. 2026-11-25T10:00:00Z.")
        return moment


class MomentFilter(django_filters.IsoDateTimeFilter):
    field_class = MomentField


# --- Errors --------------------------------------------------------------------------------------

logger = logging.getLogger(__name__)

# MariaDB names the column: 1264 "Out of range value for column 'x' at row 1", 1406 "Data too
# long for column 'x' at row 1". PostgreSQL's "numeric field overflow" names none.
_COLUMN = re.compile(r"(Out of range value|Data too long) for column [`'\"]?([^`'\" ]+)")
OUT_OF_RANGE = "This value is out of the range the database can store."
TOO_LONG = "This value is longer than the database can store."


def _range_error_body(exc) -> dict:
    match = _COLUMN.search(str(exc))
    if match is None:
        return {api_settings.NON_FIELD_ERRORS_KEY: ["A value is out of the range the database can store."]}
    column = match[2].rsplit(".", 1)[-1]
    # A foreign key's column is its attname ("peer_id"); the API names the field ("peer").
    field = column.removesuffix("_id") if column.endswith("_id") else column
    return {field: [TOO_LONG if match[1].startswith("Data too long") else OUT_OF_RANGE]}


def exception_handler(exc, context):
    """Map domain, model validation and database range errors to 400/403/409, the field named."""
    if isinstance(exc, DataError | decimal.InvalidOperation):
        # A number the serializers let through but a column cannot hold (a balance that a
        # payment would overflow), or one read back that no longer fits its Decimal
        # (InvalidOperation from the backend's converter): the request's fault, not ours.
        # Logged, because a bound is missing somewhere before the database.
        logger.warning("database range error answered as 400: %s", exc, exc_info=exc)
        set_rollback()
        return Response(_range_error_body(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DomainError):
        body = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            # Model.clean() names errors that concern no single field "__all__"; DRF clients
            # know that key as "non_field_errors".
            body = {
                (api_settings.NON_FIELD_ERRORS_KEY if name == NON_FIELD_ERRORS else name): messages
                for name, messages in exc.message_dict.items()
            }
        else:
            body = {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class ErrorSerializer(serializers.Serializer):
    """A refusal that concerns no single field."""

    detail = serializers.CharField()


class ValidationErrorsSerializer(serializers.Serializer):
    """What was refused, by the name of the field or query parameter at fault."""


class ValidationErrorsSchema(OpenApiSerializerExtension):
    target_class = ValidationErrorsSerializer

    def map_serializer(self, auto_schema, direction):
        return {
            "type": "object",
            "description": "Each key names a body field or query parameter with its messages (an "
            "object for a nested field); `non_field_errors` holds what concerns no single field, "
            "`detail` a body that could not be read.",
            "additionalProperties": {},
            "example": {"limit": ["Ensure this value is less than or equal to 1000."]},
        }


class RefusalSerializer(serializers.Serializer):
    """Not for this key: why, in `detail` or by the name of the field at fault."""


class RefusalSchema(OpenApiSerializerExtension):
    target_class = RefusalSerializer

    def map_serializer(self, auto_schema, direction):
        # NotAllowed names its field when one is at fault ("Only the operator sets max_calls").
        return {
            "type": "object",
            "description": "Why the key may not do this: `detail`, or the field at fault with its messages.",
            "properties": {"detail": {"type": "string"}},
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "example": {"detail": "You do not have permission to perform this action."},
        }


ERRORS = {
    "400": OpenApiResponse(
        ValidationErrorsSerializer, description="Refused: the messages name what is wrong."
    ),
    "401": OpenApiResponse(ErrorSerializer, description="No API key, or an unknown or revoked one."),
    "403": OpenApiResponse(
        RefusalSerializer,
        description="Not for this key: customers' keys only read, and some endpoints are the operator's.",
    ),
    "404": OpenApiResponse(ErrorSerializer, description="No such object among those the key may see."),
    "415": OpenApiResponse(ErrorSerializer, description="Send JSON, a form or multipart form data."),
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, with the errors every API operation can answer documented.

    Clients (and schemathesis) otherwise meet 400s and 404s the schema never mentions. An
    operation's own @extend_schema answers for a status take precedence.
    """

    def _get_parameters(self):
        parameters = super()._get_parameters()
        if self.path.startswith("/api/"):
            for parameter in parameters:
                # Filters, ordering and paging all read `?name=` as "not given", as HTML forms
                # (DRF's browsable API among them) send every field of a filter form.
                if parameter["in"] == "query":
                    parameter["allowEmptyValue"] = True
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if not self.path.startswith("/api/"):
            return responses
        codes = ["401", "403"]
        if self.method != "GET" or self._is_list_view():
            codes.append("400")  # a body, filters or a page; a refused write or delete
        if "{" in self.path:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            codes.append("415")
        for code in sorted(codes):
            if code not in responses:
                responses[code] = self._get_response_for_code(ERRORS[code], code, direction=direction)
        return responses


class StableOrderingFilter(filters.OrderingFilter):
    """`?ordering=` with the primary key as the last key, so that pages never overlap.

    CDR times come from OpenSIPS with one-second resolution: thousands of rows can share
    one created_at, and LIMIT/OFFSET over ties is free to return a row twice or never.
    """

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        if not ordering:
            return ordering
        ordering = list(ordering)
        if not any(key.lstrip("-") in ("pk", "id") for key in ordering):
            ordering.append("-pk" if ordering[0].startswith("-") else "pk")
        return ordering


class ScopedViewSetMixin:
    """Lists and details only what the request's scope may see; others' objects are 404."""

    queryset = None
    filter_backends = [FilterBackend, StableOrderingFilter]
    # Explicit everywhere: DRF's default would allow ordering by any serialized field.
    ordering_fields: tuple[str, ...] = ()

    def get_queryset(self):
        return self.queryset.visible_to(request_scope(self.request))

    @property
    def scope(self) -> Scope:
        return request_scope(self.request)


class ScopedReadOnlyViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Lists and retrieves within the request's scope; writes are 405 for everyone."""


class ScopedModelViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Reads like ScopedReadOnlyViewSet; writes go through the service hooks below.

    Customers read only. Updates are partial (PATCH): a service takes the changed fields,
    never a whole replacement of the object.
    """

    permission_classes = [HasScope, ReadOnlyForCustomers]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create_object(self, data: dict):
        raise NotImplementedError

    def update_object(self, instance, changes: dict):
        raise NotImplementedError

    def destroy_object(self, instance) -> None:
        raise NotImplementedError

    def perform_create(self, serializer):
        serializer.instance = self.create_object(dict(serializer.validated_data))

    def perform_update(self, serializer):
        serializer.instance = self.update_object(serializer.instance, dict(serializer.validated_data))

    def perform_destroy(self, instance):
        self.destroy_object(instance)


def model_changes(model, data: dict) -> dict:
    """Serializer data as a service's keyword arguments: foreign keys by their `_id` name."""
    changes = {}
    for name, value in data.items():
        field = model._meta.get_field(name)
        if field.many_to_one or field.one_to_one:
            changes[field.attname] = value.pk if value is not None else None
        else:
            changes[name] = value
    return changes


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key whose choices are limited to what the request's scope may see.

    Naming someone else's object reads as "does not exist", like a 404.
    """

    def get_queryset(self):
        return super().get_queryset().visible_to(request_scope(self.context["request"]))


def _an_email_address(value: str) -> None:
    # A plain function: drf-spectacular reads an EmailValidator as `format: email`, which ""
    # (the blank this field allows) would then contradict.
    validate_email(value)


@extend_schema_field({"type": "string", "anyOf": [{"format": "email"}, {"maxLength": 0}]})
class EmailOrBlankField(serializers.CharField):
    """An email address, or "" where the model allows none (the schema says both)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(_an_email_address)


class ModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose integer limits are the same on every database we support."""

    def build_standard_field(self, field_name, model_field):
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        if field_class is serializers.EmailField and model_field.blank:
            field_class = EmailOrBlankField
        bounds = integer_range(model_field)
        if bounds is not None and not kwargs.get("read_only"):
            kwargs["min_value"], kwargs["max_value"] = bounds
        return field_class, kwargs


class CreateOnlyFieldsMixin:
    """Fields in Meta.create_only are set when an object is created and never changed.

    An update may repeat the current value (harmless) but not change it: that is a 400
    naming the field, rather than a change silently ignored.
    """

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if self.instance is None:
            return attrs
        errors = {}
        for name in getattr(self.Meta, "create_only", ()):
            if name in attrs and _plain(attrs.pop(name)) != _current(self.instance, name):
                errors[name] = ["This is set when the object is created and cannot be changed."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def _plain(value):
    if isinstance(value, list | tuple):
        return sorted(getattr(item, "pk", item) for item in value)
    return getattr(value, "pk", value)


_NO_VALUE = object()


def _current(instance, name):
    try:
        field = instance._meta.get_field(name)
    except FieldDoesNotExist:
        return _NO_VALUE
    if field.many_to_many and field.concrete:
        return sorted(getattr(instance, name).values_list("pk", flat=True))
    if not field.concrete:
        return _NO_VALUE
    return getattr(instance, field.attname)


def visible(model):
    """A django-filter queryset callable: the objects of `model` the request may see.

    Naming an invisible object in a filter is then the same 400 as naming a missing one,
    so filters do not reveal what exists.
    """

    def queryset(request):
        if request is None:
            return model.objects.none()
        return model.objects.visible_to(request_scope(request))

    queryset.model = model  # for IdFilter's range of ids
    return queryset


__all__ = [
    "MAX_JSON_DEPTH",
    "AutoSchema",
    "BooleanFilter",
    "CreateOnlyFieldsMixin",
    "FilterBackend",
    "FilterSet",
    "Http404",
    "IdFilter",
    "IntegerFilter",
    "JSONParser",
    "ModelSerializer",
    "Pagination",
    "RefusalSerializer",
    "ScopedModelViewSet",
    "ScopedReadOnlyViewSet",
    "ScopedRelatedField",
    "ScopedViewSetMixin",
    "StableOrderingFilter",
    "ValidationErrorsSerializer",
    "loads",
    "model_changes",
    "request_scope",
    "visible",
]
