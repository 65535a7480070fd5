"""Helpers shared by the write services of every app."""

from django.db import models

from apps.audit import services as audit
from apps.core.errors import NotAllowed
from apps.tenancy.scope import Scope


def ensure_manages(actor: Scope, reseller_id: int | None) -> None:
    """Refuse unless `actor` is the operator or the reseller owning the object."""
    if actor.is_operator:
        return
    if actor.is_reseller and reseller_id is not None and reseller_id == actor.reseller_id:
        return
    raise NotAllowed("You cannot change objects of another owner.")


def field_changes(before: models.Model | None, after: models.Model, fields) -> dict:
    """Return {field: [old, new]} for the concrete fields that differ."""
    changes = {}
    for name in fields:
        old = getattr(before, name) if before is not None else None
        new = getattr(after, name)
        if old != new:
            changes[name] = [old, new]
    return changes


def editable_fields(obj: models.Model, exclude=()) -> list[str]:
    return [
        field.attname
        for field in obj._meta.concrete_fields
        if field.editable and not field.primary_key and field.attname not in exclude
    ]


def save_object(obj: models.Model, *, actor: Scope, action: str, **data) -> models.Model:
    """Validate `obj` with full_clean(), save it and audit what changed.

    Callers run inside a transaction (their own retry_on_conflict).
    """
    before = type(obj)._default_manager.filter(pk=obj.pk).first() if obj.pk else None
    obj.full_clean()
    changes = field_changes(before, obj, editable_fields(obj))
    obj.save()
    if before is None or changes:
        audit.record(actor, action, obj, changes=changes, **data)
    return obj


def apply_changes(obj: models.Model, changes: dict, *, allowed) -> models.Model:
    """Set the `changes` on `obj`, refusing fields a service does not let callers set."""
    unknown = set(changes) - set(allowed)
    if unknown:
        raise NotAllowed(f"These fields cannot be changed here: {', '.join(sorted(unknown))}.")
    for name, value in changes.items():
        setattr(obj, name, value)
    return obj
