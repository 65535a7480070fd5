"""Sell price generation (the seed's "billing pack generation"): the write path.

The math is apps.rates.generation (pure); this module reads the suppliers' prices in
force, and writes the result through the import pipeline, so a generated table gets the
same validation, diff, notice and margin checks, versioning and atomic switch as a file.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from apps.core.errors import DomainError
from apps.core.services import ensure_manages
from apps.peers.models import Peer
from apps.rates.generation import GenerationResult, Rule, generate_sell_rates
from apps.rates.importing.report import ImportReport
from apps.rates.models import Rate, RateTable
from apps.rates.rows import RateRow
from apps.rates.services.activation import import_rows
from apps.tenancy.scope import Scope


@dataclass
class SellGeneration:
    generation: GenerationResult
    report: ImportReport


def supplier_rows(supplier: Peer, *, at: datetime) -> list[RateRow]:
    """The rows of `supplier`'s buy price list in force at `at`, as RateRows.

    Prices of any time only: a generated sell list prices every hour of the week alike, and
    a supplier's weekend price is not its price for a Monday call.
    """
    rates = (
        Rate.objects.live()
        .effective_at(at)
        .filter(table=supplier.buy_rate_table_id, period="")
        .values_list(
            "prefix",
            "price",
            "destination",
            "connection_fee",
            "min_seconds",
            "increment_seconds",
            "free_seconds",
        )
        .order_by("prefix", "-effective_from")
    )
    return [
        RateRow(prefix, price, destination, fee, minimum, increment, free)
        for prefix, price, destination, fee, minimum, increment, free in rates
    ]


def generate_sell_table(
    table: RateTable,
    *,
    actor: Scope,
    suppliers: list[Peer],
    rule: Rule | str,
    margin_percent: Decimal | None = None,
    margin_absolute: Decimal | None = None,
    minimum_margin: Decimal | None = None,
    n_cheapest: int = 3,
    supplier: Peer | None = None,
    rounding: int = 4,
    mode: str = "full",
    effective_from: datetime | None = None,
    dry_run: bool = False,
) -> SellGeneration:
    """Price `table` from `suppliers`' buy prices with a margin, as its next version.

    Operator only: the inputs are the suppliers' buy prices.
    """
    ensure_manages(actor, None)
    if table.purpose != RateTable.Purpose.SELL:
        raise DomainError("Sell prices are generated into a sell price list.", field="table")
    if not suppliers:
        raise DomainError("Name at least one supplier to price from.", field="suppliers")
    for peer in suppliers:
        if not peer.is_supplier or peer.buy_rate_table_id is None:
            raise DomainError(f"{peer} is not a supplier with a buy price list.", field="suppliers")
        if peer.buy_rate_table.currency != table.currency:
            raise DomainError(
                f"{peer} prices in {peer.buy_rate_table.currency}, the table in {table.currency}; "
                "currencies are not converted.",
                field="suppliers",
            )
    if supplier is not None and supplier not in suppliers:
        raise DomainError("The named supplier must be one of the suppliers.", field="supplier")
    at = effective_from or timezone.now()
    try:
        generation = generate_sell_rates(
            {peer.name: supplier_rows(peer, at=at) for peer in suppliers},
            rule=rule,
            margin_percent=margin_percent,
            margin_absolute=margin_absolute,
            minimum_margin=minimum_margin,
            n_cheapest=n_cheapest,
            supplier=supplier.name if supplier else None,
            rounding=rounding,
        )
    except ValueError as exc:
        raise DomainError(str(exc)) from None
    report = import_rows(
        table, generation.rows, mode=mode, effective_from=effective_from, actor=actor, dry_run=dry_run
    )
    return SellGeneration(generation, report)
