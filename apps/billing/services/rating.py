"""Rating: price every CDR on both sides, post its charges and release its money, once.

A node's worker rates the oldest unrated CDRs in micro-batches (`rate_batch`), one
transaction per batch:

1. claim the batch: lock the oldest unrated CDRs, this node's first (`SELECT … FOR UPDATE
   SKIP LOCKED`). CDRs another rater holds are passed over, so two workers on one server
   take consecutive batches side by side instead of both reading the same oldest CDRs
   and one then waiting for the other only to find them rated;
2. price them as call control decided, by each side's billing increments: the calls'
   reservations (one query for the batch) carry the number call control priced (after
   the tech prefix and ingress rewrites; the CDR has the number as received), the sell
   tariff and the buy tariff of every supplier offered, of which the one that answered
   (`Cdr.supplier`) is charged. What a reservation does not carry (one made before it
   carried prices; a call without one) comes from the node's memory-mapped price indexes,
   without a query, as they stood when the call was set up (`Cdr.created_at`), for that
   number, else the number as received less the customer's tech prefix; of a list's time
   periods (weekend, offpeak), the one in force at set-up on its peer's clock. This takes
   some 15 ms for 500 CDRs and holds only the claimed CDRs' locks: the accounts, which
   raters and call control share, are locked from step 4 on;
3. write each CDR's prices, or its reason when it cannot be priced (kept, never dropped:
   the admin lists rating errors, and `rate_cdrs --retry-errors` puts them back);
4. post one charge per CDR and side (`services.post`: unique reference "cdr:<id>" per
   account and kind, one balance update per account per batch);
5. release the calls' reservations read in step 2 that are still held (one update of
   `Account.reserved` per account).

Galera does not share row locks between nodes: two raters on two nodes may both claim a
CDR. Both then write the CDR row and the accounts' rows, so the second commit fails
certification (a deadlock error), `retry_on_conflict` replays the batch, and the replay
finds the CDRs rated and skips them. Each batch writes each account's balance once,
however many of its calls the batch holds, which keeps those conflicts rare (see
docs/BILLING.md).
"""

import logging
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry, Reservation
from apps.billing.services import reservations
from apps.billing.services.ledger import BalanceOutOfRange, Posting, post_rated
from apps.bundles.services import usage as bundle_usage
from apps.cdr.models import Cdr
from apps.core.db import batches, chunks, retry_on_conflict, update_rows
from apps.core.money import MAX_AMOUNT, MAX_BALANCE, money
from apps.peers.models import Peer
from apps.rates.lookup import get_index, periods_at
from apps.rates.tariffs import Tariff, rate_call
from apps.reports import rollups

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# A backlog being rated waits a little longer after each batch that gave up on write
# conflicts (CONFLICT_PAUSE seconds times the batches in a row), and stops after this many.
CONFLICT_PAUSE = 0.5
GIVE_UP_LIMIT = 10
# A CDR still unrated this long after its call ended is rated by any node: its own
# node's worker is evidently not running (the node is down or its workers are stuck).
TAKEOVER_AFTER = timedelta(minutes=2)
ERROR_LENGTH = Cdr._meta.get_field("rating_error").max_length

# What pricing reads of a CDR, in this order.
CDR_COLUMNS = ("pk", "call_id", "customer_id", "supplier_id", "callee", "created_at", "duration_ms")
# What rating writes to a CDR besides rated_at, in this order.
RATING_FIELDS = (
    "rating_state",
    "rating_error",
    "sell_cost",
    "buy_cost",
    "reseller_cost",
    "billable_seconds",
    "supplier_billable_seconds",
    "bundle_usage",
    "bundle_seconds",
    "bundle_money",
)


@dataclass(frozen=True, slots=True)
class PeerPrices:
    """What rating needs of a peer: its price lists and its account."""

    name: str
    sell_table_id: int | None
    buy_table_id: int | None
    account_id: int | None
    tech_prefix: str = ""
    zone: tzinfo | None = None  # its clock, for its price list's time periods (None: TIME_ZONE)
    # A reseller's customer whose reseller has an account with the operator: that account
    # is charged for the call at the operator's prices for the reseller (its rate table).
    reseller: str = ""
    reseller_account_id: int | None = None
    reseller_table_id: int | None = None
    # Sends and receives (Peer.Role.USER): its account is its money with us, and the calls
    # it terminates for us are credited to it, not debited as a supplier's.
    mutual: bool = False


