"""Keep TrafficRollup up to date: add what the rater rated, move what re-rating changed.

The rule that makes the rollups equal to the CDRs: a CDR is in the rollups exactly while
its rating state is "rated".

- The rater adds a batch's CDRs that end as rated (`add_rated`), in the transaction that
  writes their prices. A batch replayed after a Galera conflict rolls back its additions
  with its prices, and the replay finds the CDRs rated and skips them.
- A CDR that ends as a rating error is not added: its price is unknown, so its minutes
  would count without money and skew margins. The admin lists rating errors on their own.
  `requeue_errors` makes it unrated again and the rater adds it once, when it rates it.
  So an error later re-rated counts once, and reports lag only by the calls in error.
- Re-rating changes rated CDRs' prices: `move_prices` adds the differences to the rows
  the calls are in, in the transaction that writes them.
- `rebuild` recomputes a period from the CDRs (`manage.py rebuild_rollups`): the way to
  fill the rollups of an install that rated calls before they existed, and to repair.

Each CDR is in two periods: its UTC hour, and its day in settings.TIME_ZONE. Days are not
sums of hours: with offsets of half an hour (India) an hour straddles two days. In each
period it is in one row of every shape (SHAPES): the full row of its customer, supplier,
destination and node, and the rows of the shapes that keep fewer of them. A batch is
summed by full identity first, then each full sum is folded into the smaller shapes, so a
batch of 500 calls writes its few hundred full rows and a few rows of the small shapes.

NER (network effectiveness ratio) counts the calls the network delivered: answered, or
ended by the called user (486 busy, 480 unavailable, 487 cancelled by the caller while
ringing, 600 busy everywhere, 603 declined). ASR counts only the answered ones.
"""

import dataclasses
import functools
import hashlib
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.cdr.models import Cdr
from apps.core.models import MoneyField
from apps.reports.models import TrafficRollup

# SIP final codes of calls the called user ended: the network did its part (NER).
USER_ENDED_CODES = frozenset({486, 480, 487, 600, 603})
HOUR, DAY = TrafficRollup.Grain.HOUR, TrafficRollup.Grain.DAY

# What a rollup reads of a CDR, in this order.
CDR_COLUMNS = (
    "customer_id",
    "supplier_id",
    "destination",
    "node_id",
    "created_at",
    "answered_at",
    "sip_code",
    "duration_ms",
    "billable_seconds",
    "supplier_billable_seconds",
    "pdd_ms",
    "sell_cost",
    "buy_cost",
    "reseller_cost",
    "customer__account__currency",
    "supplier__account__currency",
)
# The dimensions each shape keeps, smallest shape first (the order apps.reports.queries
# tries them in): a report reads the first shape that has every dimension it needs.
DIMENSIONS = ("customer", "supplier", "destination", "node")
SHAPES = {
    "node": ("node",),
    "customer": ("customer",),
    "destination": ("destination",),
    "supplier_destination": ("supplier", "destination"),
    "customer_destination": ("customer", "destination"),
    "full": DIMENSIONS,
}
FULL = "full"
IDENTITY = (
    "grain",
    "period_start",
    "shape",
    "customer_id",
    "supplier_id",
    "destination",
    "node_id",
    "currency",
    "cost_currency",
)
# CDR ids per read: under SQLite's 999 parameters.
READ_CHUNK = 900


@dataclass(slots=True)
class Sums:
    """The counters of one rollup row (or what a batch adds to it)."""

    attempts: int = 0
    answered: int = 0
    effective: int = 0
    duration_ms: int = 0
    billable_seconds: int = 0
    supplier_billable_seconds: int = 0
    pdd_ms: int = 0
    pdd_calls: int = 0
    sell: Decimal = Decimal(0)
    buy: Decimal = Decimal(0)
    resold: Decimal = Decimal(0)
    wholesale: Decimal = Decimal(0)

    def merge(self, other: "Sums") -> None:
        self.attempts += other.attempts
        self.answered += other.answered
        self.effective += other.effective
        self.duration_ms += other.duration_ms
        self.billable_seconds += other.billable_seconds
        self.supplier_billable_seconds += other.supplier_billable_seconds
        self.pdd_ms += other.pdd_ms
        self.pdd_calls += other.pdd_calls
        self.sell += other.sell
        self.buy += other.buy
        self.resold += other.resold
        self.wholesale += other.wholesale


SUM_FIELDS = tuple(f.name for f in fields(Sums))
INSERT_COLUMNS = ("key", *IDENTITY, *SUM_FIELDS)


