"""Every report, whatever shape it reads, equals a direct aggregation of the rated CDRs, for
each of the cast: seeded random traffic over two resellers' customers and the operator's,
two suppliers in two currencies, two nodes, calls without a supplier; after the rater's
batches, errors rated once requeued, re-rating, and a rebuild."""

import itertools
import random
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import Account
from apps.cdr.models import Cdr
from apps.peers.models import Peer
from apps.reports import queries, rollups
from apps.reports.models import TrafficRollup
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory, NodeFactory, make_peer
from tests.reports.test_rollups import assert_rollups_match

DESTINATIONS = ("Germany", "France", "Spain", "")
SUMMED = ("attempts", "answered", "effective", "duration_ms", "pdd_ms", "pdd_calls", "sell", "buy")
WHO = ("operator", "reseller a", "reseller b", "customer a", "customer b")


def scope_of(cast, who: str) -> Scope:
    return {
        "operator": Scope.system,
        "reseller a": lambda: Scope.of_user(cast.a.staff),
        "reseller b": lambda: Scope.of_user(cast.b.staff),
        "customer a": lambda: Scope.of_user(cast.a.customer_user),
        "customer b": lambda: Scope.of_user(cast.b.customer_user),
    }[who]()


def money(rng) -> Decimal:
    return Decimal(rng.randrange(0, 500_000)) / 1_000_000


@pytest.fixture
def mixed(cast):
    """120 seeded random calls over the last two days; 15 of them rating errors."""
    Account.objects.filter(peer=cast.b.customer).update(currency="EUR")
    second_supplier = make_peer("Carrier Y", role=Peer.Role.SUPPLIER)
    Account.objects.filter(peer=second_supplier).update(currency="EUR")
    second_customer = make_peer("Customer A2", reseller=cast.a.reseller)
    customers = [cast.a.customer, second_customer, cast.b.customer, cast.operator_customer]
    suppliers = [cast.supplier, second_supplier, None]
    nodes = [cast.node, NodeFactory(name="node2")]
    rng = random.Random(17)
    now = timezone.now()
    cdrs = []
    for i in range(120):
        answered = rng.random() < 0.6
        created = now - timedelta(minutes=rng.randrange(5, 47 * 60))
        duration = rng.randrange(1, 600_000) if answered else 0
        cdrs.append(
            CdrFactory(
                customer=rng.choice(customers),
                supplier=rng.choice(suppliers),
                node=rng.choice(nodes),
                destination=rng.choice(DESTINATIONS),
                created_at=created,
                answered_at=created + timedelta(seconds=3) if answered else None,
                ended_at=created + timedelta(milliseconds=duration + 3000),
                sip_code=200 if answered else rng.choice((486, 487, 503, 404)),
                duration_ms=duration,
                billable_seconds=duration // 1000,
                supplier_billable_seconds=duration // 1000,
                pdd_ms=rng.choice((None, rng.randrange(100, 8000))),
                sell_cost=money(rng),
                buy_cost=money(rng),
                rating_state=Cdr.RatingState.ERROR if i % 8 == 0 else Cdr.RatingState.RATED,
            )
        )
    rated = [c.pk for c in cdrs if c.rating_state == Cdr.RatingState.RATED]
    errors = [c.pk for c in cdrs if c.rating_state == Cdr.RatingState.ERROR]
    # As the rater adds them: batches in its transaction; the errors in them are not added.
    for start in range(0, len(rated), 37):
        rollups.add_rated(rated[start : start + 37] + errors)
    cast.rng = rng
    cast.cdrs = cdrs
    cast.second_customer, cast.second_supplier, cast.node2 = second_customer, second_supplier, nodes[1]
    return cast


def rated_cdrs() -> list[Cdr]:
    return list(
        Cdr.objects.filter(rating_state=Cdr.RatingState.RATED).select_related(
            "customer__account", "supplier__account"
        )
    )


def expected_lines(cdrs: list[Cdr], scope: Scope, query: queries.Query) -> dict:
    """The report's lines straight from the CDRs: {(key, currency, cost currency): sums}."""
    zone = rollups.local_zone()
    lines = defaultdict(lambda: dict.fromkeys(SUMMED, 0))
    for cdr in cdrs:
        if not (query.start <= cdr.created_at < query.end):
            continue
        if scope.is_reseller and cdr.customer.reseller_id != scope.reseller_id:
            continue
        if scope.is_customer and cdr.customer_id != scope.peer_id:
            continue
        if query.customer_id and cdr.customer_id != query.customer_id:
            continue
        if query.destination and cdr.destination != query.destination:
            continue
        if scope.is_operator and query.supplier_id and cdr.supplier_id != query.supplier_id:
            continue
        if scope.is_operator and query.node_id and cdr.node_id != query.node_id:
            continue
        if query.group_by == "period":
            if query.period == "hour":
                key = rollups.hour_start(cdr.created_at).astimezone(zone)
            else:
                key = cdr.created_at.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            key = getattr(cdr, queries.GROUP_COLUMN[query.group_by])
        currency = cdr.customer.account.currency
        if scope.is_operator:
            cost_currency = cdr.supplier.account.currency if cdr.supplier else currency
        else:
            cost_currency = ""
        line = lines[key, currency, cost_currency]
        line["attempts"] += 1
        line["answered"] += cdr.answered_at is not None
        line["effective"] += cdr.answered_at is not None or cdr.sip_code in {486, 480, 487, 600, 603}
        line["duration_ms"] += cdr.duration_ms
        if cdr.pdd_ms is not None:
            line["pdd_ms"] += cdr.pdd_ms
            line["pdd_calls"] += 1
        line["sell"] += cdr.sell_cost
        line["buy"] += cdr.buy_cost if scope.is_operator else 0
    return {key: {k: v for k, v in sums.items() if v} for key, sums in lines.items()}


