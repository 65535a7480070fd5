"""Routing is written through its services, by the operator only, and every write is audited."""

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEntry
from apps.core.errors import DomainError, NotAllowed
from apps.nodes import services as node_services
from apps.nodes.models import ClusterSettings, Node
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.routing import services
from apps.routing.models import Method, Route, RoutingPlan, RoutingRule
from apps.tenancy import services as tenancy_services
from apps.tenancy.scope import Scope
from tests.factories import make_peer
from tests.routing.conftest import SYSTEM

pytestmark = pytest.mark.django_db


def staff_of(tenant) -> Scope:
    return Scope.of_user(tenant.staff)


def customer_of(tenant) -> Scope:
    return Scope.of_user(tenant.customer_user)


def test_the_operator_builds_a_plan_and_every_write_is_audited(cast, routing):
    operator = Scope.of_user(cast.operator)
    plan = services.create_plan(actor=operator, name="Premium", parent_id=routing.plan.pk)
    rule = services.add_rule(plan, actor=operator, prefix="49", method=Method.WEIGHT, description="DE")
    route = services.add_route(rule, actor=operator, supplier=cast.supplier, weight=70)
    services.update_route(route, actor=operator, changes={"weight": 60, "gateway_id": routing.gateway.pk})
    services.update_rule(rule, actor=operator, changes={"prefix": "4915"})
    services.update_plan(plan, actor=operator, changes={"description": "Better"})

    route.refresh_from_db()
    assert (route.weight, route.gateway, route.rule.prefix, route.rule.plan.parent) == (
        60,
        routing.gateway,
        "4915",
        routing.plan,
    )
    actions = list(
        AuditEntry.objects.filter(actor=cast.operator).order_by("pk").values_list("action", flat=True)
    )
    assert actions == [
        "routingplan.created",
        "routingrule.created",
        "route.created",
        "route.changed",
        "routingrule.changed",
        "routingplan.changed",
    ]
    # Routing is the operator's: no reseller can read these entries.
    assert not AuditEntry.objects.filter(action__startswith="rout", reseller__isnull=False).exists()

    services.remove_route(route, actor=operator)
    services.remove_rule(rule, actor=operator)
    services.delete_plan(plan, actor=operator)
    assert not RoutingPlan.objects.filter(pk=plan.pk).exists()
    assert AuditEntry.objects.filter(action="routingplan.deleted", object_repr="Premium").exists()


def _every_write(routing, cast):
    plan, rule, route = routing.plan, routing.uk, routing.route
    return {
        "create_plan": lambda actor: services.create_plan(actor=actor, name="Mine"),
        "update_plan": lambda actor: services.update_plan(plan, actor=actor, changes={"name": "Mine"}),
        "delete_plan": lambda actor: services.delete_plan(plan, actor=actor),
        "add_rule": lambda actor: services.add_rule(plan, actor=actor, prefix="1"),
        "update_rule": lambda actor: services.update_rule(rule, actor=actor, changes={"enabled": False}),
        "remove_rule": lambda actor: services.remove_rule(rule, actor=actor),
        "add_route": lambda actor: services.add_route(rule, actor=actor, supplier=cast.supplier),
        "update_route": lambda actor: services.update_route(route, actor=actor, changes={"priority": 9}),
        "remove_route": lambda actor: services.remove_route(route, actor=actor),
    }


WRITES = [
    "create_plan",
    "update_plan",
    "delete_plan",
    "add_rule",
    "update_rule",
    "remove_rule",
    "add_route",
    "update_route",
    "remove_route",
]


@pytest.mark.parametrize("who", ["staff", "customer"])
@pytest.mark.parametrize("write", WRITES)
def test_nobody_but_the_operator_writes_routing(cast, routing, write, who):
    actor = staff_of(cast.a) if who == "staff" else customer_of(cast.a)
    counts = (RoutingPlan.objects.count(), RoutingRule.objects.count(), Route.objects.count())
    with pytest.raises(NotAllowed):
        _every_write(routing, cast)[write](actor)
    assert (RoutingPlan.objects.count(), RoutingRule.objects.count(), Route.objects.count()) == counts
    routing.plan.refresh_from_db()
    assert routing.plan.name == "Standard"
    assert not AuditEntry.objects.filter(action__startswith="rout", actor=cast.a.staff).exists()