def rollup_key(
    grain: str,
    period_start: datetime,
    shape: str,
    customer_id,
    supplier_id,
    destination: str,
    node_id,
    currency: str,
    cost_currency: str,
) -> str:
    """The row's unique key: its grain and UTC period, then SHA-1 of its identity.

    The period first (h2026120607…, d2026120523…) keeps the rows the rater is adding, those
    of the current hour and day, together in the unique index: with the bare SHA-1 each
    went to a random page of it (bench/reports.py: at 10 M rollup rows the upsert of a
    rating batch of 500 took 150 ms with bare SHA-1 keys, ten times the batch's pricing).
    29 hex digits (116 bits) of the SHA-1 make the rest of the 40 characters.
    """
    stamp, hour = _stamps(period_start)
    text = "|".join(
        (
            grain,
            stamp,
            shape,
            str(customer_id or ""),
            str(supplier_id or ""),
            destination,
            str(node_id or ""),
            currency,
            cost_currency,
        )
    )
    return grain[0] + hour + hashlib.sha1(text.encode()).hexdigest()[:29]


@functools.lru_cache(maxsize=4096)
def _stamps(period_start: datetime) -> tuple[str, str]:
    """The period's UTC minute and hour as text: a batch or a day has few periods and many
    rows, and strftime costs more than the SHA-1."""
    utc = period_start.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M"), utc.strftime("%Y%m%d%H")


# How the smaller shapes are made: each from a larger one already made, so that a batch's
# rows are read a few times, not once per shape (rebuild spends most of its time here).
FOLDS = (
    ("customer_destination", FULL),
    ("supplier_destination", FULL),
    ("node", FULL),
    ("customer", "customer_destination"),
    ("destination", "supplier_destination"),
)


def shaped(full: dict[tuple, Sums]) -> dict[tuple, Sums]:
    """Fold sums of the full shape into every shape.

    `full` is keyed by IDENTITY tuples of the full shape; the result holds them (the same
    Sums objects) and the rows of every other shape.
    """
    by_shape = {FULL: full}
    for shape, source in FOLDS:
        dims = SHAPES[shape]
        keep_c, keep_s = "customer" in dims, "supplier" in dims
        keep_d, keep_n = "destination" in dims, "node" in dims
        made: dict[tuple, Sums] = {}
        for (grain, start, _shape, c, s, d, n, currency, cost), sums in by_shape[source].items():
            key = (
                grain,
                start,
                shape,
                c if keep_c else None,
                s if keep_s else None,
                d if keep_d else "",
                n if keep_n else None,
                currency,
                cost,
            )
            row = made.get(key)
            if row is None:
                made[key] = dataclasses.replace(sums)  # a copy: the source's Sums stay its own
            else:
                row.merge(sums)
        by_shape[shape] = made
    out: dict[tuple, Sums] = {}
    for made in by_shape.values():
        out.update(made)
    return out


def local_zone():
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(day: date, zone=None) -> datetime:
    """The first instant of `day` on the operator's clock, in UTC."""
    return datetime.combine(day, time(), tzinfo=zone or local_zone()).astimezone(UTC)


def group(rows, *, zone=None, days_within: tuple[datetime, datetime] | None = None) -> dict[tuple, Sums]:
    """Sum CDR_COLUMNS rows into hours and days of every shape (IDENTITY tuples).

    `days_within` (start, end) leaves the CDRs outside it out of the day rows only.
    """
    return shaped(group_full(rows, zone=zone, days_within=days_within))


def group_full(rows, *, zone=None, days_within=None) -> dict[tuple, Sums]:
    """Sum CDR_COLUMNS rows into hours and days of the full shape (IDENTITY tuples)."""
    zone = zone or local_zone()
    sums: dict[tuple, Sums] = defaultdict(Sums)
    days: dict[date, datetime] = {}
    for (
        customer,
        supplier,
        destination,
        node,
        created,
        answered_at,
        code,
        duration,
        billable,
        bought,
        pdd,
        sell,
        buy,
        reseller_cost,
        currency,
        cost_currency,
    ) in rows:
        periods = [(HOUR, hour_start(created))]
        if days_within is None or days_within[0] <= created < days_within[1]:
            local_day = created.astimezone(zone).date()
            if local_day not in days:
                days[local_day] = day_start(local_day, zone)
            periods.append((DAY, days[local_day]))
        for grain, start in periods:
            s = sums[
                grain,
                start,
                FULL,
                customer,
                supplier,
                destination or "",
                node,
                currency or "",
                cost_currency or "",
            ]
            s.attempts += 1
            if answered_at is not None:
                s.answered += 1
            if answered_at is not None or code in USER_ENDED_CODES:
                s.effective += 1
            s.duration_ms += duration or 0
            s.billable_seconds += billable or 0
            s.supplier_billable_seconds += bought or 0
            if pdd is not None:
                s.pdd_ms += pdd
                s.pdd_calls += 1
            s.sell += sell or 0
            s.buy += buy or 0
            if reseller_cost is not None:
                s.resold += sell or 0
                s.wholesale += reseller_cost
    return sums


