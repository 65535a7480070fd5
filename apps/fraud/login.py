"""Admin and portal logins: lock a user out from an address after repeated failures.

Every failed login (Django's `user_login_failed`, sent by the admin's and the portal's login
forms alike) is an AuthFailure of realm "web". Once one user has failed `min_count` times
from one address within the window of the operator's login controller, an alert of effect
LOCK_LOGIN opens for that user and address; while it is in force, `LockoutBackend` (first of
AUTHENTICATION_BACKENDS) refuses that user from that address even with the right password.
Other addresses are unaffected, so an attacker cannot lock a person out of everywhere. The
alert ends at its time or by a person's undo; failures before its end no longer count.

When the operator has no login controller at all, a default one is created on the first
failure: 10 failures of one user from one address in 15 minutes lock them out for 15
minutes. Disable it (rather than delete it) to turn the lockout off.
"""

import ipaddress
import logging
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.utils import timezone

from apps.fraud.models import Action, Alert, AuthFailure, Controller, Kind
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)

DEFAULT_NAME = "Login lockout (default)"
# Password-reset e-mails: at most this many requests per hour from one address, and for one
# e-mail address, so the form can be used neither to flood a mailbox nor to spam from us.
RESET_WINDOW = timedelta(hours=1)
RESETS_PER_SOURCE = 5
RESETS_PER_EMAIL = 3
DEFAULT_SETTINGS = {"min_count": 10, "window_minutes": 15, "block_minutes": 15, "action": Action.BLOCK}


class LockoutBackend:
    """First of AUTHENTICATION_BACKENDS: refuses (PermissionDenied) a locked-out user and address.

    It authenticates nobody itself (None lets the next backend check the password); Django
    stops at PermissionDenied and sends `user_login_failed`, which is not counted again.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None  # not a login over HTTP (a test client's login(), a command)
        username = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        if username and locked_out(str(username), client_ip(request)):
            request._smartswitch_locked_out = True
            logger.info("login of %s from %s refused: locked out", username, client_ip(request))
            raise PermissionDenied
        return None

    # No get_user: sessions name the backend that authenticated the user (ModelBackend), and
    # Client.force_login picks the first backend that has one.


def locked_out(username: str, source_ip: str, *, now: datetime | None = None) -> bool:
    """Tell whether an alert in force locks `username` out from `source_ip`."""
    now = now or timezone.now()
    return (
        Alert.objects.in_force(now)
        .filter(effect=Alert.Effect.LOCK_LOGIN, username=username[:150], source_ip=source_ip)
        .exists()
    )


def login_failed(sender, credentials, request=None, **kwargs) -> None:
    """`user_login_failed` receiver: count the failure, lock out past the threshold."""
    if request is None or getattr(request, "_smartswitch_locked_out", False):
        return
    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username")
    if not username:
        return
    record_failure(str(username), client_ip(request))


def record_failure(username: str, source_ip: str, *, now: datetime | None = None) -> Alert | None:
    """Count one failed web login; return the alert when it (now) locks the user out."""
    from apps.fraud import services

    now = now or timezone.now()
    username = username.strip()[:150]
    AuthFailure.objects.create(
        realm=AuthFailure.Realm.WEB, source_ip=source_ip, username=username, created_at=now
    )
    locking = None
    for controller in login_controllers():
        since = now - timedelta(minutes=controller.window_minutes)
        # After a lockout ends (its time, or a person's undo) the user starts afresh.
        last_end = Alert.objects.filter(
            kind=Kind.LOGIN, username=username, source_ip=source_ip, ended_at__isnull=False
        ).aggregate(last=Max("ended_at"))["last"]
        if last_end is not None and last_end > since:
            since = last_end
        failures = AuthFailure.objects.filter(
            realm=AuthFailure.Realm.WEB, username=username, source_ip=source_ip, created_at__gt=since
        ).count()
        if failures < controller.min_count:
            continue
        alert, _ = services.raise_alert(
            controller,
            services.Subject(
                text=f"login {username} from {source_ip}",
                username=username,
                source_ip=source_ip,
                reseller_id=_reseller_of(username),
            ),
            effect=Alert.Effect.LOCK_LOGIN,
            measured=failures,
            threshold=controller.min_count,
            attempts=failures,
            detail=f"{failures} failed logins of {username} from {source_ip} within "
            f"{controller.window_minutes} minutes.",
            now=now,
        )
        if alert.effect == Alert.Effect.LOCK_LOGIN:
            locking = alert
    return locking


def login_controllers() -> list[Controller]:
    """The operator's enabled login controllers; the default one if the operator has none."""
    controllers = list(Controller.objects.filter(kind=Kind.LOGIN, reseller__isnull=True))
    if not controllers:
        controllers = [default_controller()]
    return [controller for controller in controllers if controller.enabled]


def default_controller() -> Controller:
    """The built-in login controller, created the first time it is needed (no migration)."""
    from apps.fraud import rules

    existing = Controller.objects.filter(name=DEFAULT_NAME, reseller__isnull=True).first()
    if existing is not None:
        return existing
    # Two first failures at once may both create it (NULL owners never collide in the unique
    # index): harmless, each counts the same failures and the alerts share one key per rule.
    return rules.create_controller(
        actor=Scope.system(), name=DEFAULT_NAME, kind=Kind.LOGIN, **DEFAULT_SETTINGS
    )


def client_ip(request) -> str:
    """The address a login came from: REMOTE_ADDR, or behind the local TLS proxy (a loopback
    REMOTE_ADDR) the address that proxy appended last to X-Forwarded-For."""
    remote = _address(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"  # noqa: S104 - an address, not a bind
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and ipaddress.ip_address(remote).is_loopback:
        return _address(forwarded.split(",")[-1]) or remote
    return remote


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _reseller_of(username: str) -> int | None:
    """The reseller whose staff may see and undo this user's lockout (None: the operator's)."""
    from apps.tenancy.models import Membership

    field = get_user_model().USERNAME_FIELD
    membership = Membership.objects.filter(**{f"user__{field}": username}).select_related("peer").first()
    if membership is None:
        return None
    return membership.reseller_id or (membership.peer.reseller_id if membership.peer_id else None)


def reset_allowed(email: str, source_ip: str, *, now: datetime | None = None) -> bool:
    """Count a request for a password-reset e-mail; False when this address or this e-mail
    asked too often within the hour (the refused requests count too)."""
    now = now or timezone.now()
    email = email.strip().lower()[:150]
    recent = AuthFailure.objects.filter(realm=AuthFailure.Realm.RESET, created_at__gte=now - RESET_WINDOW)
    allowed = (
        recent.filter(source_ip=source_ip).count() < RESETS_PER_SOURCE
        and recent.filter(username=email).count() < RESETS_PER_EMAIL
    )
    AuthFailure.objects.create(
        realm=AuthFailure.Realm.RESET, source_ip=source_ip, username=email, created_at=now
    )
    if not allowed:
        logger.warning("password reset for %s from %s refused: too many requests", email, source_ip)
    return allowed
