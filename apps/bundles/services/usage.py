"""The bundles' side of rating and call control: offers, usage rows, and covering calls.

`cover` runs in the rater's transaction, after the batch's reservations are locked and
before its accounts are (LOCK ORDER in apps.billing.services.reservations): it locks the
usage rows of the periods the batch's calls fall in, in id order, and takes each covered
call's seconds or price off them. A batch replayed after a conflict covers its calls
once; so does a CDR two raters claimed on two nodes, as the usage row's update then fails
certification on one of them.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, Sum, Value
from django.utils import timezone

from apps.billing.models import Reservation
from apps.bundles.models import Subscription, Usage
from apps.bundles.offers import MINUTES, Offer, first_offer, net_of_seconds
from apps.core.money import money


def offer_of(subscription: Subscription) -> Offer:
    bundle = subscription.bundle
    return Offer(
        subscription_id=subscription.pk,
        account_id=subscription.account_id,
        name=bundle.name,
        kind=bundle.kind,
        period=bundle.period,
        minutes=bundle.minutes or 0,
        money=bundle.money or Decimal(0),
        prefixes=tuple(bundle.prefix_list()),
        destinations=frozenset(name.lower() for name in bundle.destination_list()),
        starts_on=subscription.starts_on,
        ends_on=subscription.ends_on,
    )


def offers_for(account_ids=None, *, ended_after=None) -> dict[int, tuple[Offer, ...]]:
    """{account id: its subscriptions as offers, oldest first}; every account's when None;
    with `ended_after` (a day), not those that ended before it."""
    rows = Subscription.objects.select_related("bundle").order_by("pk")
    if account_ids is not None:
        rows = rows.filter(account_id__in=sorted(set(account_ids)))
    if ended_after is not None:
        rows = rows.exclude(ends_on__lt=ended_after)
    found = defaultdict(list)
    for subscription in rows:
        found[subscription.account_id].append(offer_of(subscription))
    return {account_id: tuple(offers) for account_id, offers in found.items()}


def ensure_usage(offer: Offer, day) -> int:
    """The id of the usage row of the period containing `day`, made if it is the first use.

    Made outside the caller's locks: two processes making it at once both find one row
    (the unique period per subscription; the loser's insert is ignored).
    """
    start, end = offer.period_of(day)
    rows = Usage.objects.filter(subscription_id=offer.subscription_id, period_start=start)
    pk = rows.values_list("pk", flat=True).first()
    if pk is None:
        seconds, included_money = offer.included(start, end)
        Usage.objects.bulk_create(
            [
                Usage(
                    subscription_id=offer.subscription_id,
                    period_start=start,
                    period_end=end,
                    included_seconds=seconds,
                    included_money=included_money,
                )
            ],
            ignore_conflicts=True,
        )
        pk = rows.values_list("pk", flat=True).get()
    return pk


@dataclass(slots=True)
class Claim:
    """One rated call a bundle may cover, and what it covered."""

    usage_id: int
    kind: str
    billable: int  # billable seconds
    listed: Decimal  # the call's price before the bundle
    held: int | Decimal  # what its reservation held of this usage row
    covered_seconds: int = 0
    covered_money: Decimal = Decimal(0)

    @property
    def need(self):
        return self.billable if self.kind == MINUTES else self.listed

    @property
    def covered(self):
        return self.covered_seconds if self.kind == MINUTES else self.covered_money

    def take(self, amount) -> None:
        if self.kind == MINUTES:
            self.covered_seconds += amount
        else:
            self.covered_money += amount

    @property
    def net(self) -> Decimal:
        if self.kind == MINUTES:
            return net_of_seconds(self.listed, self.billable, self.covered_seconds)
        return money(self.listed - self.covered_money)


def holds_elsewhere(usage_ids: list[int], excluded_reservations: list[int]) -> dict[int, tuple[int, Decimal]]:
    """{usage id: (seconds, money)} live calls hold of these periods, but for `excluded_reservations`."""
    rows = Reservation.objects.filter(bundle_usage_id__in=usage_ids, released_at__isnull=True).exclude(
        pk__in=excluded_reservations
    )
    held = {}
    sums = rows.order_by().values("bundle_usage_id").annotate(s=Sum("bundle_seconds"), m=Sum("bundle_money"))
    for row in sums:
        held[row["bundle_usage_id"]] = (row["s"] or 0, row["m"] or Decimal(0))
    return held


def allocate(claims: list[Claim], rows: dict[int, tuple], held: dict[int, tuple[int, Decimal]]) -> dict:
    """Share each locked usage row among its claims: first what each call's own reservation
    held, then, in order, what is left.

    `rows` are the locked rows as `lock_usages` reads them; `held`, what live calls outside
    the batch hold of them. Returns {usage id: (seconds, money, calls)} the claims used.
    """
    by_usage = defaultdict(list)
    for claim in claims:
        by_usage[claim.usage_id].append(claim)
    used = {}
    for usage_id, mine in by_usage.items():
        kind = mine[0].kind
        in_seconds, in_money, used_seconds, used_money = rows[usage_id]
        held_seconds, held_money = held.get(usage_id, (0, Decimal(0)))
        if kind == MINUTES:
            left = max(in_seconds - used_seconds - held_seconds, 0)
        else:
            left = max(in_money - used_money - held_money, Decimal(0))
        for claim in mine:  # first, what each call's reservation counted on
            share = min(claim.need, claim.held, left)
            claim.take(share)
            left -= share
        for claim in mine:
            share = min(claim.need - claim.covered, left)
            claim.take(share)
            left -= share
        covered = [c for c in mine if c.covered]
        used[usage_id] = (
            sum(c.covered_seconds for c in covered),
            sum((c.covered_money for c in covered), Decimal(0)),
            len(covered),
        )
    return used


def lock_usages(usage_ids) -> dict[int, tuple]:
    """Lock these usage rows in id order; {id: (included s, included money, used s, used money)}."""
    rows = (
        Usage.objects.select_for_update()
        .filter(pk__in=sorted(set(usage_ids)))
        .order_by("pk")
        .values_list("pk", "included_seconds", "included_money", "used_seconds", "used_money")
    )
    return {pk: tuple(rest) for pk, *rest in rows}


def record_use(used: dict[int, tuple[int, Decimal, int]]) -> None:
    """Add what calls used to their usage rows (locked by `lock_usages`)."""
    for usage_id, (seconds, amount, calls) in sorted(used.items()):
        if calls:
            Usage.objects.filter(pk=usage_id).update(
                used_seconds=F("used_seconds") + seconds,
                # As a MoneyField value: micro-units on SQLite (apps.core.models.MoneyField).
                used_money=F("used_money") + Value(amount, output_field=Usage._meta.get_field("used_money")),
                calls=F("calls") + calls,
            )


def cover(priced: list, customers: dict, found: dict) -> None:
    """Let the customers' bundles cover the rated calls of a batch, before they are charged.

    `priced`: the batch's rating.Priced; `customers`: {customer id: rating.PeerPrices};
    `found`: the calls' reservations (rating.reservations_of). Sets each covered call's
    sell_cost to what is left to pay and its bundle_* to what was covered. Runs again from
    the listed prices when the rater replays a round of the same transaction.
    """
    for p in priced:
        p.bundle_usage_id, p.bundle_seconds, p.bundle_money = None, 0, Decimal(0)
        if not p.error and p.listed_cost is not None:
            p.sell_cost = p.listed_cost
    candidates = [p for p in priced if not p.error and p.billable_seconds and p.sell_cost]
    accounts = {customers[p.customer_id].account_id for p in candidates if customers.get(p.customer_id)}
    offers = offers_for(accounts) if accounts else {}
    if not offers:
        return
    claims: dict[int, Claim] = {}
    own: list[int] = []  # the batch's reservations: their holds are the batch's to use
    usage_ids: dict[tuple[int, object], int] = {}  # (subscription, period start) -> usage id
    for p in candidates:
        customer = customers[p.customer_id]
        day = p.occurred_at.astimezone(customer.zone or timezone.get_default_timezone()).date()
        offer = first_offer(offers.get(customer.account_id, ()), p.number, p.destination, day)
        if offer is None:
            continue
        period = (offer.subscription_id, offer.period_of(day)[0])
        if period not in usage_ids:  # one query per period of the batch, not per call
            usage_ids[period] = ensure_usage(offer, day)
        usage_id = usage_ids[period]
        held = 0 if offer.kind == MINUTES else Decimal(0)
        for decided in found.get((p.customer_id, p.call_id), ()):
            own.append(decided.reservation_id)
            if decided.bundle_usage_id == usage_id:
                held = decided.bundle_seconds if offer.kind == MINUTES else decided.bundle_money
        claims[p.cdr_id] = Claim(usage_id, offer.kind, p.billable_seconds, p.sell_cost, held)
    if not claims:
        return
    periods = sorted(set(usage_ids.values()))
    rows = lock_usages(periods)
    record_use(allocate(list(claims.values()), rows, holds_elsewhere(periods, own)))
    for p in candidates:
        claim = claims.get(p.cdr_id)
        if claim is None or not claim.covered:
            continue
        p.sell_cost = claim.net
        p.bundle_usage_id = claim.usage_id
        p.bundle_seconds = claim.covered_seconds
        p.bundle_money = money(claim.listed - claim.net)