def add_rated(cdr_ids) -> int:
    """Add the CDRs among `cdr_ids` that are rated to their rollups; rows written.

    Call it inside the transaction that rated them: their additions commit, or roll back
    and are replayed, with their prices.
    """
    ids = sorted(set(cdr_ids))
    rows = []
    for start in range(0, len(ids), READ_CHUNK):
        rows += Cdr.objects.filter(
            pk__in=ids[start : start + READ_CHUNK], rating_state=Cdr.RatingState.RATED
        ).values_list(*CDR_COLUMNS)
    return upsert(group(rows))


def upsert(sums: dict[tuple, Sums]) -> int:
    """Add `sums` to their rows, creating those missing: one statement per chunk of keys.

    The addition happens in the database (col = col + new), so two raters adding to the
    same row at once both count; keys go in sorted order so they lock rows in one order.
    """
    if not sums:
        return 0
    model_fields = {f.attname: f for f in TrafficRollup._meta.concrete_fields}
    # As the ORM would send them, prepared once per distinct start and per amount column:
    # the fields' own preparation per value costs more than the statement on large rebuilds.
    start_field, money = model_fields["period_start"], model_fields["sell"]
    starts: dict[datetime, object] = {}
    rows = []
    for key, identity in sorted((rollup_key(*identity), identity) for identity in sums):
        s = sums[identity]
        grain, start, *rest = identity
        if start not in starts:
            starts[start] = start_field.get_db_prep_save(start, connection)
        rows.append(
            (
                key,
                grain,
                starts[start],
                *rest,
                s.attempts,
                s.answered,
                s.effective,
                s.duration_ms,
                s.billable_seconds,
                s.supplier_billable_seconds,
                s.pdd_ms,
                s.pdd_calls,
                money.get_db_prep_save(s.sell, connection),
                money.get_db_prep_save(s.buy, connection),
                money.get_db_prep_save(s.resold, connection),
                money.get_db_prep_save(s.wholesale, connection),
            )
        )
    qn = connection.ops.quote_name
    table = qn(TrafficRollup._meta.db_table)
    columns = ", ".join(qn(model_fields[c].column) for c in INSERT_COLUMNS)
    one = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"
    if connection.vendor == "mysql":
        # MariaDB/MySQL: the unique key on `key` turns the insert into an addition.
        update = ", ".join(f"{qn(c)} = {qn(c)} + VALUES({qn(c)})" for c in SUM_FIELDS)
        tail = f"ON DUPLICATE KEY UPDATE {update}"
    else:
        # PostgreSQL and SQLite (3.24+) share the ON CONFLICT form.
        update = ", ".join(f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in SUM_FIELDS)
        tail = f"ON CONFLICT ({qn('key')}) DO UPDATE SET {update}"
    # Under SQLite's 999 parameters per statement (20 per row); larger on the servers.
    chunk = 45 if connection.vendor == "sqlite" else 500
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            # Names are the model's, quoted; every value is a parameter.
            sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(part))} {tail}"  # noqa: S608
            cursor.execute(sql, [value for row in part for value in row])
    return len(rows)


# Re-rating

PRICE_COLUMNS = ("sell_cost", "buy_cost", "billable_seconds", "supplier_billable_seconds")