@dataclass(slots=True)
class Priced:
    """One CDR's rating: its prices, or the reason it has none."""

    cdr_id: int
    call_id: str
    customer_id: int | None
    supplier_id: int | None
    occurred_at: datetime
    sell_cost: Decimal | None = None
    buy_cost: Decimal | None = None
    reseller_cost: Decimal | None = None  # what the customer's reseller pays the operator
    billable_seconds: int = 0
    supplier_billable_seconds: int = 0
    destination: str = ""
    error: str = ""
    number: str = ""  # as priced
    listed_cost: Decimal | None = None  # the sell price before a bundle covered any of it
    # What a bundle of the customer's covered (apps.bundles.services.usage.cover)
    bundle_usage_id: int | None = None
    bundle_seconds: int = 0
    bundle_money: Decimal = Decimal(0)


@dataclass
class BatchResult:
    selected: int = 0
    rated: int = 0
    errors: int = 0
    charges: int = 0
    released: int = 0

    def add(self, other: "BatchResult") -> None:
        for name in ("selected", "rated", "errors", "charges", "released"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class RatingStalled(Exception):
    """Batch after batch lost on write conflicts: something else holds the same rows."""


@dataclass
class PeerDirectory:
    """Peers' price lists and accounts, read once per batch (or once per re-rating run)."""

    peers: dict[int, PeerPrices] = field(default_factory=dict)

    def load(self, peer_ids) -> None:
        missing = {pk for pk in peer_ids if pk is not None and pk not in self.peers}
        if not missing:
            return
        accounts = dict(Account.objects.filter(peer_id__in=missing).values_list("peer_id", "pk"))
        rows = Peer.objects.filter(pk__in=missing).values_list(
            "pk", "name", "sell_rate_table_id", "buy_rate_table_id", "tech_prefix", "time_zone",
            "reseller__name", "reseller__account", "reseller__rate_table_id", "role",
        )  # fmt: skip
        for pk, name, sell, buy, tech_prefix, zone, reseller, reseller_account, reseller_table, role in rows:
            self.peers[pk] = PeerPrices(
                name, sell, buy, accounts.get(pk), tech_prefix or "", _zone(zone),
                reseller or "", reseller_account, reseller_table, role == Peer.Role.USER,
            )  # fmt: skip

    def get(self, pk: int | None) -> PeerPrices | None:
        return self.peers.get(pk) if pk is not None else None


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None  # validated when saved; a host without it reads TIME_ZONE's clock


@dataclass(frozen=True, slots=True)
class Decided:
    """What call control decided for a call, as its reservation carries it (raw tariffs)."""

    reservation_id: int
    created_at: datetime
    active: bool
    callee: str | None
    destination: str
    sell: dict | None  # reservations.tariff_json
    buy: dict | None  # supplier id (a string) -> reservations.tariff_json
    # What it held of a bundle's period: (usage id, seconds, money); usage id None if nothing.
    bundle_usage_id: int | None = None
    bundle_seconds: int = 0
    bundle_money: Decimal = Decimal(0)


DECIDED_COLUMNS = (
    "pk",
    "customer_id",
    "call_id",
    "created_at",
    "released_at",
    "callee",
    "destination",
    "sell_tariff",
    "buy_tariffs",
    "bundle_usage_id",
    "bundle_seconds",
    "bundle_money",
)


def reservations_of(rows) -> dict[tuple[int, str], list[Decided]]:
    """The reservations of the CDRs' calls (CDR_COLUMNS rows), active or released, by
    (customer, Call-ID): one query per IN_LIST_SIZE calls, through the Call-ID index.

    Released ones count: a call rated late (a rating error put back after its hold
    expired) is still priced as it was decided.
    """
    # The CDR does not keep the acc row's reservation_id; the reservation is the one of
    # its customer and Call-ID (call control holds one per Call-ID and account at a time).
    call_ids = sorted({row[1] for row in rows if row[2] is not None})
    found: dict[tuple[int, str], list[Decided]] = defaultdict(list)
    for chunk in chunks(call_ids):
        for pk, customer_id, call_id, created_at, released_at, *decided in Reservation.objects.filter(
            call_id__in=chunk
        ).values_list(*DECIDED_COLUMNS):
            found[customer_id, call_id].append(Decided(pk, created_at, released_at is None, *decided))
    return found


def decided_for(row: tuple, found: dict[tuple[int, str], list[Decided]]) -> Decided | None:
    """The reservation of a CDR's call: of several for one Call-ID, the one made nearest its set-up."""
    held = found.get((row[2], row[1]))
    if not held:
        return None
    if len(held) == 1:
        return held[0]
    created_at = row[5]
    return min(held, key=lambda d: (abs(d.created_at - created_at), -d.reservation_id))


def carried_tariff(data: dict | None) -> Tariff | None:
    """A carried tariff (reservations.tariff_json) as a Tariff; None if absent or not one."""
    if not data:
        return None
    try:
        return _tariff(data["price"], data["fee"], data["min"], data["inc"], data["free"])
    except (KeyError, TypeError, ValueError, ArithmeticError):
        logger.warning("a reservation carries a malformed tariff %r: the price lists decide", data)
        return None


@lru_cache(maxsize=4096)
def _tariff(price: str, fee: str, minimum: int, increment: int, free: int) -> Tariff:
    # Few distinct tariffs, many calls: building Decimals and checking them once each.
    return reservations.tariff_from_json(
        {"price": price, "fee": fee, "min": minimum, "inc": increment, "free": free}
    )


def price(
    row: tuple,
    peers: PeerDirectory,
    *,
    named: bool = True,
    decided: Decided | None = None,
    reprice: bool = False,
) -> Priced:
    """Price one CDR (a CDR_COLUMNS tuple) on both sides; pure but for the price indexes.

    `decided` is what call control decided for the call (its reservation): the rater
    charges the tariffs it carries, the sell tariff and the buy tariff of the supplier
    that answered, and names the call by its destination. What it does not carry (a
    reservation made before it carried prices, a call without one) is looked up in the
    price lists as they stood when the call was set up, for the number call control
    priced, else the number as received less the customer's tech prefix. `reprice`
    (re-rating after a corrected list) looks both sides up in the lists for that number.
    `named` also looks up the destination's name, which describes the charge on the
    ledger; re-rating posts no charges and goes without.
    """
    cdr_id, call_id, customer_id, supplier_id, callee, created_at, duration_ms = row
    priced = Priced(cdr_id, call_id, customer_id, supplier_id, created_at)
    customer = peers.get(customer_id)
    if customer is None:
        priced.error = "Unknown customer: the call has no customer peer."
        return priced
    if not duration_ms:
        # Not answered: nothing to pay on either side.
        priced.sell_cost = priced.buy_cost = money(0)
        return priced
    if customer.account_id is None:
        priced.error = f"Customer {customer.name} has no account."
        return priced
    if decided is not None and decided.callee:
        number = decided.callee
    elif customer.tech_prefix and callee.startswith(customer.tech_prefix):
        # Call control removes the tech prefix before pricing: it names the customer's
        # product, not a destination ("7" would read as Russia).
        number = callee[len(customer.tech_prefix) :]
    else:
        number = callee
    priced.number = number
    carried = decided is not None and not reprice
    sell = carried_tariff(decided.sell) if carried else None
    if sell is not None:
        if named:
            priced.destination = decided.destination
    else:
        if customer.sell_table_id is None:
            priced.error = f"Customer {customer.name} has no sell price list."
            return priced
        # The index's lookup() gives the tariff alone, destination() the name: both cost less
        # than building the whole Match that rate_for() returns.
        sell_index = get_index(customer.sell_table_id)
        # The period (weekend, offpeak) in force when the call was set up, on the customer's
        # clock: a call is charged the price of its start, whenever it is rated.
        periods = periods_at(sell_index, created_at, customer.zone)
        sell = sell_index.lookup(number, created_at, periods)
        if sell is None:
            priced.error = (
                f"No sell rate for {number} in {customer.name}'s price list"
                f" at {created_at:%Y-%m-%d %H:%M:%S}."
            )
            return priced
        if named:
            priced.destination = sell_index.destination(number, created_at, periods) or ""
    charge = rate_call(sell, duration_ms)
    if charge.total > MAX_AMOUNT:
        priced.error = _too_dear(charge.total, f"{customer.name}'s sell price for {number}")
        return priced
    priced.sell_cost, priced.billable_seconds = charge.total, charge.seconds
    priced.listed_cost = charge.total
    if customer.reseller_account_id is not None and not _price_for_reseller(
        priced, customer, number, duration_ms
    ):
        priced.sell_cost, priced.billable_seconds = None, 0
        return priced
    if supplier_id is None:
        priced.buy_cost = money(0)  # answered without a supplier (on-net): nothing bought
        return priced
    supplier = peers.get(supplier_id)
    buy = carried_tariff((decided.buy or {}).get(str(supplier_id))) if carried else None
    if supplier is None:
        priced.error = f"Unknown supplier peer {supplier_id}."
    elif buy is None and supplier.buy_table_id is None:
        priced.error = f"Supplier {supplier.name} has no buy price list."
    elif buy is None and (buy := _buy_price(supplier, number, created_at)) is None:
        priced.error = (
            f"No buy rate for {number} in {supplier.name}'s price list at {created_at:%Y-%m-%d %H:%M:%S}."
        )
    else:
        bought = rate_call(buy, duration_ms)
        if bought.total > MAX_AMOUNT:
            priced.error = _too_dear(bought.total, f"{supplier.name}'s buy price for {number}")
        else:
            priced.buy_cost, priced.supplier_billable_seconds = bought.total, bought.seconds
    if priced.error:
        priced.sell_cost = priced.reseller_cost = None
        priced.billable_seconds = 0
    return priced


def _price_for_reseller(priced: Priced, customer: PeerPrices, number: str, duration_ms: int) -> bool:
    """Price the call for the customer's reseller at the operator's prices for it, as they
    stood when the call was set up, on the customer's clock; False (priced.error) without."""
    reseller, created_at = customer.reseller, priced.occurred_at
    if customer.reseller_table_id is None:
        priced.error = f"Reseller {reseller} has an account with us but no price list."
        return False
    index = get_index(customer.reseller_table_id)
    tariff = index.lookup(number, created_at, periods_at(index, created_at, customer.zone))
    if tariff is None:
        priced.error = (
            f"No price for {number} in reseller {reseller}'s price list at {created_at:%Y-%m-%d %H:%M:%S}."
        )
        return False
    cost = rate_call(tariff, duration_ms).total
    if cost > MAX_AMOUNT:
        priced.error = _too_dear(cost, f"reseller {reseller}'s price for {number}")
        return False
    priced.reseller_cost = cost
    return True


def _buy_price(supplier: PeerPrices, number: str, created_at: datetime) -> Tariff | None:
    index = get_index(supplier.buy_table_id)
    return index.lookup(number, created_at, periods_at(index, created_at, supplier.zone))


def _too_dear(cost: Decimal, price: str) -> str:
    # No ledger row is larger than MAX_AMOUNT: a charge past it is a price or a duration
    # gone wrong, kept here for the admin's rating errors rather than debited.
    return f"The call would cost {cost}, more than the largest amount ({MAX_AMOUNT:,.0f}); check {price}."


def charges(priced: Priced, peers: PeerDirectory) -> list[Posting]:
    """The ledger rows of a priced CDR: the customer's debit, its reseller's with the
    operator (when the reseller has an account), and our supplier's, if tracked."""
    postings = []
    occurred_at = priced.occurred_at
    customer = peers.get(priced.customer_id)
    if priced.sell_cost and customer is not None and customer.account_id is not None:
        postings.append(
            Posting(
                customer.account_id,
                LedgerEntry.Kind.CHARGE,
                -priced.sell_cost,
                reference=f"cdr:{priced.cdr_id}",
                cdr_id=priced.cdr_id,
                description=f"Call to {priced.destination}"[:200] if priced.destination else "Call",
                occurred_at=occurred_at,
            )
        )
    if priced.reseller_cost and customer is not None and customer.reseller_account_id is not None:
        # The reseller's account with the operator: its customer's call costs it this.
        postings.append(
            Posting(
                customer.reseller_account_id,
                LedgerEntry.Kind.CHARGE,
                -priced.reseller_cost,
                reference=f"cdr:{priced.cdr_id}",
                cdr_id=priced.cdr_id,
                description=f"Call of {customer.name}"[:200],
                occurred_at=occurred_at,
            )
        )
    supplier = peers.get(priced.supplier_id)
    if priced.buy_cost and supplier is not None and supplier.account_id is not None and supplier.mutual:
        # A peer that also sends us calls: what it earned terminating this one is credited
        # to its account, where its own calls are charged (one balance, netted).
        postings.append(
            Posting(
                supplier.account_id,
                LedgerEntry.Kind.TERMINATED,
                priced.buy_cost,
                reference=f"cdr:{priced.cdr_id}",
                cdr_id=priced.cdr_id,
                description=f"Call terminated to {priced.destination}"[:200]
                if priced.destination
                else "Call terminated",
                occurred_at=occurred_at,
            )
        )
    elif priced.buy_cost and supplier is not None and supplier.account_id is not None:
        # The supplier's account is what we have with them: the call spends it.
        postings.append(
            Posting(
                supplier.account_id,
                LedgerEntry.Kind.CHARGE,
                -priced.buy_cost,
                reference=f"cdr:{priced.cdr_id}",
                cdr_id=priced.cdr_id,
                description="Traffic bought",
                occurred_at=occurred_at,
            )
        )
    return postings


def _claim(limit: int, *, node_id: int | None, now: datetime, queryset=None) -> list[tuple]:
    """Lock and read the batch (step 1): CDR_COLUMNS of up to `limit` unrated CDRs."""
    # Where the unrated CDRs begin, from the rating queue's index. Without this bound
    # MariaDB answers the ORDER BY id LIMIT below by walking the primary key from the
    # first CDR ever (no sort needed, and it guesses matches come early), reading every
    # rated CDR for every batch.
    first = (
        Cdr.objects.filter(rating_state=Cdr.RatingState.UNRATED)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if first is None:
        return []
    rows = (
        (queryset if queryset is not None else Cdr.objects.all())
        .filter(rating_state=Cdr.RatingState.UNRATED, pk__gte=first)
        .select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)
    )
    if node_id is not None:
        mine = rows.filter(Q(node_id=node_id) | Q(node__isnull=True))
        found = list(mine.order_by("pk").values_list(*CDR_COLUMNS)[:limit])
        if found:
            return found
        rows = rows.filter(
            Q(ended_at__lt=now - TAKEOVER_AFTER)
            | Q(ended_at__isnull=True, created_at__lt=now - TAKEOVER_AFTER)
        )
    return list(rows.order_by("pk").values_list(*CDR_COLUMNS)[:limit])


def _write(
    mine: list[Priced], peers: PeerDirectory, found: dict[tuple[int, str], list[Decided]], now: datetime
) -> BatchResult:
    """Steps 3-5 for CDRs this transaction has claimed: prices, reservations, charges.

    The accounts come last (reservations.LOCK ORDER): every call of a busy customer writes
    its account row when it is authorized, so the batch's charges and released money go to
    the accounts by one statement, after everything else of the batch is written, and the
    commit follows it at once (`ledger.post_rated`).
    """
    reservations.lock_many(sorted({d.reservation_id for calls in found.values() for d in calls if d.active}))
    while True:
        # A refused charge undoes the whole round. The savepoint is not released (the
        # commit ends it): that would be one more round trip with the accounts held.
        undo = transaction.savepoint()
        try:
            return _write_round(mine, peers, found, now)
        except BalanceOutOfRange as refused:
            transaction.savepoint_rollback(undo)
            if not _not_charged(mine, peers, refused.account_ids):
                raise


def _write_round(
    mine: list[Priced], peers: PeerDirectory, found: dict[tuple[int, str], list[Decided]], now: datetime
) -> BatchResult:
    bundle_usage.cover(mine, {p.customer_id: peers.get(p.customer_id) for p in mine}, found)
    update_rows(Cdr, RATING_FIELDS, [_rating_row(p) for p in mine], rated_at=now)
    # In this transaction: a batch replayed after a conflict adds its calls once.
    rollups.add_rated([p.cdr_id for p in mine if not p.error])
    back = _close_reservations(mine, found, now)
    postings = [posting for p in mine if not p.error for posting in charges(p, peers)]
    posted = post_rated(postings, released={pk: money for pk, (_, money) in back.items()})
    result = BatchResult(selected=len(mine), charges=sum(created for _, created in posted))
    result.errors = sum(bool(p.error) for p in mine)
    result.rated = len(mine) - result.errors
    result.released = sum(count for count, _ in back.values())
    return result


def _rating_row(p: Priced) -> tuple:
    return (
        p.cdr_id,
        Cdr.RatingState.ERROR if p.error else Cdr.RatingState.RATED,
        p.error[:ERROR_LENGTH],
        p.sell_cost,
        p.buy_cost,
        p.reseller_cost,
        p.billable_seconds,
        p.supplier_billable_seconds,
        p.bundle_usage_id,
        p.bundle_seconds,
        p.bundle_money,
    )


def _not_charged(mine: list[Priced], peers: PeerDirectory, refused: list[int]) -> bool:
    """Turn the calls whose charge would take a refused account out of range into rating errors.

    Only a balance already near +-MAX_BALANCE, written around the services, can refuse: the
    rest of the batch is charged on the next round. False when no call of the batch is one.
    """
    blocked = set(refused)
    stuck = False
    for p in mine:
        accounts = sorted({x.account_id for x in charges(p, peers)} & blocked) if not p.error else []
        if accounts:
            p.error = (
                f"Not charged: it would take the balance of account {accounts[0]} out of range "
                f"(beyond +-{MAX_BALANCE:,.0f}); correct that balance, then rate the call again."
            )
            p.sell_cost, p.reseller_cost, p.billable_seconds = None, None, 0
            stuck = True
    return stuck


def _close_reservations(
    mine: list[Priced], found: dict[tuple[int, str], list[Decided]], now: datetime
) -> reservations.Returned:
    """Close the reservations of the rated calls: answered ones as rated, others as failed.

    `found` are the calls' reservations read before pricing; close_many re-reads them under
    their locks, so one released meanwhile (the expiry sweep) is not released twice. Returns
    the money to give back, by account (`ledger.post_rated` gives it back).
    """
    ids: dict[bool, list[int]] = {True: [], False: []}
    for p in mine:
        if p.error or p.customer_id is None:
            continue
        was_answered = bool(p.billable_seconds or p.sell_cost)
        ids[was_answered].extend(
            d.reservation_id for d in found.get((p.customer_id, p.call_id), ()) if d.active
        )
    back: reservations.Returned = {}
    for outcome, was_answered in ((Reservation.Outcome.RATED, True), (Reservation.Outcome.FAILED, False)):
        closed = reservations.close_many(sorted(set(ids[was_answered])), outcome=outcome, now=now)
        for account_id, (count, amount) in closed.items():
            before = back.get(account_id, (0, Decimal(0)))
            back[account_id] = (before[0] + count, before[1] + amount)
    return back


@retry_on_conflict
def _rate(limit: int, node_id: int | None, queryset, now: datetime) -> BatchResult:
    """One batch, steps 1 to 5, in one transaction."""
    rows = _claim(limit, node_id=node_id, now=now, queryset=queryset)
    if not rows:
        return BatchResult()
    peers = PeerDirectory()
    peers.load({row[2] for row in rows} | {row[3] for row in rows})
    found = reservations_of(rows)
    priced = [price(row, peers, decided=decided_for(row, found)) for row in rows]
    return _write(priced, peers, found, now)


def rate_batch(
    *, limit: int = BATCH_SIZE, node_id: int | None = None, queryset=None, now=None
) -> BatchResult:
    """Rate up to `limit` unrated CDRs, oldest first: this node's, then any left too long.

    `queryset` narrows the CDRs (rate_cdrs --since/--peer). Safe to run on several nodes
    at once: every CDR is charged by exactly one of them.
    """
    return _rate(limit, node_id, queryset, now or timezone.now())


def rate_all(
    *, node_id: int | None = None, queryset=None, limit: int = BATCH_SIZE, until=None
) -> BatchResult:
    """Rate batches until none is left (or `until`, a monotonic deadline, passes)."""
    total = BatchResult()
    rounds = batches(
        lambda: rate_batch(limit=limit, node_id=node_id, queryset=queryset),
        until=until,
        pause=CONFLICT_PAUSE,
        give_up=GIVE_UP_LIMIT,
        stalled=RatingStalled,
    )
    for result in rounds:
        total.add(result)
        if result.selected == 0:
            break
    return total


def requeue_errors(cdr_ids=None, *, queryset=None) -> int:
    """Put CDRs that could not be rated back in the queue (after a price list was fixed)."""
    rows = (queryset if queryset is not None else Cdr.objects.all()).filter(
        rating_state=Cdr.RatingState.ERROR
    )
    if cdr_ids is not None:
        rows = rows.filter(pk__in=list(cdr_ids))
    return rows.update(rating_state=Cdr.RatingState.UNRATED, rating_error="", rated_at=None)


def rating_backlog() -> dict[str, int]:
    """How many CDRs wait to be rated and how many could not be: for status pages."""
    counts = defaultdict(int)
    for state in (Cdr.RatingState.UNRATED, Cdr.RatingState.ERROR):
        counts[state] = Cdr.objects.filter(rating_state=state).count()
    return dict(counts)
