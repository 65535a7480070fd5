from rest_framework.permissions import BasePermission

from apps.tenancy.scope import request_scope


class HasScope(BasePermission):
    """Authenticated as the operator, a reseller or a customer (by key or by login)."""

    message = "Authenticate with an API key or a login that belongs to a tenant."

    def has_permission(self, request, view):
        return request_scope(request).kind != "nobody"


class OperatorOnly(BasePermission):
    message = "Only the operator can use this endpoint."

    def has_permission(self, request, view):
        return request_scope(request).is_operator


class ReadOnlyForCustomers(BasePermission):
    """Customers read; the operator and resellers also write (through services)."""

    def has_permission(self, request, view):
        scope = request_scope(request)
        return request.method in ("GET", "HEAD", "OPTIONS") or scope.is_operator or scope.is_reseller
