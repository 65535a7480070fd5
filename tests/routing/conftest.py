"""A routing plan on top of the cast: a second supplier with gateways, rules and routes."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.peers import services as peer_services
from apps.peers.models import Gateway, Peer
from apps.routing import services
from apps.routing.models import Method, QualityStat, Route, RoutingPlan, RoutingRule
from apps.tenancy.scope import Scope
from tests.conftest import Cast, build_cast, rows_for_module
from tests.factories import make_peer, make_rate_table

SYSTEM = Scope.system()


@dataclass
class Routing:
    plan: RoutingPlan
    lcr: RoutingRule
    uk: RoutingRule
    route: Route
    other_supplier: Peer
    gateway: Gateway
    other_gateway: Gateway
    stat: QualityStat


@pytest.fixture
def routing(cast: Cast) -> Routing:
    return build_routing(cast)


def build_routing(cast: Cast) -> Routing:
    """Carrier Y beside the cast's supplier, each with a gateway; the plan Standard with a
    least-cost rule routing to both and a priority rule for 44; one quality stat."""
    other = make_peer(
        "Carrier Y",
        role=Peer.Role.SUPPLIER,
        buy_rate_table_id=make_rate_table("Carrier Y buy", purpose="buy").pk,
    )
    gateway = peer_services.add_gateway(cast.supplier, actor=SYSTEM, name="x-main", host="203.0.113.10")
    other_gateway = peer_services.add_gateway(other, actor=SYSTEM, name="y-main", host="203.0.113.20")
    plan = services.create_plan(actor=SYSTEM, name="Standard", description="Everyone")
    lcr = services.add_rule(plan, actor=SYSTEM, method=Method.LEAST_COST)
    route = services.add_route(lcr, actor=SYSTEM, supplier=cast.supplier)
    services.add_route(lcr, actor=SYSTEM, supplier=other)
    uk = services.add_rule(plan, actor=SYSTEM, prefix="44", method=Method.PRIORITY)
    services.add_route(uk, actor=SYSTEM, supplier=other, gateway_id=other_gateway.pk, priority=1)
    now = timezone.now()
    stat = QualityStat.objects.create(
        supplier=cast.supplier,
        destination="United Kingdom",
        attempts=30,
        answered=20,
        answered_seconds=2500,
        window_start=now - timedelta(hours=1),
        window_end=now,
    )
    return Routing(plan, lcr, uk, route, other, gateway, other_gateway, stat)


def module_crowd(fill: Callable[[Cast, Routing], None]):
    """Fixtures `crowd`, `cast` and `routing` for a module whose tests only read many rows:
    the cast, its routing and what `fill` adds, built once for the module (rows_for_module).

        crowd, cast, routing = module_crowd(_fill)
    """

    @pytest.fixture(scope="module")
    def crowd(django_db_setup, django_db_blocker) -> tuple[Cast, Routing]:
        with rows_for_module(django_db_blocker):
            cast = build_cast()
            routing = build_routing(cast)
            fill(cast, routing)
            yield cast, routing

    @pytest.fixture
    def cast(crowd, db) -> Cast:
        return crowd[0]

    @pytest.fixture
    def routing(crowd) -> Routing:
        return crowd[1]

    return crowd, cast, routing
