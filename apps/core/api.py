"""What every API viewset shares: scoping, and one mapping of domain errors to HTTP."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import DomainError
from apps.tenancy.scope import request_scope


def exception_handler(exc, context):
    """Map domain and model validation errors to 400/403/409 with the field named."""
    if isinstance(exc, DomainError):
        body = {exc.field or "detail": [exc.message]}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class ScopedViewSetMixin:
    """Lists and details only what the request's scope may see; others' objects are 404."""

    queryset = None

    def get_queryset(self):
        return self.queryset.visible_to(request_scope(self.request))

    @property
    def scope(self) -> Scope:
        return request_scope(self.request)


class ScopedReadOnlyViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key whose choices are limited to what the request's scope may see.

    Naming someone else's object reads as "does not exist", like a 404.
    """

    def get_queryset(self):
        return super().get_queryset().visible_to(request_scope(self.context["request"]))


__all__ = ["Http404", "ScopedReadOnlyViewSet", "ScopedRelatedField", "ScopedViewSetMixin", "request_scope"]
