"""The only write path for routing plans, their rules and routes: the operator's alone.

Plans choose among the operator's suppliers and reveal what they cost, so neither resellers
nor customers write (or see) them; the operator gives a plan to a reseller or a customer.
"""

from django.db.models import Model, ProtectedError

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError, NotAllowed
from apps.core.services import apply_changes, save_object
from apps.nodes.models import ClusterSettings
from apps.peers.models import Peer
from apps.routing.models import Route, RoutingPlan, RoutingRule
from apps.tenancy.models import Reseller
from apps.tenancy.scope import Scope

PLAN_SETTINGS = ("name", "parent_id", "description")
RULE_SETTINGS = (
    "prefix",
    "destination",
    "time_profile_id",
    "method",
    "quality_metric",
    "quality_tolerance",
    "position",
    "enabled",
    "description",
)
ROUTE_SETTINGS = (
    "supplier_id",
    "gateway_id",
    "priority",
    "weight",
    "max_calls",
    "setup_timeout",
    "stop_hunting",
    "record_calls",
    "capture_calls",
    "codecs",
    "enabled",
)
# Plan users named in a refusal to delete; a plan can be given to thousands of customers.
SHOWN_USERS = 5


def ensure_operator(actor: Scope) -> None:
    """Refuse anyone but the operator: routing shows suppliers and what they cost."""
    if not actor.is_operator:
        raise NotAllowed("Only the operator manages routing.")


def _save(obj: Model, *, actor: Scope, verb: str) -> Model:
    saved = save_object(obj, actor=actor, action=f"{obj._meta.model_name}.{verb}")
    announce(obj._meta.label, [saved.pk])
    return saved


def _delete(obj: Model, *, actor: Scope, cascade: dict | None = None) -> None:
    """Delete `obj`, announcing it and the rows `cascade` ({kind: queryset}) deletes with it."""
    # The row is gone afterwards: the audit entry keeps what it was.
    audit.record(actor, f"{obj._meta.model_name}.deleted", obj)
    gone = {kind: list(rows.values_list("pk", flat=True)) for kind, rows in (cascade or {}).items()}
    pk = obj.pk
    obj.delete()
    announce(obj._meta.label, [pk])
    for kind, ids in gone.items():
        if ids:
            announce(kind, ids)


# --- plans ----------------------------------------------------------------------------------


@retry_on_conflict
def create_plan(*, actor: Scope, name: str, **fields) -> RoutingPlan:
    """Create an empty routing plan, optionally inheriting another plan's rules."""
    ensure_operator(actor)
    plan = apply_changes(RoutingPlan(name=name), fields, allowed=PLAN_SETTINGS)
    return _save(plan, actor=actor, verb="created")


@retry_on_conflict
def update_plan(plan: RoutingPlan, *, actor: Scope, changes: dict) -> RoutingPlan:
    """Rename a plan, describe it or change the plan it inherits from (never into a loop)."""
    ensure_operator(actor)
    current = RoutingPlan.objects.select_for_update().get(pk=plan.pk)
    apply_changes(current, changes, allowed=PLAN_SETTINGS)
    _lock_ancestors(current.parent_id)
    return _save(current, actor=actor, verb="changed")


def _lock_ancestors(plan_id: int | None) -> None:
    # Two operators pointing A at B and B at A at once would each pass the loop check in
    # clean() against the other's uncommitted change. Locking the new parent's chain makes
    # the second wait for the first and then see its parent in that chain.
    seen = set()
    while plan_id is not None and plan_id not in seen:
        seen.add(plan_id)
        rows = RoutingPlan.objects.select_for_update().filter(pk=plan_id).values_list("parent_id", flat=True)
        plan_id = next(iter(rows), None)


