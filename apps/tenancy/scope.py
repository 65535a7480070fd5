"""The tenant a request acts for, resolved once from a login or an API key.

Every read path filters through `visible_to(scope)`; nothing decides visibility in a
template or a view.
"""

from dataclasses import dataclass
from enum import StrEnum

from django.http import Http404


class Kind(StrEnum):
    OPERATOR = "operator"
    RESELLER = "reseller"
    CUSTOMER = "customer"
    NOBODY = "nobody"


@dataclass(frozen=True)
class Scope:
    kind: Kind
    reseller_id: int | None = None
    peer_id: int | None = None
    # Who acts, for audit entries: a user, an API key's label, or "system".
    actor: object | None = None
    label: str = "system"

    @property
    def is_operator(self) -> bool:
        return self.kind is Kind.OPERATOR

    @property
    def is_reseller(self) -> bool:
        return self.kind is Kind.RESELLER

    @property
    def is_customer(self) -> bool:
        return self.kind is Kind.CUSTOMER

    @property
    def user(self):
        from django.contrib.auth.models import AbstractBaseUser

        return self.actor if isinstance(self.actor, AbstractBaseUser) else None

    @classmethod
    def system(cls) -> "Scope":
        """The product itself (tasks, commands): sees everything."""
        return cls(Kind.OPERATOR, label="system")

    @classmethod
    def of_user(cls, user) -> "Scope":
        if user is None or not user.is_authenticated or not user.is_active:
            return cls(Kind.NOBODY, label="anonymous")
        cached = getattr(user, "_smartswitch_scope", None)
        if cached is not None:
            return cached
        if user.is_superuser:
            scope = cls(Kind.OPERATOR, actor=user, label=user.get_username())
        else:
            from apps.tenancy.models import Membership

            membership = (
                Membership.objects.filter(user=user).select_related("reseller", "peer__reseller").first()
            )
            owner = membership and (membership.reseller or membership.peer.reseller)
            if membership is None or (owner is not None and not owner.is_active):
                scope = cls(Kind.NOBODY, actor=user, label=user.get_username())
            elif membership.reseller_id:
                scope = cls(
                    Kind.RESELLER,
                    reseller_id=membership.reseller_id,
                    actor=user,
                    label=user.get_username(),
                )
            else:
                scope = cls(
                    Kind.CUSTOMER,
                    reseller_id=membership.peer.reseller_id,
                    peer_id=membership.peer_id,
                    actor=user,
                    label=user.get_username(),
                )
        user._smartswitch_scope = scope
        return scope

    @classmethod
    def of_api_key(cls, key) -> "Scope":
        # Named, not by its visible start: customers read these labels in their ledger.
        label = f"api-key:{key.name}"[:100]
        if key.scope == "operator":
            return cls(Kind.OPERATOR, actor=key, label=label)
        if key.scope == "reseller":
            return cls(Kind.RESELLER, reseller_id=key.reseller_id, actor=key, label=label)
        return cls(
            Kind.CUSTOMER,
            reseller_id=key.peer.reseller_id,
            peer_id=key.peer_id,
            actor=key,
            label=label,
        )


def as_scope(who) -> Scope:
    """Accept a Scope, a user, or None (nobody)."""
    if isinstance(who, Scope):
        return who
    return Scope.of_user(who)


def access(queryset, who, pk):
    """Return the object `pk` if `who` may see it; raise 404 otherwise (never 403: no leak)."""
    try:
        return queryset.visible_to(who).get(pk=pk)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


def request_scope(request) -> Scope:
    """The scope the request acts for: its API key's, or its session user's."""
    scope = getattr(request, "_smartswitch_scope", None)
    if scope is None:
        key = getattr(request, "auth", None)
        from apps.tenancy.models import ApiKey

        scope = Scope.of_api_key(key) if isinstance(key, ApiKey) else Scope.of_user(request.user)
        request._smartswitch_scope = scope
    return scope
