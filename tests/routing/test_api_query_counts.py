"""Routing lists in the API cost a fixed number of queries, however many rows a page holds."""

import pytest

from apps.peers.models import Peer
from apps.routing import services
from apps.routing.models import Method, QualityStat, Route
from tests.api.conftest import results
from tests.conftest import Cast
from tests.factories import make_peer
from tests.routing.conftest import SYSTEM, Routing, module_crowd

PREFIXES = ["routing-plans", "routing-rules", "routes", "quality-stats"]
ROWS = 30
# Key lookup and its last-used touch, COUNT and the page.
MAX_QUERIES = 4


def _fill(cast: Cast, routing: Routing) -> None:
    suppliers = [make_peer(f"Supplier {n:02}", role=Peer.Role.SUPPLIER) for n in range(ROWS)]
    for n, supplier in enumerate(suppliers):
        services.create_plan(actor=SYSTEM, name=f"Plan {n:02}", parent_id=routing.plan.pk)
        rule = services.add_rule(routing.plan, actor=SYSTEM, prefix=f"{100 + n}", method=Method.QUALITY)
        services.add_route(rule, actor=SYSTEM, supplier=supplier)
        services.add_route(routing.lcr, actor=SYSTEM, supplier=supplier, max_calls=n + 1)
        QualityStat.objects.create(
            supplier=supplier,
            destination=f"Destination {n}",
            attempts=n + 1,
            answered=n,
            answered_seconds=60 * n,
            window_start=routing.stat.window_start,
            window_end=routing.stat.window_end,
        )


crowd, cast, routing = module_crowd(_fill)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_list_query_count_does_not_grow_with_rows(api, cast, crowd, django_assert_max_num_queries, prefix):
    client = api(cast.operator_key)
    with django_assert_max_num_queries(MAX_QUERIES):
        rows = results(client.get(f"/api/v1/{prefix}/", {"limit": 100}))
    assert len(rows) >= ROWS


def test_lists_paginate(api, cast, crowd):
    body = api(cast.operator_key).get("/api/v1/routes/", {"limit": 10}).json()
    assert body["count"] == Route.objects.count() and len(body["results"]) == 10 and body["next"]