def plan_users(plan: RoutingPlan) -> list[str]:
    """What keeps `plan` from being deleted: its children, customers, resellers, the cluster default."""
    users = []
    settings = ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).first()
    if settings is not None and settings.default_routing_plan_id == plan.pk:
        users.append("the cluster's default plan")
    for label, queryset in (
        ("plan", RoutingPlan.objects.filter(parent=plan)),
        ("reseller", Reseller.objects.filter(routing_plan=plan)),
        ("customer", Peer.objects.filter(routing_plan=plan)),
    ):
        names = list(queryset.order_by("name").values_list("name", flat=True)[: SHOWN_USERS + 1])
        if not names:
            continue
        shown = ", ".join(names[:SHOWN_USERS])
        if len(names) > SHOWN_USERS:
            shown += f" and {queryset.count() - SHOWN_USERS} more"
        users.append(f"{label}{'s' if len(names) > 1 else ''} {shown}")
    return users


@retry_on_conflict
def delete_plan(plan: RoutingPlan, *, actor: Scope) -> None:
    """Delete a plan with its rules and routes; refused while anything routes by it."""
    ensure_operator(actor)
    current = RoutingPlan.objects.select_for_update().get(pk=plan.pk)
    users = plan_users(current)
    if users:
        raise DomainError(f"{current} is in use by {'; '.join(users)}. Give them another plan first.")
    cascade = {
        "routing.RoutingRule": RoutingRule.objects.filter(plan=current),
        "routing.Route": Route.objects.filter(rule__plan=current),
    }
    try:
        _delete(current, actor=actor, cascade=cascade)
    except ProtectedError:
        # Given to someone between the check and the delete.
        raise DomainError(f"{current} is in use. Give its users another plan first.") from None


# --- rules ----------------------------------------------------------------------------------


@retry_on_conflict
def add_rule(plan: RoutingPlan, *, actor: Scope, prefix: str = "", **fields) -> RoutingRule:
    """Route numbers starting with `prefix` (empty: every number) of `plan` by a method."""
    ensure_operator(actor)
    rule = apply_changes(RoutingRule(plan=plan, prefix=prefix), fields, allowed=RULE_SETTINGS)
    return _save(rule, actor=actor, verb="created")


@retry_on_conflict
def update_rule(rule: RoutingRule, *, actor: Scope, changes: dict) -> RoutingRule:
    """Change what a rule matches or how it orders its routes (never its plan)."""
    ensure_operator(actor)
    current = RoutingRule.objects.select_for_update().get(pk=rule.pk)
    apply_changes(current, changes, allowed=RULE_SETTINGS)
    return _save(current, actor=actor, verb="changed")


@retry_on_conflict
def remove_rule(rule: RoutingRule, *, actor: Scope) -> None:
    """Delete a rule and its routes; numbers it matched fall to the next matching rule."""
    ensure_operator(actor)
    _delete(rule, actor=actor, cascade={"routing.Route": Route.objects.filter(rule=rule)})


# --- routes ---------------------------------------------------------------------------------


def _check_repeated(route: Route) -> None:
    # The unique index treats NULL gateways as distinct: "every gateway of this supplier"
    # twice in one rule would pass it and make the supplier be tried twice per call.
    if route.gateway_id is not None or not route.supplier_id:
        return
    twins = Route.objects.filter(rule_id=route.rule_id, supplier_id=route.supplier_id, gateway__isnull=True)
    if twins.exclude(pk=route.pk).exists():
        raise DomainError("This rule already routes to every gateway of this supplier.", field="supplier")


@retry_on_conflict
def add_route(rule: RoutingRule, *, actor: Scope, supplier: Peer, **fields) -> Route:
    """Let `rule` send calls to `supplier` (all its gateways, or the one given)."""
    ensure_operator(actor)
    route = apply_changes(Route(rule=rule, supplier=supplier), fields, allowed=ROUTE_SETTINGS)
    _check_repeated(route)
    return _save(route, actor=actor, verb="created")


@retry_on_conflict
def update_route(route: Route, *, actor: Scope, changes: dict) -> Route:
    """Change a route's supplier, gateway, order, limits or hunting (never its rule)."""
    ensure_operator(actor)
    current = Route.objects.select_for_update().get(pk=route.pk)
    apply_changes(current, changes, allowed=ROUTE_SETTINGS)
    _check_repeated(current)
    return _save(current, actor=actor, verb="changed")


@retry_on_conflict
def remove_route(route: Route, *, actor: Scope) -> None:
    """Stop `route`'s rule from sending calls to that supplier or gateway."""
    ensure_operator(actor)
    _delete(route, actor=actor)
