"""Routing in the API: the operator's CRUD through the services; 403 for everyone else."""

import pytest

from apps.audit.models import AuditEntry
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.routing import services
from apps.routing.models import QualityStat, Route, RoutingPlan, RoutingRule
from tests.api.conftest import results
from tests.routing.conftest import SYSTEM

pytestmark = pytest.mark.django_db

PREFIXES = ["routing-plans", "routing-rules", "routes", "quality-stats"]


def example(prefix, routing):
    return {
        "routing-plans": routing.plan,
        "routing-rules": routing.uk,
        "routes": routing.route,
        "quality-stats": routing.stat,
    }[prefix]


def key_of(cast, who: str) -> str:
    tenant, attribute = who.split(".")
    return getattr(getattr(cast, tenant), attribute)


@pytest.mark.parametrize("who", ["a.staff_key", "a.customer_key", "b.staff_key"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_routing_is_the_operators_alone(api, cast, routing, prefix, who):
    client = api(key_of(cast, who))
    obj = example(prefix, routing)
    assert client.get(f"/api/v1/{prefix}/").status_code == 403
    assert client.get(f"/api/v1/{prefix}/{obj.pk}/").status_code == 403
    assert (
        client.post(
            f"/api/v1/{prefix}/", {"name": "Mine", "plan": routing.plan.pk}, format="json"
        ).status_code
        == 403
    )
    assert client.patch(f"/api/v1/{prefix}/{obj.pk}/", {"enabled": False}, format="json").status_code == 403
    assert client.delete(f"/api/v1/{prefix}/{obj.pk}/").status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert RoutingPlan.objects.count() == 1


def test_anonymous_requests_are_refused(api, routing):
    assert api().get("/api/v1/routing-plans/").status_code in (401, 403)


def test_the_operator_builds_a_plan_through_the_api(api, cast, routing):
    client = api(cast.operator_key)
    response = client.post(
        "/api/v1/routing-plans/",
        {"name": "Premium", "parent": routing.plan.pk, "description": "Best"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    plan = response.json()
    assert (plan["name"], plan["parent"]) == ("Premium", routing.plan.pk)

    response = client.post(
        "/api/v1/routing-rules/",
        {"plan": plan["id"], "prefix": "49", "method": "weight", "description": "Germany"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    rule = response.json()
    assert (rule["prefix"], rule["method"], rule["enabled"]) == ("49", "weight", True)

    response = client.post(
        "/api/v1/routes/",
        {"rule": rule["id"], "supplier": cast.supplier.pk, "gateway": routing.gateway.pk, "weight": 70},
        format="json",
    )
    assert response.status_code == 201, response.json()
    route = response.json()
    assert (route["supplier"], route["gateway"], route["weight"], route["max_calls"]) == (
        cast.supplier.pk,
        routing.gateway.pk,
        70,
        None,
    )

    assert (
        client.patch(
            f"/api/v1/routes/{route['id']}/", {"weight": 60, "stop_hunting": True}, format="json"
        ).json()["weight"]
        == 60
    )
    assert (
        client.patch(f"/api/v1/routing-rules/{rule['id']}/", {"prefix": "4915"}, format="json").json()[
            "prefix"
        ]
        == "4915"
    )
    assert (
        client.patch(f"/api/v1/routing-plans/{plan['id']}/", {"description": "Better"}, format="json").json()[
            "description"
        ]
        == "Better"
    )
    assert Route.objects.values_list("weight", "stop_hunting", "rule__prefix").get(pk=route["id"]) == (
        60,
        True,
        "4915",
    )
    assert client.put(f"/api/v1/routes/{route['id']}/", route, format="json").status_code == 405

    assert client.delete(f"/api/v1/routes/{route['id']}/").status_code == 204
    assert client.delete(f"/api/v1/routing-rules/{rule['id']}/").status_code == 204
    assert client.delete(f"/api/v1/routing-plans/{plan['id']}/").status_code == 204
    assert not RoutingPlan.objects.filter(pk=plan["id"]).exists()
    actions = set(AuditEntry.objects.filter(action__regex=r"^rout").values_list("action", "actor_label"))
    assert {
        ("routingplan.created", "api-key:ops"),
        ("routingrule.changed", "api-key:ops"),
        ("route.deleted", "api-key:ops"),
        ("routingplan.deleted", "api-key:ops"),
    } <= actions


def test_lists_filter_by_plan_rule_and_supplier(api, cast, routing):
    client = api(cast.operator_key)
    other = services.create_plan(actor=SYSTEM, name="Other")
    services.add_rule(other, actor=SYSTEM, prefix="1")
    rules = results(client.get("/api/v1/routing-rules/", {"plan": routing.plan.pk}))
    assert {row["id"] for row in rules} == {routing.lcr.pk, routing.uk.pk}
    assert {
        row["id"] for row in results(client.get("/api/v1/routing-rules/", {"prefix_startswith": "4"}))
    } == {routing.uk.pk}
    by_supplier = results(client.get("/api/v1/routes/", {"supplier": routing.other_supplier.pk}))
    assert len(by_supplier) == 2
    assert len(results(client.get("/api/v1/routes/", {"rule": routing.uk.pk}))) == 1
    assert len(results(client.get("/api/v1/routes/", {"plan": routing.plan.pk}))) == 3
    assert results(client.get("/api/v1/routes/", {"plan": other.pk})) == []
    assert [row["name"] for row in results(client.get("/api/v1/routing-plans/", {"ordering": "-name"}))] == [
        "Standard",
        "Other",
    ]


def test_quality_stats_are_read_only_with_asr_and_acd_as_strings(api, cast, routing):
    client = api(cast.operator_key)
    [row] = results(client.get("/api/v1/quality-stats/", {"supplier": cast.supplier.pk}))
    assert (row["destination"], row["attempts"], row["answered"]) == ("United Kingdom", 30, 20)
    assert (row["asr"], row["acd"]) == ("66.67", "125.0")
    assert client.post("/api/v1/quality-stats/", row, format="json").status_code == 405
    assert (
        client.patch(f"/api/v1/quality-stats/{row['id']}/", {"attempts": 1}, format="json").status_code == 405
    )
    assert client.delete(f"/api/v1/quality-stats/{row['id']}/").status_code == 405
    assert QualityStat.objects.get(pk=row["id"]).attempts == 30


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("routing-plans", {"name": "Standard"}, "name"),
        ("routing-plans", {"name": ""}, "name"),
        ("routing-rules", {"prefix": "44a"}, "prefix"),
        ("routing-rules", {"method": "random"}, "method"),
        ("routing-rules", {"method": "quality", "quality_tolerance": 0}, "quality_tolerance"),
        ("routes", {"supplier": "customer"}, "supplier"),
        ("routes", {"gateway": "other"}, "gateway"),
        ("routes", {"setup_timeout": 0}, "setup_timeout"),
        ("routes", {"supplier": "again"}, "supplier"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(api, cast, routing, path, body, field):
    base = {
        "routing-plans": {"name": "New"},
        "routing-rules": {"plan": routing.plan.pk, "prefix": "33"},
        "routes": {"rule": routing.uk.pk, "supplier": cast.supplier.pk},
    }[path]
    stand_ins = {
        "customer": cast.a.customer.pk,
        "other": routing.other_gateway.pk,
        "again": routing.other_supplier.pk,
    }
    body = {
        name: stand_ins.get(value, value) if isinstance(value, str) else value for name, value in body.items()
    }
    if body.get("supplier") == routing.other_supplier.pk:
        # Carrier Y already takes the UK rule's calls through its gateway; "every gateway" is new,
        # but twice "every gateway" is not.
        services.add_route(routing.uk, actor=SYSTEM, supplier=routing.other_supplier)
    counts = (RoutingPlan.objects.count(), RoutingRule.objects.count(), Route.objects.count())
    response = api(cast.operator_key).post(f"/api/v1/{path}/", {**base, **body}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert (RoutingPlan.objects.count(), RoutingRule.objects.count(), Route.objects.count()) == counts


def test_a_plan_loop_is_a_400_naming_the_parent(api, cast, routing):
    child = services.create_plan(actor=SYSTEM, name="Child", parent_id=routing.plan.pk)
    response = api(cast.operator_key).patch(
        f"/api/v1/routing-plans/{routing.plan.pk}/", {"parent": child.pk}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["parent"]


def test_a_plan_in_use_is_not_deleted(api, cast, routing):
    peer_services.update_peer(cast.a.customer, actor=SYSTEM, changes={"routing_plan_id": routing.plan.pk})
    response = api(cast.operator_key).delete(f"/api/v1/routing-plans/{routing.plan.pk}/")
    assert response.status_code == 400
    assert "Customer A" in response.json()["detail"]
    assert RoutingPlan.objects.filter(pk=routing.plan.pk).exists()


def test_a_rule_and_a_route_stay_where_they_were_created(api, cast, routing):
    other = services.create_plan(actor=SYSTEM, name="Other")
    client = api(cast.operator_key)
    response = client.patch(f"/api/v1/routing-rules/{routing.uk.pk}/", {"plan": other.pk}, format="json")
    assert (response.status_code, list(response.json())) == (400, ["plan"])
    response = client.patch(f"/api/v1/routes/{routing.route.pk}/", {"rule": routing.uk.pk}, format="json")
    assert (response.status_code, list(response.json())) == (400, ["rule"])
    assert (
        client.patch(
            f"/api/v1/routes/{routing.route.pk}/", {"rule": routing.lcr.pk}, format="json"
        ).status_code
        == 200
    )


# --- routing fields of peers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"routing_plan": "plan"}, ["routing_plan"]),
        ({"routing_plan": None}, ["routing_plan"]),
        ({"profit_control": "allow_loss"}, ["profit_control"]),
        (
            {"routing_plan": "plan", "profit_control": "profit", "max_calls": 5},
            ["profit_control", "routing_plan"],
        ),
    ],
)
def test_a_reseller_cannot_set_a_customers_routing(api, cast, routing, body, fields):
    body = {name: routing.plan.pk if value == "plan" else value for name, value in body.items()}
    response = api(cast.a.staff_key).patch(f"/api/v1/peers/{cast.a.customer.pk}/", body, format="json")
    assert response.status_code == 400
    assert sorted(response.json()) == fields
    assert all(message == ["Only the operator sets this."] for message in response.json().values())
    peer = Peer.objects.get(pk=cast.a.customer.pk)
    assert (peer.routing_plan_id, peer.profit_control, peer.max_calls) == (None, "no_loss", None)


def test_a_reseller_cannot_create_a_customer_with_routing(api, cast, routing):
    body = {"name": "New", "role": "customer", "routing_plan": routing.plan.pk}
    response = api(cast.a.staff_key).post("/api/v1/peers/", body, format="json")
    assert (response.status_code, list(response.json())) == (400, ["routing_plan"])
    assert not Peer.objects.filter(name="New").exists()


def test_a_reseller_records_its_customers_calls_and_never_sees_their_routing(api, cast, routing):
    peer_services.update_peer(cast.a.customer, actor=SYSTEM, changes={"routing_plan_id": routing.plan.pk})
    for key in (cast.a.staff_key, cast.a.customer_key):
        row = api(key).get(f"/api/v1/peers/{cast.a.customer.pk}/").json()
        assert "routing_plan" not in row and "profit_control" not in row
        assert row["record_calls"] is False
    response = api(cast.a.staff_key).patch(
        f"/api/v1/peers/{cast.a.customer.pk}/", {"record_calls": True}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["record_calls"] is True
    assert "routing_plan" not in response.json()
    assert [
        row for row in results(api(cast.a.staff_key).get("/api/v1/peers/")) if "routing_plan" in row
    ] == []


def test_the_operator_sets_a_customers_routing(api, cast, routing):
    client = api(cast.operator_key)
    url = f"/api/v1/peers/{cast.a.customer.pk}/"
    response = client.patch(
        url, {"routing_plan": routing.plan.pk, "profit_control": "allow_loss"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["routing_plan"], response.json()["profit_control"]) == (
        routing.plan.pk,
        "allow_loss",
    )
    response = client.patch(
        f"/api/v1/peers/{cast.supplier.pk}/", {"routing_plan": routing.plan.pk}, format="json"
    )
    assert (response.status_code, list(response.json())) == (400, ["routing_plan"])
    created = client.post(
        "/api/v1/peers/",
        {"name": "Routed", "role": "customer", "routing_plan": routing.plan.pk},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert Peer.objects.get(name="Routed").routing_plan == routing.plan
