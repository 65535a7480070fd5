"""Admin and portal logins: lock a user out from an address after repeated failures."""


class LockoutBackend:
    """First of AUTHENTICATION_BACKENDS: refuses (PermissionDenied) a locked-out user and address."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        return None  # apps.fraud helper H1 writes the check

    def get_user(self, user_id):
        return None
