"""Generating a sell table from suppliers' prices, through the import pipeline."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.core.errors import DomainError, NotAllowed
from apps.peers.models import Peer
from apps.rates.models import Rate
from apps.rates.rows import RateRow
from apps.rates.services.activation import import_rows
from apps.rates.services.selling import generate_sell_table
from apps.tenancy.scope import Scope
from tests.factories import make_peer, make_rate_table
from tests.rates.import_helpers import at, price_at

START = at("2026-01-01T00:00:00")


def supplier(name: str, prices: dict[str, str], *, currency: str = "USD") -> Peer:
    table = make_rate_table(f"{name} buy", purpose="buy", currency=currency)
    rows = [RateRow(prefix, Decimal(price), destination=f"Dest {prefix}") for prefix, price in prices.items()]
    assert import_rows(table, rows, mode="full", effective_from=START, actor=Scope.system()).ok
    return make_peer(name, role=Peer.Role.SUPPLIER, buy_rate_table_id=table.pk, currency=currency)


@pytest.fixture
def suppliers(db):
    return [
        supplier("Alpha", {"44": "0.0100", "33": "0.0200"}),
        supplier("Beta", {"44": "0.0080", "49": "0.0300"}),
    ]


def test_cheapest_with_a_margin_becomes_the_tables_live_prices(suppliers, system):
    table = make_rate_table("Retail")
    result = generate_sell_table(
        table,
        actor=system,
        suppliers=suppliers,
        rule="cheapest",
        margin_percent=Decimal("25"),
        minimum_margin=Decimal("0.001"),
        effective_from=START,
    )
    assert result.report.ok
    moment = at("2026-02-01T00:00:00")
    assert price_at(table, "4420", moment) == Decimal("0.0100")  # 0.008 + 25 % of it
    assert price_at(table, "3310", moment) == Decimal("0.0250")
    assert price_at(table, "4910", moment) == Decimal("0.0375")
    assert result.report.diff["counts"]["new"] == 3


def test_a_second_generation_after_a_supplier_price_rise_changes_only_that_price(suppliers, system):
    table = make_rate_table("Retail")
    options = {"actor": system, "suppliers": suppliers, "rule": "cheapest"}
    options["margin_absolute"] = Decimal("0.002")
    generate_sell_table(table, effective_from=START, **options)
    beta = suppliers[1]
    rows = [RateRow("44", Decimal("0.0120")), RateRow("49", Decimal("0.0300"))]
    rise = at("2026-03-01T00:00:00")
    assert import_rows(beta.buy_rate_table, rows, mode="full", effective_from=rise, actor=system).ok
    generate_sell_table(table, effective_from=rise, **options)
    assert price_at(table, "44", at("2026-02-01T00:00:00")) == Decimal("0.0100")  # history kept
    assert price_at(table, "44", at("2026-03-02T00:00:00")) == Decimal("0.0120")  # Alpha is now cheaper
    assert price_at(table, "33", at("2026-03-02T00:00:00")) == Decimal("0.0220")


def test_generation_is_refused_across_currencies_and_for_resellers(suppliers, cast, system):
    table = make_rate_table("Euro retail", currency="EUR")
    with pytest.raises(DomainError, match="not converted"):
        generate_sell_table(table, actor=system, suppliers=suppliers, rule="cheapest")
    with pytest.raises(NotAllowed):
        generate_sell_table(
            cast.a.sell_table, actor=Scope.of_user(cast.a.staff), suppliers=suppliers, rule="cheapest"
        )
    assert not Rate.objects.filter(table__in=[table, cast.a.sell_table]).exists()


def test_the_command_prints_the_report_and_refuses_unknown_suppliers(suppliers, capsys):
    make_rate_table("Wholesale")
    call_command(
        "generate_sell_prices",
        "Wholesale",
        "--supplier",
        "Alpha",
        "--supplier",
        "Beta",
        "--rule",
        "named_supplier",
        "--named",
        "Alpha",
        "--margin-percent",
        "10",
        "--effective-from",
        "2026-01-01T00:00:00Z",
    )
    out = capsys.readouterr().out
    assert "2 prices generated, 1 skipped" in out
    assert "skipped 49: supplier Alpha has no price for it" in out
    with pytest.raises(CommandError, match="no supplier named Gamma"):
        call_command("generate_sell_prices", "Wholesale", "--supplier", "Gamma")


def test_a_switch_queues_an_index_rebuild_on_this_node_and_every_enabled_node(
    cast, system, django_capture_on_commit_callbacks
):
    from django_q.models import OrmQ

    from apps.nodes import services as node_services
    from tests.factories import NodeFactory

    NodeFactory(name="node2")
    node_services.update_node(NodeFactory(name="node3"), actor=system, changes={"enabled": False})
    OrmQ.objects.all().delete()
    table = make_rate_table("Indexed")
    with django_capture_on_commit_callbacks(execute=True):
        rows = [RateRow("44", Decimal("0.01"))]
        assert import_rows(table, rows, mode="full", effective_from=START, actor=system).ok
    queued = [(row.key, row.task["func"], row.task["args"]) for row in OrmQ.objects.all()]
    rebuilds = sorted(key for key, func, args in queued if func == "apps.rates.lookup.rebuild_index")
    assert rebuilds == ["node1", "node2"]
    assert {args for _, func, args in queued if func == "apps.rates.lookup.rebuild_index"} == {(table.pk,)}
