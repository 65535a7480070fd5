"""List endpoints cost a fixed number of queries, however many rows a page holds."""

from decimal import Decimal

import pytest

from apps.billing import services as billing
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.api.conftest import add_rate, results
from tests.conftest import Cast, build_cast, rows_for_module
from tests.factories import CdrFactory, NodeFactory, make_peer, make_rate_table

SYSTEM = Scope.system()
ROWS = 30
# Key lookup and its last-used touch, COUNT, the page, and one prefetch (a peer's nodes).
MAX_QUERIES = 5
# A customer sees its own peer, account and price list, and no gateways (it is no supplier).
CUSTOMER_ROWS = {"peers": 1, "accounts": 1, "rate-tables": 1, "gateways": 0}


@pytest.fixture(scope="module")
def crowd(django_db_setup, django_db_blocker) -> Cast:
    """The cast, and about 30 rows behind every list endpoint, all visible to reseller A and
    the operator: built once for the module's tests, which only read them."""
    with rows_for_module(django_db_blocker):
        cast = build_cast()
        _fill(cast)
        yield cast


@pytest.fixture
def cast(crowd, db) -> Cast:
    return crowd


def _fill(cast: Cast) -> None:
    reseller = cast.a.reseller
    trunk = make_peer("Trunk A", role=Peer.Role.USER, reseller=reseller)
    for n in range(ROWS):
        peer = make_peer(f"Crowd {n:02}", reseller=reseller, sell_rate_table_id=cast.a.sell_table.pk)
        peer.nodes.set([cast.node])
        peer_services.add_endpoint(cast.a.customer, actor=SYSTEM, ip=f"192.0.2.{n + 1}")
        peer_services.add_gateway(trunk, actor=SYSTEM, name=f"gw{n}", host=f"gw{n}.example.com")
        peer_services.add_sip_account(
            cast.a.customer,
            actor=SYSTEM,
            username=f"ext{n}",
            domain="sip.example.com",
            password="sip-Pass-2024",
        )
        billing.post_payment(
            cast.a.customer.account, actor=SYSTEM, amount=Decimal("1"), reference=f"crowd-{n}"
        )
        make_rate_table(f"Crowd list {n:02}", reseller=reseller)
        add_rate(cast.a.sell_table, f"{100 + n}", "0.01")
        CdrFactory(customer=cast.a.customer, supplier=cast.supplier, node=cast.node)
        NodeFactory(name=f"crowd{n}")


@pytest.mark.parametrize(
    "prefix",
    [
        "peers",
        "endpoints",
        "gateways",
        "sip-accounts",
        "accounts",
        "ledger-entries",
        "rate-tables",
        "rates",
        "cdrs",
    ],
)
@pytest.mark.parametrize("who", ["operator_key", "a.staff_key", "a.customer_key"])
def test_list_query_count_does_not_grow_with_rows(
    api, cast, crowd, django_assert_max_num_queries, prefix, who
):
    key = cast.operator_key if who == "operator_key" else getattr(cast.a, who.split(".")[1])
    client = api(key)
    with django_assert_max_num_queries(MAX_QUERIES):
        rows = results(client.get(f"/api/v1/{prefix}/", {"limit": 100}))
    assert len(rows) >= (CUSTOMER_ROWS.get(prefix, ROWS) if who == "a.customer_key" else ROWS)


def test_node_list_query_count(api, cast, crowd, django_assert_max_num_queries):
    with django_assert_max_num_queries(MAX_QUERIES):
        assert len(results(api(cast.operator_key).get("/api/v1/nodes/", {"limit": 100}))) == ROWS + 1