def reported_lines(report: queries.Report) -> dict:
    return {
        (line.key, line.currency, line.cost_currency): {
            name: getattr(line, name) for name in SUMMED if getattr(line, name)
        }
        for line in report.lines
    }


def queries_for(cast, who: str):
    """Every grouping the scope may use, with no filter and with each filter combination."""
    today = timezone.now().astimezone(rollups.local_zone()).date()
    start, end = queries.local_days(today - timedelta(days=2), today)
    filters = {
        "customer_id": (cast.a.customer.pk, cast.second_customer.pk, cast.operator_customer.pk),
        "destination": ("Germany", ""),
        "supplier_id": (cast.second_supplier.pk,),
        "node_id": (cast.node2.pk,),
    }
    combos = [{}]
    for size in (1, 2):
        for names in itertools.combinations(filters, size):
            combos.append({name: filters[name][0] for name in names})
    combos += [{"customer_id": pk} for pk in filters["customer_id"][1:]]
    for group_by in queries.groups_for(scope_of(cast, who)):
        for period in ("day", "hour"):
            for combo in combos:
                yield queries.Query(start=start, end=end, group_by=group_by, period=period, **combo)


def assert_every_report_matches(cast):
    cdrs = rated_cdrs()
    for who in WHO:
        scope = scope_of(cast, who)
        for query in queries_for(cast, who):
            shape = queries.shape_for(scope, query)
            if not scope.is_operator:
                # Scoping is by the customer: no tenant ever reads a shape without it.
                assert "customer" in rollups.SHAPES[shape], (who, query)
            report = queries.report(scope, query)
            assert reported_lines(report) == expected_lines(cdrs, scope, query), (who, shape, query)


def test_every_shape_answers_as_the_cdrs_for_everyone(mixed):
    assert_rollups_match()
    assert_every_report_matches(mixed)


def test_errors_rated_after_requeue_and_re_rated_calls_move_every_shape(mixed):
    errors = [c for c in mixed.cdrs if c.rating_state == Cdr.RatingState.ERROR]
    Cdr.objects.filter(pk__in=[c.pk for c in errors]).update(rating_state=Cdr.RatingState.RATED)
    rollups.add_rated([c.pk for c in errors])
    rng = mixed.rng
    changes = []
    for cdr in rng.sample([c for c in mixed.cdrs if c.answered_at], 20):
        cdr.refresh_from_db()
        old = (cdr.sell_cost, cdr.buy_cost, cdr.billable_seconds, cdr.supplier_billable_seconds)
        new = (money(rng), money(rng), rng.randrange(0, 600), rng.randrange(0, 600))
        Cdr.objects.filter(pk=cdr.pk).update(
            sell_cost=new[0], buy_cost=new[1], billable_seconds=new[2], supplier_billable_seconds=new[3]
        )
        changes.append((cdr.pk, old, new))
    assert rollups.move_prices(changes) > 0

    assert_rollups_match()
    assert_every_report_matches(mixed)

    before = set(TrafficRollup.objects.values_list("key", "attempts", "sell", "buy", "billable_seconds"))
    rollups.rebuild()
    assert (
        set(TrafficRollup.objects.values_list("key", "attempts", "sell", "buy", "billable_seconds")) == before
    )


@pytest.mark.parametrize(
    ("who", "group_by", "filters", "shape"),
    [
        ("operator", "period", {}, "node"),
        ("operator", "node", {}, "node"),
        ("operator", "customer", {}, "customer"),
        ("operator", "destination", {}, "destination"),
        ("operator", "supplier", {}, "supplier_destination"),
        ("operator", "destination", {"supplier_id": 1}, "supplier_destination"),
        ("operator", "customer", {"destination": "Spain"}, "customer_destination"),
        ("operator", "node", {"customer_id": 1}, "full"),
        ("operator", "supplier", {"node_id": 1}, "full"),
        ("reseller a", "period", {}, "customer"),
        ("reseller a", "destination", {}, "customer_destination"),
        ("reseller a", "period", {"destination": "Spain"}, "customer_destination"),
        ("customer a", "period", {}, "customer"),
        ("customer a", "destination", {}, "customer_destination"),
        # A tenant's supplier or node filter is ignored, so it does not widen the shape.
        ("customer b", "period", {"supplier_id": 1, "node_id": 1}, "customer"),
        ("reseller b", "customer", {"node_id": 1}, "customer"),
    ],
)
def test_a_query_reads_the_smallest_shape_that_has_what_it_needs(cast, who, group_by, filters, shape):
    now = timezone.now()
    query = queries.Query(start=now - timedelta(days=1), end=now, group_by=group_by, **filters)
    assert queries.shape_for(scope_of(cast, who), query) == shape


def test_a_batch_writes_few_rows_to_the_small_shapes(mixed):
    """The point of shapes: the node shape has a row per node and period, whatever the calls."""
    days = TrafficRollup.objects.filter(grain="day")
    # nodes x days x currency pairs (USD or EUR, each with USD, EUR or no supplier)
    assert days.filter(shape="node").count() <= 2 * 3 * 6
    assert days.filter(shape="full").count() > days.filter(shape="node").count()
