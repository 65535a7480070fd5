"""Routing in the admin: the operator's pages, written through the services; nobody else's."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.nodes.models import ClusterSettings, Node
from apps.peers.models import Peer
from apps.routing import services
from apps.routing.models import Method, QualityStat, Route, RoutingPlan, RoutingRule
from tests.admin.conftest import admin_url, form_payload, listed, messages_of, tool_url
from tests.admin.test_peers import inline_rows
from tests.routing.conftest import SYSTEM

MODELS = [RoutingPlan, RoutingRule, Route, QualityStat]


def example(model, routing):
    return {
        RoutingPlan: routing.plan,
        RoutingRule: routing.uk,
        Route: routing.route,
        QualityStat: routing.stat,
    }[model]


@pytest.mark.parametrize("model", MODELS)
def test_the_operator_opens_every_routing_page(model, cast, routing, login):
    client = login(cast.operator)
    obj = example(model, routing)
    assert obj.pk in listed(client.get(admin_url(model, "changelist")))
    assert client.get(admin_url(obj)).status_code == 200
    # Quality statistics are counted from CDRs, never typed in.
    assert client.get(admin_url(model, "add")).status_code == (403 if model is QualityStat else 200)


@pytest.mark.parametrize("model", MODELS)
def test_reseller_staff_reach_no_routing_page(model, cast, routing, login):
    client = login(cast.a.staff)
    obj = example(model, routing)
    for url in (
        admin_url(model, "changelist"),
        admin_url(model, "add"),
        admin_url(obj),
        admin_url(obj, "delete"),
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(admin_url(obj, "delete"), {"post": "yes"}).status_code == 403
    history = client.get(admin_url(obj, "history"))
    assert history.status_code in (302, 403)
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_routing_is_not_on_the_reseller_staff_index(cast, routing, login):
    index = login(cast.a.staff).get(reverse("admin:index"))
    apps = {app["app_label"] for app in index.context["app_list"]}
    assert "routing" not in apps
    operator_index = login(cast.operator).get(reverse("admin:index"))
    models = {m["object_name"] for app in operator_index.context["app_list"] for m in app["models"]}
    assert {"RoutingPlan", "RoutingRule", "Route", "QualityStat"} <= models


def test_customer_logins_are_sent_to_the_admin_login(cast, routing, login):
    url = admin_url(RoutingPlan, "changelist")
    response = login(cast.a.customer_user).get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_a_plan_and_its_rules_are_created_through_the_services(cast, routing, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(RoutingPlan, "add")))
    payload.update(name="Premium", parent=str(routing.plan.pk), description="Best first")
    rule = {
        "prefix": "33",
        "destination": "",
        "method": "priority",
        "quality_metric": "asr",
        "quality_tolerance": "5",
        "position": "0",
        "enabled": "on",
        "description": "France",
    }
    inline_rows(payload, "rules", [rule])
    response = client.post(admin_url(RoutingPlan, "add"), payload)
    assert response.status_code == 302, response.context["adminform"].form.errors
    plan = RoutingPlan.objects.get(name="Premium")
    assert plan.parent == routing.plan
    created = RoutingRule.objects.get(plan=plan)
    assert (created.prefix, created.method, created.description) == ("33", Method.PRIORITY, "France")
    assert AuditEntry.objects.filter(action="routingplan.created", actor=cast.operator).exists()
    assert AuditEntry.objects.filter(action="routingrule.created", object_id=str(created.pk)).exists()


def test_a_plan_cannot_be_made_its_own_grandparent(cast, routing, login):
    child = services.create_plan(actor=SYSTEM, name="Child", parent_id=routing.plan.pk)
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(routing.plan)))
    payload["parent"] = str(child.pk)
    response = client.post(admin_url(routing.plan), payload)
    assert response.status_code == 200
    assert "parent" in response.context["adminform"].form.errors
    routing.plan.refresh_from_db()
    assert routing.plan.parent is None


def test_the_plan_page_lists_its_rules_with_their_routes_and_who_uses_it(cast, routing, login):
    Peer.objects.filter(pk=cast.a.customer.pk).update(routing_plan=routing.plan)
    response = login(cast.operator).get(admin_url(routing.plan))
    [rules] = response.context["inline_admin_formsets"]
    assert {form.instance.pk for form in rules.formset.forms} == {routing.lcr.pk, routing.uk.pk}
    page = response.content.decode()
    assert "Carrier Y via y-main #1" in page
    assert "customer Customer A" in page
    assert reverse("check-routing") in page


def test_routes_are_added_on_the_rule_page_through_the_services(cast, routing, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(routing.uk)))
    row = {
        "supplier": str(cast.supplier.pk),
        "gateway": str(routing.gateway.pk),
        "priority": "0",
        "weight": "1",
        "max_calls": "20",
        "setup_timeout": "5",
        "enabled": "on",
    }
    inline_rows(payload, "routes", [row])
    assert client.post(admin_url(routing.uk), payload).status_code == 302
    route = Route.objects.get(rule=routing.uk, supplier=cast.supplier)
    assert (route.gateway, route.max_calls, route.setup_timeout) == (routing.gateway, 20, 5)
    assert AuditEntry.objects.filter(action="route.created", object_id=str(route.pk)).exists()


def test_a_route_through_another_suppliers_gateway_is_a_form_error(cast, routing, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(routing.uk)))
    payload["max_calls"] = ""
    row = {"supplier": str(cast.supplier.pk), "gateway": str(routing.other_gateway.pk), "priority": "0"}
    inline_rows(payload, "routes", [{**row, "weight": "1", "enabled": "on"}])
    payload["description"] = "changed with the route"
    response = client.post(admin_url(routing.uk), payload)
    assert response.status_code == 200
    routes = next(
        f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "routes"
    )
    assert routes.forms[-1].errors["gateway"] == ["This gateway belongs to another supplier."]
    routing.uk.refresh_from_db()
    assert routing.uk.description == ""  # the whole save was rolled back
    assert not Route.objects.filter(rule=routing.uk, supplier=cast.supplier).exists()


def test_a_customer_is_not_offered_as_a_supplier(cast, routing, login):
    client = login(cast.operator)
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "routing", "model_name": "route", "field_name": "supplier", "term": ""},
    )
    assert response.status_code == 200
    offered = {int(row["id"]) for row in response.json()["results"]}
    assert offered == {cast.supplier.pk, routing.other_supplier.pk}
    payload = form_payload(client.get(admin_url(Route, "add")))
    payload.update(rule=str(routing.uk.pk), supplier=str(cast.a.customer.pk), weight="1", priority="0")
    response = client.post(admin_url(Route, "add"), payload)
    assert response.status_code == 200
    assert "supplier" in response.context["adminform"].form.errors


def test_the_route_list_filters_by_plan_and_supplier(cast, routing, login):
    client = login(cast.operator)
    url = admin_url(Route, "changelist")
    by_supplier = listed(client.get(url, {"supplier__id__exact": routing.other_supplier.pk}))
    assert by_supplier == set(
        Route.objects.filter(supplier=routing.other_supplier).values_list("pk", flat=True)
    )
    assert len(by_supplier) == 2
    assert len(listed(client.get(url, {"rule__plan__id__exact": routing.plan.pk}))) == 3
    assert listed(client.get(url, {"rule__id__exact": routing.uk.pk})) == {routing.uk.routes.get().pk}


def test_an_unused_plan_is_deleted_and_a_used_one_is_not(cast, routing, login):
    spare = services.create_plan(actor=SYSTEM, name="Spare")
    services.add_rule(spare, actor=SYSTEM, prefix="1")
    client = login(cast.operator)
    assert client.post(admin_url(spare, "delete"), {"post": "yes"}).status_code == 302
    assert not RoutingPlan.objects.filter(pk=spare.pk).exists()
    assert AuditEntry.objects.filter(action="routingplan.deleted", object_repr="Spare").exists()

    Peer.objects.filter(pk=cast.a.customer.pk).update(routing_plan=routing.plan)
    response = client.post(admin_url(routing.plan, "delete"), {"post": "yes"}, follow=True)
    assert response.redirect_chain == [(admin_url(routing.plan), 302)]
    assert messages_of(response)[-1] == "Standard cannot be deleted while it is used by customer Customer A."
    assert RoutingPlan.objects.filter(pk=routing.plan.pk).exists()
    assert RoutingRule.objects.filter(plan=routing.plan).count() == 2


def test_quality_shows_asr_and_acd(cast, routing, login):
    page = login(cast.operator).get(admin_url(QualityStat, "changelist"), {"o": "5"}).content.decode()
    assert "66.7 %" in page and "125 s" in page


# --- routing fields on peers, resellers, cluster settings and nodes ---------------------------


def test_reseller_staff_neither_see_nor_set_a_customers_routing(cast, routing, login):
    Peer.objects.filter(pk=cast.a.customer.pk).update(routing_plan=routing.plan)
    client = login(cast.a.staff)
    response = client.get(admin_url(cast.a.customer))
    form = response.context["adminform"].form
    assert "routing_plan" not in form.fields and "profit_control" not in form.fields
    assert "record_calls" in form.fields
    page = response.content.decode()
    assert "routing_plan" not in page and "profit_control" not in page and "Standard" not in page

    payload = form_payload(response)
    payload.update(routing_plan="", profit_control="allow_loss", record_calls="on")
    assert client.post(admin_url(cast.a.customer), payload).status_code == 302
    peer = Peer.objects.get(pk=cast.a.customer.pk)
    assert (peer.routing_plan, peer.profit_control, peer.record_calls) == (routing.plan, "no_loss", True)
    # Nor filter by it.
    assert (
        client.get(admin_url(Peer, "changelist"), {"routing_plan__id__exact": routing.plan.pk}).status_code
        == 400
    )


def test_the_operator_sets_a_customers_routing_on_its_page(cast, routing, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(cast.a.customer)))
    payload.update(routing_plan=str(routing.plan.pk), profit_control="profit")
    assert client.post(admin_url(cast.a.customer), payload).status_code == 302
    peer = Peer.objects.get(pk=cast.a.customer.pk)
    assert (peer.routing_plan, peer.profit_control) == (routing.plan, "profit")
    changes = AuditEntry.objects.get(action="peer.changed", object_id=str(peer.pk)).data["changes"]
    assert set(changes) == {"routing_plan_id", "profit_control"}
    assert listed(
        client.get(admin_url(Peer, "changelist"), {"routing_plan__id__exact": routing.plan.pk})
    ) == {peer.pk}


def test_reseller_staff_do_not_see_their_resellers_plan(cast, routing, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(cast.a.reseller)))
    payload["routing_plan"] = str(routing.plan.pk)
    assert client.post(admin_url(cast.a.reseller), payload).status_code == 302
    cast.a.reseller.refresh_from_db()
    assert cast.a.reseller.routing_plan == routing.plan
    page = login(cast.a.staff).get(admin_url(cast.a.reseller)).content.decode()
    assert "Standard" not in page and "routing plan" not in page.lower()
    assert (
        "Standard" not in login(cast.a.staff).get(admin_url(cast.a.reseller, "changelist")).content.decode()
    )


def test_the_operator_sets_the_default_plan_and_call_limits(cast, routing, login):
    client = login(cast.operator)
    url = admin_url(ClusterSettings, "change", ClusterSettings.SINGLETON_ID)
    payload = form_payload(client.get(url))
    payload.update(default_routing_plan=str(routing.plan.pk), max_call_duration="3600", quality_window="15")
    assert client.post(url, payload).status_code == 302
    settings = ClusterSettings.load()
    assert (settings.default_routing_plan, settings.max_call_duration, settings.quality_window) == (
        routing.plan,
        3600,
        15,
    )


def test_the_operator_reads_and_rotates_a_nodes_secret(cast, login):
    client = login(cast.operator)
    node = Node.objects.get(pk=cast.node.pk)
    page = client.get(admin_url(node)).content.decode()
    assert node.call_control_secret in page
    assert tool_url(node, "rotate-secret") in page
    # Nodes are invisible to reseller staff: the tool reads as absent.
    assert login(cast.a.staff).post(tool_url(node, "rotate-secret"), {}).status_code == 404
    assert Node.objects.get(pk=node.pk).call_control_secret == node.call_control_secret
    response = login(cast.operator).post(tool_url(node, "rotate-secret"), {}, follow=True)
    assert any("new call-control secret" in m for m in messages_of(response))
    rotated = Node.objects.get(pk=node.pk).call_control_secret
    assert rotated != node.call_control_secret
    assert rotated in response.content.decode()


def test_the_secret_is_not_typed_in_when_adding_a_node(cast, login):
    form = login(cast.operator).get(admin_url(Node, "add")).context["adminform"].form
    assert "call_control_secret" not in form.fields
