"""Margins per level: a reseller with an account with the operator pays it for its
customers' calls; the operator's report shows what resellers kept and its own profit after
them, a reseller's report its cost (what it pays the operator) and its profit, and a
customer's report neither.

Reseller A has an account at 0.18 a call; its customer's calls cost the customer 0.25 and
0.40. Reseller B has no account. The operator's direct customer pays 0.30. No supplier:
nothing is bought.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.services import rating, rerating
from apps.billing.services.ledger import open_reseller_account
from apps.cdr.models import Cdr
from apps.peers.models import Peer
from apps.rates import lookup
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.reports import queries, rollups
from apps.tenancy.scope import Scope
from tests.billing.test_reseller_money import operator_prices_for

SYSTEM = Scope.system()


@pytest.fixture
def traffic(cast, unrated_call):
    open_reseller_account(
        cast.a.reseller, actor=SYSTEM, rate_table_id=operator_prices_for(cast.a.reseller, "999", "0.18").pk
    )
    unrated_call(cast.a.customer, "0.25")
    unrated_call(cast.a.customer, "0.40")
    unrated_call(cast.b.customer, "0.50")
    unrated_call(cast.operator_customer, "0.30")
    rating.rate_all()
    return cast


def by_customer(scope):
    today = timezone.now().astimezone(rollups.local_zone()).date()
    start, end = queries.local_days(today, today)
    report = queries.report(scope, queries.Query(start=start, end=end, group_by="customer"))
    return {line.label: line for line in report.lines}


def figures(line, names):
    return tuple(getattr(line, name) for name in names)


def test_the_operator_sees_what_resellers_kept_and_its_own_profit_after_them(traffic):
    lines = by_customer(SYSTEM)

    names = ("revenue", "resellers_margin", "cost", "profit", "margin")
    assert figures(lines["Customer A"], names) == (Decimal("0.65"), Decimal("0.29"), 0, Decimal("0.36"), 100)
    # Reseller B has no account with us: its customers' calls are ours at their price, as before.
    assert figures(lines["Customer B"], names) == (Decimal("0.50"), 0, 0, Decimal("0.50"), 100)
    assert figures(lines["Direct Customer"], names) == (Decimal("0.30"), 0, 0, Decimal("0.30"), 100)
    assert "resellers_margin" in dict(queries.columns_for(SYSTEM))


def test_a_reseller_sees_its_cost_with_the_operator_and_its_margin(traffic):
    scope_a = Scope.of_user(traffic.a.staff)
    lines = by_customer(scope_a)

    assert list(lines) == ["Customer A"]
    line = lines["Customer A"]
    assert figures(line, ("revenue", "cost", "profit", "margin")) == (
        Decimal("0.65"),
        Decimal("0.36"),
        Decimal("0.29"),
        Decimal("44.62"),
    )
    assert [name for name, _ in queries.columns_for(scope_a)][-3:] == ["cost", "profit", "margin"]
    assert line.buy == 0  # never what the operator pays its suppliers
    # Reseller B has no account with us: what it pays is not known here.
    (line_b,) = by_customer(Scope.of_user(traffic.b.staff)).values()
    assert figures(line_b, ("revenue", "cost", "profit")) == (Decimal("0.50"), None, None)


def test_a_customer_sees_what_it_spent_and_not_what_its_reseller_pays(traffic):
    scope = Scope.of_user(traffic.a.customer_user)
    lines = by_customer(scope)

    assert (lines["Customer A"].revenue, lines["Customer A"].wholesale, lines["Customer A"].cost) == (
        Decimal("0.65"),
        0,
        None,
    )
    assert {"cost", "profit", "margin", "resellers_margin"}.isdisjoint(dict(queries.columns_for(scope)))


def test_re_rating_a_reseller_customers_price_moves_what_the_reseller_kept(traffic):
    customer = Peer.objects.get(pk=traffic.a.customer.pk)
    first = Cdr.objects.filter(customer=customer).order_by("pk").first()
    corrected = Rate(
        prefix=first.callee[:-1],
        destination="Corrected",
        price=Decimal(0),
        connection_fee=Decimal("0.35"),
        effective_from=timezone.now() - timedelta(days=1),
    )
    rate_services.add_rates(customer.sell_rate_table, [corrected], actor=SYSTEM)
    table_id = customer.sell_rate_table_id  # its index is made again from the corrected rows
    lookup.index_path(table_id, lookup.live_version(table_id)).unlink(missing_ok=True)
    lookup.forget_indexes()
    now = timezone.now()

    rerating.run(
        rerating.request_rerate(
            actor=SYSTEM,
            peer=customer,
            period_start=now - timedelta(days=1),
            period_end=now + timedelta(hours=1),
        ).pk
    )

    line = by_customer(SYSTEM)["Customer A"]
    # 0.35 + 0.40 paid; the reseller still pays us 0.18 a call: it kept 0.39.
    assert figures(line, ("revenue", "resellers_margin", "profit")) == (
        Decimal("0.75"),
        Decimal("0.39"),
        Decimal("0.36"),
    )