def test_a_plan_cannot_inherit_from_itself_or_its_descendants(routing):
    child = services.create_plan(actor=SYSTEM, name="Child", parent_id=routing.plan.pk)
    grandchild = services.create_plan(actor=SYSTEM, name="Grandchild", parent_id=child.pk)
    for parent in (routing.plan, child, grandchild):
        with pytest.raises(ValidationError) as refused:
            services.update_plan(routing.plan, actor=SYSTEM, changes={"parent_id": parent.pk})
        assert "parent" in refused.value.message_dict
    routing.plan.refresh_from_db()
    assert routing.plan.parent_id is None


def _give_plan(kind, plan, cast):
    if kind == "customer":
        peer_services.update_peer(cast.a.customer, actor=SYSTEM, changes={"routing_plan_id": plan.pk})
    elif kind == "reseller":
        tenancy_services.update_reseller(cast.b.reseller, actor=SYSTEM, changes={"routing_plan_id": plan.pk})
    elif kind == "default":
        node_services.update_cluster_settings(actor=SYSTEM, changes={"default_routing_plan_id": plan.pk})
    else:
        services.create_plan(actor=SYSTEM, name="Child", parent_id=plan.pk)


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("customer", "customer Customer A"),
        ("reseller", "reseller Reseller B"),
        ("default", "the cluster's default plan"),
        ("child", "plan Child"),
    ],
)
def test_a_plan_in_use_is_not_deleted(cast, routing, kind, named):
    _give_plan(kind, routing.plan, cast)
    with pytest.raises(DomainError) as refused:
        services.delete_plan(routing.plan, actor=SYSTEM)
    assert named in refused.value.message
    assert RoutingPlan.objects.filter(pk=routing.plan.pk).exists()
    assert RoutingRule.objects.filter(plan=routing.plan).count() == 2


def test_deleting_an_unused_plan_takes_its_rules_and_routes(routing):
    services.delete_plan(routing.plan, actor=SYSTEM)
    assert not RoutingRule.objects.exists()
    assert not Route.objects.exists()


def test_a_refusal_names_a_few_of_many_customers(cast, routing):
    peers = [cast.a.customer, *(make_peer(f"Many {n}", reseller=cast.a.reseller) for n in range(6))]
    for peer in peers:
        peer_services.update_peer(peer, actor=SYSTEM, changes={"routing_plan_id": routing.plan.pk})
    with pytest.raises(DomainError) as refused:
        services.delete_plan(routing.plan, actor=SYSTEM)
    assert "and 2 more" in refused.value.message


@pytest.mark.parametrize(
    ("target", "field"),
    [("customer", "supplier"), ("reseller_user", "supplier"), ("foreign_gateway", "gateway")],
)
def test_routes_go_to_the_operators_suppliers_through_their_own_gateways(cast, routing, target, field):
    fields = {"supplier": cast.supplier}
    if target == "customer":
        fields["supplier"] = cast.a.customer
    elif target == "reseller_user":
        fields["supplier"] = peer_services.create_peer(
            actor=SYSTEM, name="Trunk", role=Peer.Role.USER, reseller_id=cast.a.reseller.pk
        )
    else:
        fields["gateway_id"] = routing.other_gateway.pk
    with pytest.raises(ValidationError) as refused:
        services.add_route(routing.uk, actor=SYSTEM, **fields)
    assert field in refused.value.message_dict


def test_a_supplier_is_routed_to_once_per_rule_and_gateway(cast, routing):
    with pytest.raises(DomainError) as refused:
        services.add_route(routing.lcr, actor=SYSTEM, supplier=cast.supplier)
    assert refused.value.field == "supplier"
    with pytest.raises(ValidationError):
        services.add_route(
            routing.uk, actor=SYSTEM, supplier=routing.other_supplier, gateway_id=routing.other_gateway.pk
        )
    # The same supplier through one named gateway is another route.
    services.add_route(routing.lcr, actor=SYSTEM, supplier=cast.supplier, gateway_id=routing.gateway.pk)
    assert Route.objects.filter(rule=routing.lcr, supplier=cast.supplier).count() == 2


def test_a_quality_rule_needs_a_step_and_rules_stay_in_their_plan(routing):
    with pytest.raises(ValidationError) as refused:
        services.add_rule(routing.plan, actor=SYSTEM, prefix="33", method=Method.QUALITY, quality_tolerance=0)
    assert "quality_tolerance" in refused.value.message_dict
    other = services.create_plan(actor=SYSTEM, name="Other")
    with pytest.raises(NotAllowed):
        services.update_rule(routing.uk, actor=SYSTEM, changes={"plan_id": other.pk})
    with pytest.raises(NotAllowed):
        services.update_route(routing.route, actor=SYSTEM, changes={"rule_id": routing.uk.pk})
    with pytest.raises(ValidationError) as refused:
        services.add_rule(routing.plan, actor=SYSTEM, prefix="44x")
    assert "prefix" in refused.value.message_dict


