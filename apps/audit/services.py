"""Record audit entries; every write service calls `record` inside its transaction."""

import json
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder

from apps.audit.models import AuditEntry
from apps.tenancy.scope import Scope, as_scope


def _owner_reseller_id(obj) -> int | None:
    """The reseller whose staff may read this entry: the object's owner, if any."""
    from apps.tenancy.models import Reseller

    if isinstance(obj, Reseller):
        return obj.pk
    for path in ("reseller_id", "peer.reseller_id", "account.peer.reseller_id", "blocklist.reseller_id"):
        target = obj
        try:
            for part in path.split("."):
                target = getattr(target, part)
        except AttributeError:
            continue
        if target is not None:
            return target
    return None


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
