"""Routing pages in the admin cost a fixed number of queries, however many rows they show."""

import pytest

from apps.peers.models import Peer
from apps.routing import services
from apps.routing.models import Method, QualityStat, Route, RoutingPlan, RoutingRule
from tests.admin.conftest import admin_url, listed
from tests.conftest import Cast
from tests.factories import make_peer
from tests.routing.conftest import SYSTEM, Routing, module_crowd

MODELS = [RoutingPlan, RoutingRule, Route, QualityStat]


ROWS = 30


def _fill(cast: Cast, routing: Routing) -> None:
    suppliers = [make_peer(f"Supplier {n:02}", role=Peer.Role.SUPPLIER) for n in range(3)] + [cast.supplier]
    for n in range(ROWS):
        plan = services.create_plan(actor=SYSTEM, name=f"Plan {n:02}", parent_id=routing.plan.pk)
        rule = services.add_rule(routing.plan, actor=SYSTEM, prefix=f"{100 + n}", method=Method.WEIGHT)
        services.add_rule(plan, actor=SYSTEM, prefix=f"{n}")
        for supplier in suppliers:
            services.add_route(rule, actor=SYSTEM, supplier=supplier, weight=n + 1)
        QualityStat.objects.create(
            supplier=suppliers[n % 4],
            destination=f"Destination {n}",
            attempts=n + 1,
            answered=n,
            answered_seconds=60 * n,
            window_start=routing.stat.window_start,
            window_end=routing.stat.window_end,
        )


crowd, cast, routing = module_crowd(_fill)


@pytest.mark.parametrize("model", MODELS)
def test_routing_changelist_queries_do_not_grow_with_rows(
    model, crowd, cast, login, django_assert_max_num_queries
):
    client = login(cast.operator)
    with django_assert_max_num_queries(8):
        response = client.get(admin_url(model, "changelist"))
    assert len(listed(response)) >= ROWS


def test_a_plan_page_costs_the_same_with_many_rules(
    crowd, cast, routing, login, django_assert_max_num_queries
):
    client = login(cast.operator)
    with django_assert_max_num_queries(15):
        response = client.get(admin_url(routing.plan))
    assert response.status_code == 200
    assert len(next(iter(response.context["inline_admin_formsets"])).formset.forms) == ROWS + 2
