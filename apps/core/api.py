"""What every API viewset shares: scoping, and one mapping of domain errors to HTTP."""

from datetime import UTC, datetime, timedelta

import django_filters
from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.backends.base.operations import BaseDatabaseOperations
from django.http import Http404
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

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


def exception_handler(exc, context):
    """Map domain and model validation errors to 400/403/409 with the field named."""
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
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
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


class ModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose integer limits are the same on every database we support."""

    # Django derives an integer field's limits from the connected backend (SQLite: 64 bits,
    # MariaDB: unsigned), so the same API would accept different numbers, and publish a
    # different schema, on each. The portable ranges are the strictest (PostgreSQL's).
    def build_standard_field(self, field_name, model_field):
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        portable = BaseDatabaseOperations.integer_field_ranges.get(model_field.get_internal_type())
        if portable is not None and not kwargs.get("read_only"):
            declared = model_field._validators
            kwargs["min_value"] = max(
                [portable[0]] + [v.limit_value for v in declared if isinstance(v, MinValueValidator)]
            )
            kwargs["max_value"] = min(
                [portable[1]] + [v.limit_value for v in declared if isinstance(v, MaxValueValidator)]
            )
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

    return queryset


__all__ = [
    "CreateOnlyFieldsMixin",
    "Http404",
    "ModelSerializer",
    "ScopedModelViewSet",
    "ScopedReadOnlyViewSet",
    "ScopedRelatedField",
    "ScopedViewSetMixin",
    "StableOrderingFilter",
    "model_changes",
    "request_scope",
    "visible",
]