# --- routing settings of peers, resellers, the cluster and nodes -------------------------------


@pytest.mark.parametrize(
    ("change", "field"), [("routing_plan_id", "routing_plan"), ("profit_control", "profit_control")]
)
def test_reseller_staff_cannot_set_a_customers_routing(cast, routing, change, field):
    value = routing.plan.pk if change == "routing_plan_id" else Peer.ProfitControl.ALLOW_LOSS
    with pytest.raises(NotAllowed) as refused:
        peer_services.update_peer(cast.a.customer, actor=staff_of(cast.a), changes={change: value})
    assert refused.value.field == field
    with pytest.raises(NotAllowed):
        peer_services.create_peer(
            actor=staff_of(cast.a), name="New", role=Peer.Role.CUSTOMER, **{change: value}
        )
    peer = Peer.objects.get(pk=cast.a.customer.pk)
    assert (peer.routing_plan_id, peer.profit_control) == (None, Peer.ProfitControl.NO_LOSS)
    assert not Peer.objects.filter(name="New").exists()


def test_reseller_staff_record_their_customers_calls_and_the_operator_sets_their_routing(cast, routing):
    peer_services.update_peer(cast.a.customer, actor=staff_of(cast.a), changes={"record_calls": True})
    peer_services.update_peer(
        cast.a.customer,
        actor=Scope.of_user(cast.operator),
        changes={"routing_plan_id": routing.plan.pk, "profit_control": Peer.ProfitControl.PROFIT_ONLY},
    )
    peer = Peer.objects.get(pk=cast.a.customer.pk)
    assert (peer.record_calls, peer.routing_plan, peer.profit_control) == (True, routing.plan, "profit")
    with pytest.raises(NotAllowed):
        peer_services.update_peer(cast.b.customer, actor=staff_of(cast.a), changes={"record_calls": True})


def test_a_supplier_has_no_routing_plan(cast, routing):
    with pytest.raises(ValidationError) as refused:
        peer_services.update_peer(cast.supplier, actor=SYSTEM, changes={"routing_plan_id": routing.plan.pk})
    assert "routing_plan" in refused.value.message_dict


def test_only_the_operator_gives_a_reseller_a_plan(cast, routing):
    with pytest.raises(NotAllowed):
        tenancy_services.update_reseller(
            cast.a.reseller, actor=staff_of(cast.a), changes={"routing_plan_id": routing.plan.pk}
        )
    tenancy_services.update_reseller(
        cast.a.reseller, actor=SYSTEM, changes={"routing_plan_id": routing.plan.pk}
    )
    cast.a.reseller.refresh_from_db()
    assert cast.a.reseller.routing_plan == routing.plan


def test_cluster_settings_take_the_routing_and_call_limits(routing):
    node_services.update_cluster_settings(
        actor=SYSTEM,
        changes={
            "default_routing_plan_id": routing.plan.pk,
            "max_call_duration": 3600,
            "reservation_grace": 60,
            "quality_window": 30,
        },
    )
    settings = ClusterSettings.load()
    assert (settings.default_routing_plan, settings.max_call_duration, settings.quality_window) == (
        routing.plan,
        3600,
        30,
    )
    with pytest.raises(ValidationError) as refused:
        node_services.update_cluster_settings(actor=SYSTEM, changes={"max_call_duration": 5})
    assert "max_call_duration" in refused.value.message_dict


def test_rotating_a_node_secret_changes_it_and_audits_without_it(cast):
    node = Node.objects.get(pk=cast.node.pk)
    before = node.call_control_secret
    # That call control's snapshot learns the new secret is tests/core/test_changes_consumers.py's.
    rotated = node_services.rotate_call_control_secret(node, actor=Scope.of_user(cast.operator))
    assert rotated.call_control_secret != before and len(rotated.call_control_secret) >= 32
    assert Node.objects.get(pk=node.pk).call_control_secret == rotated.call_control_secret
    entry = AuditEntry.objects.get(action="node.secret_rotated", object_id=str(node.pk))
    assert entry.actor == cast.operator
    assert before not in str(entry.data) and rotated.call_control_secret not in str(entry.data)
    with pytest.raises(NotAllowed):
        node_services.rotate_call_control_secret(node, actor=staff_of(cast.a))
    assert Node.objects.get(pk=node.pk).call_control_secret == rotated.call_control_secret
