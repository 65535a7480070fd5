"""Create, change and delete controllers: the one write path of the rules people set.

The admin and the API both call these. A reseller's staff always write controllers of their
own reseller (which then watch only its customers); the owner and the kind are fixed at
creation, because the alerts a controller already raised are of its kind and scope.
"""

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.fraud.models import Controller
from apps.tenancy.scope import Scope

CONTROLLER = "fraud.Controller"
# What an update may change: everything but the owner and the kind.
CONTROLLER_SETTINGS = frozenset(
    field.attname
    for field in Controller._meta.concrete_fields
    if field.editable and not field.primary_key and field.attname not in ("reseller_id", "kind")
) - {"created_at", "updated_at"}


@retry_on_conflict
def create_controller(*, actor: Scope, reseller_id: int | None = None, **values) -> Controller:
    """Create a controller; a reseller's staff always create one of their own."""
    if actor.is_reseller:
        reseller_id = actor.reseller_id
    ensure_manages(actor, reseller_id)
    controller = Controller(reseller_id=reseller_id, **values)
    save_object(controller, actor=actor, action="controller.created")
    announce(CONTROLLER, [controller.pk])
    return controller


@retry_on_conflict
def update_controller(controller: Controller, *, actor: Scope, changes: dict) -> Controller:
    """Change a controller's settings (not its owner or kind); the next round reads them."""
    ensure_manages(actor, controller.reseller_id)
    current = Controller.objects.select_for_update().get(pk=controller.pk)
    apply_changes(current, changes, allowed=CONTROLLER_SETTINGS)
    save_object(current, actor=actor, action="controller.changed")
    announce(CONTROLLER, [current.pk], fields=changes)
    return current


@retry_on_conflict
def delete_controller(controller: Controller, *, actor: Scope) -> None:
    """Delete a controller; its alerts stay (their actions run to their end or an undo)."""
    ensure_manages(actor, controller.reseller_id)
    pk = controller.pk
    audit.record(actor, "controller.deleted", controller, name=controller.name, kind=controller.kind)
    Controller.objects.filter(pk=pk).delete()
    announce(CONTROLLER, [pk])
