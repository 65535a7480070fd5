"""The only write path for resellers, their staff, customer logins and API keys."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import InternalError, OperationalError
from django.utils import timezone

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import is_conflict, retry_on_conflict
from apps.core.errors import DomainError, NotAllowed
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.tenancy.models import ApiKey, Membership, Reseller
from apps.tenancy.scope import Scope

User = get_user_model()


@retry_on_conflict
def create_reseller(*, actor: Scope, name: str, currency: str = "USD", **fields) -> Reseller:
    """Create a reseller (operator only)."""
    ensure_manages(actor, None)
    reseller = apply_changes(
        Reseller(name=name, currency=currency), fields, allowed=("company", "email", "routing_plan_id")
    )
    save_object(reseller, actor=actor, action="reseller.created")
    announce("tenancy.Reseller", [reseller.pk])
    return reseller


@retry_on_conflict
def update_reseller(reseller: Reseller, *, actor: Scope, changes: dict) -> Reseller:
    """Change a reseller's details; deactivating it locks out its staff, customers and keys."""
    ensure_manages(actor, None)
    current = Reseller.objects.select_for_update().get(pk=reseller.pk)
    apply_changes(
        current,
        changes,
        allowed=(
            "name",
            "company",
            "currency",
            "email",
            "is_active",
            "routing_plan_id",
            "daily_spend_limit",
            "monthly_spend_limit",
        ),
    )
    save_object(current, actor=actor, action="reseller.changed")
    announce("tenancy.Reseller", [current.pk], fields=changes)
    return current


def _create_login(*, username: str, password: str, email: str, is_staff: bool):
    if User.objects.filter(username=username).exists():
        raise DomainError("That login name is taken.", field="username")
    user = User(username=username, email=email, is_staff=is_staff)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save()
    return user


@retry_on_conflict
def add_reseller_staff(
    reseller: Reseller, *, actor: Scope, username: str, password: str, email: str = ""
) -> Membership:
    """Create an admin login that sees and manages only `reseller`'s objects."""
    ensure_manages(actor, reseller.pk)
    user = _create_login(username=username, password=password, email=email, is_staff=True)
    membership = Membership.objects.create(user=user, reseller=reseller)
    audit.record(actor, "reseller.staff_added", reseller, username=username)
    return membership


@retry_on_conflict
def add_customer_login(peer, *, actor: Scope, username: str, password: str, email: str = "") -> Membership:
    """Create a self-care portal login for customer `peer`."""
    ensure_manages(actor, peer.reseller_id)
    if not peer.is_customer:
        raise DomainError("Only customers have portal logins.", field="peer")
    user = _create_login(username=username, password=password, email=email, is_staff=False)
    membership = Membership.objects.create(user=user, peer=peer)
    audit.record(actor, "peer.login_added", peer, username=username)
    return membership


def _ensure_issues(actor: Scope, *, scope: str, reseller: Reseller | None, peer) -> None:
    """Refuse a key `actor` may not issue: a customer issues only its own customer keys."""
    if actor.is_customer:
        if scope != ApiKey.Scope.CUSTOMER or reseller is not None or peer is None or peer.pk != actor.peer_id:
            raise NotAllowed("A customer issues API keys for itself only.")
        return
    if scope == ApiKey.Scope.OPERATOR and not actor.is_operator:
        raise NotAllowed("Only the operator issues operator keys.")
    owner = reseller.pk if reseller else (peer.reseller_id if peer else None)
    if scope != ApiKey.Scope.OPERATOR:
        ensure_manages(actor, owner)


@retry_on_conflict
def create_api_key(
    *,
    actor: Scope,
    name: str,
    scope: str,
    reseller: Reseller | None = None,
    peer=None,
    access: str = ApiKey.Access.READ_WRITE,
) -> tuple[ApiKey, str]:
    """Issue an API key; returns the key and its token, which is shown once and never stored.

    `access` "read" makes a key that can only read (the API refuses it any write)."""
    _ensure_issues(actor, scope=scope, reseller=reseller, peer=peer)
    token = ApiKey.new_token()
    key = ApiKey(
        name=name,
        scope=scope,
        access=access,
        reseller=reseller,
        peer=peer,
        lookup=token[len(ApiKey.PREFIX) :][:8],
        digest=ApiKey.digest_of(token),
        created_by=actor.user,
    )
    save_object(key, actor=actor, action="apikey.created")
    return key, token


@retry_on_conflict
def revoke_api_key(key: ApiKey, *, actor: Scope) -> ApiKey:
    """Stop a key from authenticating, at once and for good."""
    # A customer revokes its own keys (the portal); anyone else's owner decides for theirs.
    if not (actor.is_customer and key.peer_id is not None and key.peer_id == actor.peer_id):
        owner = key.reseller_id or (key.peer.reseller_id if key.peer_id else None)
        ensure_manages(actor, owner)
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    audit.record(actor, "apikey.revoked", key)
    return key


def set_login_language(membership: Membership, *, actor: Scope, language: str) -> Membership:
    """Remember the portal language of a login (a code of settings.LANGUAGES, or "" for the browser's)."""
    if language and language not in dict(settings.LANGUAGES):
        raise DomainError("Choose one of the portal's languages.", field="language")
    if actor.user is None or actor.user.pk != membership.user_id:
        ensure_manages(actor, membership.reseller_id or membership.peer.reseller_id)
    Membership.objects.filter(pk=membership.pk).update(language=language)
    membership.language = language
    audit.record(actor, "login.language_changed", membership, language=language)
    return membership


def authenticate_api_key(token: str) -> ApiKey | None:
    """Return the usable key for `token`, or None. One indexed lookup by digest."""
    if not token.startswith(ApiKey.PREFIX):
        return None
    key = ApiKey.objects.usable().select_related("peer").filter(digest=ApiKey.digest_of(token)).first()
    if key is None:
        return None
    now = timezone.now()
    # Touch last_used_at at most once a minute: a write per request would be a Galera
    # write-set per API call.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        try:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        except (OperationalError, InternalError) as exc:
            # Two nodes stamping the same key at once: the other stamp is as good as ours,
            # and a request must not fail over a timestamp.
            if not is_conflict(exc):
                raise
    return key
