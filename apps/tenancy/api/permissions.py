from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.tenancy.models import ApiKey
from apps.tenancy.scope import request_scope


class HasScope(BasePermission):
    """Authenticated as the operator, a reseller or a customer (by key or by login).

    Every tenant endpoint of the API lists this permission, so a read-only key's refusal of
    writes lives here once, whatever other permission a view adds.
    """

    message = "Authenticate with an API key or a login that belongs to a tenant."

    def has_permission(self, request, view):
        key = request.auth
        if (
            isinstance(key, ApiKey)
            and key.access == ApiKey.Access.READ
            and request.method not in SAFE_METHODS
        ):
            raise PermissionDenied("This API key can only read.")
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
