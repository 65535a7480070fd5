"""Record audit entries; every write service calls `record` inside its transaction."""

import json
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder

from apps.audit.models import AuditEntry
from apps.tenancy.scope import Scope, as_scope


def _owner_reseller_id(obj) -> int | None:
    """The reseller whose staff may read this entry: the object's owner, if any.

    Follows the same lookup the model's queryset scopes by (e.g. "account__peer__reseller"),
    so an entry is visible to exactly the staff who can see the object.
    """
    from apps.tenancy.models import ApiKey, Reseller

    if isinstance(obj, Reseller):
        return obj.pk
    if isinstance(obj, ApiKey):
        return obj.reseller_id or (obj.peer.reseller_id if obj.peer_id else None)
    lookup = getattr(type(obj)._default_manager.get_queryset(), "reseller_lookup", None)
    if not lookup:
        return None
    *path, last = lookup.split("__")
    target = obj
    for name in path:
        target = getattr(target, name, None)
        if target is None:
            return None
    return getattr(target, f"{last}_id", None)


def _plain(data: dict) -> dict:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder, default=str))


def record(who: Scope | object, action: str, obj, **data) -> AuditEntry:
    """Write one audit entry for `action` on `obj` by `who` (a Scope, a user or None)."""
    scope = as_scope(who) if who is not None else Scope.system()
    data = {key: str(value) if isinstance(value, Decimal) else value for key, value in data.items()}
    return AuditEntry.objects.create(
        actor=scope.user,
        actor_label=scope.label[:100],
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        reseller_id=_owner_reseller_id(obj),
        data=_plain(data),
    )