def move_prices(changes: list[tuple[int, tuple, tuple]]) -> int:
    """Add re-rated calls' price differences to their rollups, in every shape; rows changed.

    `changes` are (CDR id, old prices, new prices), prices in PRICE_COLUMNS order, of
    rated calls, inside the transaction that writes the new prices. A row that is not
    there (a period rated before the rollups existed and not rebuilt) is left absent:
    `rebuild_rollups` makes it from the CDRs, new prices included.
    """
    if not changes:
        return 0
    by_id = {pk: (old, new) for pk, old, new in changes}
    ids = sorted(by_id)
    identity_columns = (
        "pk",
        "customer_id",
        "supplier_id",
        "destination",
        "node_id",
        "created_at",
        "reseller_cost",
        "customer__account__currency",
        "supplier__account__currency",
    )
    full: dict[tuple, Sums] = defaultdict(Sums)
    zone = local_zone()
    for start in range(0, len(ids), READ_CHUNK):
        for pk, customer, supplier, destination, node, created, resold, currency, cost in Cdr.objects.filter(
            pk__in=ids[start : start + READ_CHUNK], rating_state=Cdr.RatingState.RATED
        ).values_list(*identity_columns):
            old, new = by_id[pk]
            for period in (
                (HOUR, hour_start(created)),
                (DAY, day_start(created.astimezone(zone).date(), zone)),
            ):
                delta = full[
                    (*period, FULL, customer, supplier, destination or "", node, currency or "", cost or "")
                ]
                delta.sell += (new[0] or 0) - (old[0] or 0)
                if resold is not None:  # a reseller's customer's call: what it paid moved
                    delta.resold += (new[0] or 0) - (old[0] or 0)
                delta.buy += (new[1] or 0) - (old[1] or 0)
                delta.billable_seconds += (new[2] or 0) - (old[2] or 0)
                delta.supplier_billable_seconds += (new[3] or 0) - (old[3] or 0)
    changed = 0
    money = MoneyField()
    # Every shape moves: the deltas folded like the rater's sums, one UPDATE per row.
    deltas = shaped(full)
    for key, identity in sorted((rollup_key(*identity), identity) for identity in deltas):
        d = deltas[identity]
        if not (d.sell or d.buy or d.billable_seconds or d.supplier_billable_seconds):
            continue
        changed += TrafficRollup.objects.filter(key=key).update(
            sell=F("sell") + Value(d.sell, output_field=money),
            resold=F("resold") + Value(d.resold, output_field=money),
            buy=F("buy") + Value(d.buy, output_field=money),
            billable_seconds=_plus("billable_seconds", d.billable_seconds),
            supplier_billable_seconds=_plus("supplier_billable_seconds", d.supplier_billable_seconds),
        )
    return changed


def _plus(column: str, delta: int):
    """`column + delta`, never below zero: GREATEST(column, -delta) + delta.

    The counters are unsigned (MariaDB) or checked >= 0: a row that lacks the call (rated
    before the rollups existed, not rebuilt yet) must not make re-rating fail. Taking the
    greatest first keeps MariaDB's unsigned arithmetic from going negative midway.
    """
    if delta >= 0:
        return F(column) + delta
    return Greatest(F(column), Value(-delta)) + delta


# Rebuilding


def rebuild_day(day: date) -> int:
    """Recompute the rows of one local day and of the UTC hours it touches; rows written.

    One transaction: a report never sees the day half rebuilt. Hours that straddle two
    days (half-hour offsets) are recomputed whole by each day's rebuild, from their own
    CDRs, so rebuilding either day leaves them right. Run it over periods the rater has
    caught up with: a CDR rated while its day is rebuilt may be counted by both.
    """
    zone = local_zone()
    start, end = day_start(day, zone), day_start(day + timedelta(days=1), zone)
    hours_from = hour_start(start)
    hours_to = hour_start(end) + (timedelta(hours=1) if hour_start(end) != end else timedelta(0))
    with transaction.atomic():
        # Every shape named: the indexes start with the shape, and without it MariaDB reads
        # the whole table to find a day's rows.
        shapes = list(SHAPES)
        TrafficRollup.objects.filter(shape__in=shapes, grain=DAY, period_start=start).delete()
        TrafficRollup.objects.filter(
            shape__in=shapes, grain=HOUR, period_start__gte=hours_from, period_start__lt=hours_to
        ).delete()
        rows = (
            Cdr.objects.filter(
                rating_state=Cdr.RatingState.RATED, created_at__gte=hours_from, created_at__lt=hours_to
            )
            .order_by()
            .values_list(*CDR_COLUMNS)
            .iterator(chunk_size=5000)
        )
        return upsert(group(rows, zone=zone, days_within=(start, end)))


def rebuild(since: date | None = None, until: date | None = None, *, progress=None) -> int:
    """Rebuild every local day from `since` (default: the first CDR's) to `until` (default:
    today), one transaction per day; rows written."""
    zone = local_zone()
    if since is None:
        first = Cdr.objects.order_by("created_at").values_list("created_at", flat=True).first()
        if first is None:
            return 0
        since = first.astimezone(zone).date()
    until = until or timezone.now().astimezone(zone).date()
    written = 0
    day = since
    while day <= until:
        count = rebuild_day(day)
        written += count
        if progress:
            progress(day, count)
        day += timedelta(days=1)
    return written
