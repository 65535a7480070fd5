"""Re-rating: price a period's rated calls again after a price list was corrected.

History is not rewritten: the charges already posted stay on the ledger, and the
difference between the old and the new price of every changed call is posted as an
adjustment, one per account and batch (reference "rerate:<run>:<first CDR id>"), in
the same transaction that writes the calls' new prices. A batch is therefore applied
whole or not at all, and a run that stopped (a node died) resumes after its last
batch (`RerateRun.last_cdr_id`) without posting anything twice. The run's lines keep,
per account, how many calls changed and what they cost before and after.

Which side of a call is priced again follows the run's filter: a peer's calls are
re-priced on its side (sell when it was the customer, buy when the supplier), a table's
calls on the side that uses it, and a run with neither re-prices both sides.

What is priced again is what call control decided, from the lists as they are now: the
number it priced (its reservation's, after tech prefix and ingress rewrites; without a
reservation, the number as received less the tech prefix), looked up in the customer's
sell list and the answering supplier's buy list at the call's set-up time. The tariffs
the reservation carries are what the rater charged first; a corrected list is the
reason to re-rate, so they are not reused here. The calls' reservations are read once per
batch (rating.reservations_of).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import LedgerEntry, RerateLine, RerateRun
from apps.billing.services.ledger import Posting, post
from apps.billing.services.rating import CDR_COLUMNS, PeerDirectory, decided_for, price, reservations_of
from apps.bundles.offers import net_cost
from apps.cdr.models import Cdr
from apps.core.db import retry_on_conflict, update_rows
from apps.core.errors import DomainError
from apps.core.money import money
from apps.core.services import ensure_manages
from apps.peers.models import Peer
from apps.reports import rollups
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)

# Calls read per transaction. Each batch posts one adjustment per account it changes and
# holds those accounts' locks until it commits; batches of 5000 posted a quarter fewer
# adjustments than batches of 2000 and re-rated a million calls 10 % faster (see
# docs/BENCHMARKS.md, bench/rating.py).
BATCH_SIZE = 5000
SELL, BUY = "sell", "buy"
# A call's prices as re-rating reads and writes them, in this order.
PRICE_FIELDS = ("sell_cost", "buy_cost", "billable_seconds", "supplier_billable_seconds")


@dataclass(frozen=True, slots=True)
class Change:
    cdr_id: int
    side: str
    account_id: int
    before: Decimal
    after: Decimal
    seconds: int
    # The buy side of a mutual peer (Peer.Role.USER): its calls' cost was credited to it.
    credited: bool = False


@retry_on_conflict
def request_rerate(
    *,
    actor: Scope,
    period_start: datetime,
    period_end: datetime,
    peer: Peer | None = None,
    table=None,
) -> RerateRun:
    """Record a re-rating of [period_start, period_end) and queue it on this node's worker."""
    if period_start is None or period_end is None or period_end <= period_start:
        raise DomainError("The period ends after it starts.", field="period_end")
    if period_end > timezone.now() + timedelta(days=1):
        raise DomainError("A period in the future has no calls to re-rate.", field="period_end")
    owners = {getattr(peer, "reseller_id", None), getattr(table, "reseller_id", None)} - {None}
    if peer is not None and table is not None and peer.reseller_id != table.reseller_id:
        raise DomainError("The peer and the price list belong to different owners.", field="table")
    if not actor.is_operator:
        if peer is None and table is None:
            raise DomainError("Choose one of your peers or price lists to re-rate.", field="peer")
        for owner in owners or {None}:
            ensure_manages(actor, owner)
    run = RerateRun.objects.create(
        period_start=period_start,
        period_end=period_end,
        peer=peer,
        table=table,
        reseller_id=next(iter(owners), None),
        actor=actor.user,
        actor_label=actor.label[:100],
    )
    audit.record(actor, "rerate.requested", run, period_start=period_start, period_end=period_end)
    transaction.on_commit(lambda: _queue(run.pk))
    return run


def _queue(run_id: int) -> None:
    from django_q.tasks import async_task

    async_task("apps.billing.services.rerating.run", run_id, cluster=settings.NODE_NAME)


def _calls(run: RerateRun):
    """The run's answered calls in every rating state: `run` keeps the rated ones.

    With rating_state in the query MariaDB reads the batches through the rating queue's
    index (rating_state, id) from its first rated CDR, skipping up to the run's place for
    every batch; without it, each batch is a range of the primary key. Calls in error are
    a few percent of the rows read.
    """
    rows = Cdr.objects.filter(
        created_at__gte=run.period_start,
        created_at__lt=run.period_end,
        duration_ms__gt=0,
    )
    if run.peer_id:
        rows = rows.filter(Q(customer_id=run.peer_id) | Q(supplier_id=run.peer_id))
    if run.table_id:
        rows = rows.filter(
            Q(customer__sell_rate_table_id=run.table_id) | Q(supplier__buy_rate_table_id=run.table_id)
        )
    return rows


def _compare(run: RerateRun, rows: list[tuple], peers: PeerDirectory) -> list[Change]:
    """The calls of `rows` whose price moved, side by side."""
    changes = []
    found = reservations_of(rows)
    for row in rows:
        cdr_id, *pricing, bundle_seconds, bundle_money, sell_cost, buy_cost = row
        # The lists decide, for the number call control priced (its reservation's).
        pricing = (cdr_id, *pricing)
        priced = price(pricing, peers, named=False, decided=decided_for(pricing, found), reprice=True)
        if priced.error:
            # The corrected price list no longer prices this call: keep its old price and
            # say so in the log; the run's report counts it as examined, not changed.
            logger.warning("re-rating %s: CDR %s: %s", run.pk, cdr_id, priced.error)
            continue
        if bundle_seconds or bundle_money:
            # What a bundle covered stays covered: the new price applies to the rest.
            priced.sell_cost = net_cost(
                priced.sell_cost, priced.billable_seconds, bundle_seconds, bundle_money
            )
        customer, supplier = peers.get(priced.customer_id), peers.get(priced.supplier_id)
        if run.peer_id:
            sell_side, buy_side = run.peer_id == priced.customer_id, run.peer_id == priced.supplier_id
        elif run.table_id:
            sell_side = customer.sell_table_id == run.table_id
            buy_side = supplier is not None and supplier.buy_table_id == run.table_id
        else:
            sell_side = buy_side = True
        if sell_side and customer.account_id and money(sell_cost or 0) != priced.sell_cost:
            changes.append(
                Change(
                    cdr_id,
                    SELL,
                    customer.account_id,
                    money(sell_cost or 0),
                    priced.sell_cost,
                    priced.billable_seconds,
                )
            )
        if (
            buy_side
            and supplier is not None
            and supplier.account_id
            and money(buy_cost or 0) != priced.buy_cost
        ):
            changes.append(
                Change(
                    cdr_id,
                    BUY,
                    supplier.account_id,
                    money(buy_cost or 0),
                    priced.buy_cost,
                    priced.supplier_billable_seconds,
                    supplier.mutual,
                )
            )
    return changes


@retry_on_conflict
def _apply(run_id: int, first_id: int, last_id: int, examined: int, changes: list[Change]) -> int:
    """Write one batch: the calls' new prices, the adjustments, the lines and the run's place."""
    run = RerateRun.objects.select_for_update().get(pk=run_id)
    if run.last_cdr_id >= last_id:
        return 0  # this batch was applied already (a retried task, a second worker)
    if changes:
        by_cdr: dict[int, dict[str, Change]] = defaultdict(dict)
        for change in changes:
            by_cdr[change.cdr_id][change.side] = change
        # Lock the calls and check their prices did not move since they were read: a
        # second run over the same calls, or a late rating, would make the difference wrong.
        current = {
            pk: values
            for pk, *values in Cdr.objects.select_for_update()
            .filter(pk__in=list(by_cdr))
            .order_by("pk")
            .values_list("pk", *PRICE_FIELDS)
        }
        moved = [
            pk
            for pk, sides in by_cdr.items()
            if (SELL in sides and money(current[pk][0] or 0) != sides[SELL].before)
            or (BUY in sides and money(current[pk][1] or 0) != sides[BUY].before)
        ]
        if moved:
            raise DomainError(f"Calls {moved[:5]} changed while re-rating {run_id}; run it again.")
        updates = []
        for pk, sides in by_cdr.items():
            # The side that did not change keeps what was read under the lock above.
            sell, buy, seconds, supplier_seconds = current[pk]
            if SELL in sides:
                sell, seconds = sides[SELL].after, sides[SELL].seconds
            if BUY in sides:
                buy, supplier_seconds = sides[BUY].after, sides[BUY].seconds
            updates.append((pk, sell, buy, seconds, supplier_seconds))
        update_rows(Cdr, PRICE_FIELDS, updates, rated_at=timezone.now())
        # The reports' rollups move with the prices, in this transaction (apps.reports.rollups).
        rollups.move_prices([(pk, tuple(current[pk]), tuple(values)) for pk, *values in updates])
        totals: dict[int, list] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
        for change in changes:
            # As costs to the account: what a mutual peer terminated was credited, a cost < 0.
            sign = -1 if change.credited else 1
            line = totals[change.account_id]
            line[0] += 1
            line[1] += sign * change.before
            line[2] += sign * change.after
        post(
            [
                Posting(
                    account_id,
                    LedgerEntry.Kind.ADJUSTMENT,
                    before - after,  # a charge is negative: a dearer call takes more
                    reference=f"rerate:{run_id}:{first_id}",
                    description=f"Re-rating {run_id}: {calls} call(s) re-priced",
                )
                for account_id, (calls, before, after) in sorted(totals.items())
                if before != after
            ]
        )
        # The run's lines change only under the run's lock, held here: read, add, write.
        lines = {
            account_id: line
            for account_id, *line in RerateLine.objects.filter(run_id=run_id, account_id__in=list(totals))
            .order_by("account_id")
            .values_list("account_id", "pk", "calls", "before", "after")
        }
        new_lines, grown_lines = [], []
        for account_id, (calls, before, after) in sorted(totals.items()):
            if account_id in lines:
                pk, old_calls, old_before, old_after = lines[account_id]
                grown_lines.append((pk, old_calls + calls, old_before + before, old_after + after))
            else:
                new_lines.append(
                    RerateLine(run_id=run_id, account_id=account_id, calls=calls, before=before, after=after)
                )
        RerateLine.objects.bulk_create(new_lines)
        update_rows(RerateLine, ("calls", "before", "after"), grown_lines)
    changed = len({change.cdr_id for change in changes})
    RerateRun.objects.filter(pk=run_id).update(
        last_cdr_id=last_id, examined=F("examined") + examined, changed=F("changed") + changed
    )
    return changed


def run(run_id: int, *, batch_size: int = BATCH_SIZE) -> RerateRun:
    """Re-rate the run's calls batch by batch (the task); resumes where it stopped."""
    rerun = RerateRun.objects.get(pk=run_id)
    if rerun.state == RerateRun.State.DONE:
        return rerun
    RerateRun.objects.filter(pk=run_id).update(
        state=RerateRun.State.RUNNING, started_at=rerun.started_at or timezone.now(), error=""
    )
    peers = PeerDirectory()
    # What pricing reads (rating.CDR_COLUMNS), what a bundle covered, then the prices to
    # compare and the state.
    columns = (*CDR_COLUMNS, "bundle_seconds", "bundle_money", "sell_cost", "buy_cost", "rating_state")
    calls = _calls(rerun).order_by("pk")
    try:
        last_id = rerun.last_cdr_id
        while True:
            rows = list(calls.filter(pk__gt=last_id).values_list(*columns)[:batch_size])
            if not rows:
                break
            rated = [row[:-1] for row in rows if row[-1] == Cdr.RatingState.RATED]
            peers.load({row[2] for row in rated} | {row[3] for row in rated})
            _apply(run_id, rows[0][0], rows[-1][0], len(rated), _compare(rerun, rated, peers))
            last_id = rows[-1][0]
    except Exception as exc:
        RerateRun.objects.filter(pk=run_id).update(state=RerateRun.State.FAILED, error=str(exc)[:2000])
        logger.exception("re-rating %s failed", run_id)
        raise
    RerateRun.objects.filter(pk=run_id).update(state=RerateRun.State.DONE, finished_at=timezone.now())
    rerun.refresh_from_db()
    logger.info("re-rating %s: %s calls examined, %s changed", run_id, rerun.examined, rerun.changed)
    return rerun
