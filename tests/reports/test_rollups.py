"""The rollups equal a direct aggregation of the rated CDRs: after rating, requeue, re-rating
and rebuild, whatever the grain."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from apps.billing.services import rating, rerating
from apps.cdr.models import Cdr
from apps.rates import services as rate_services
from apps.reports import rollups
from apps.reports.models import TrafficRollup
from tests.switching import BERLIN, MOBILE, SYSTEM, rate

JAPAN = "81312345678"

FIELDS = (
    "attempts",
    "answered",
    "effective",
    "duration_ms",
    "billable_seconds",
    "supplier_billable_seconds",
    "pdd_ms",
    "pdd_calls",
    "sell",
    "buy",
)


# What each shape keeps, written out again here (the test does not trust rollups.SHAPES).
KEPT = {
    "full": {"customer", "supplier", "destination", "node"},
    "customer_destination": {"customer", "destination"},
    "customer": {"customer"},
    "supplier_destination": {"supplier", "destination"},
    "destination": {"destination"},
    "node": {"node"},
}


def account_currency(peer) -> str:
    account = getattr(peer, "account", None) if peer is not None else None
    return account.currency if account is not None else ""


def expected(grain: str) -> dict:
    """What the rollups of `grain` must hold in every shape, summed straight from the rated
    CDRs: keys (shape, period, customer, supplier, destination, node, currency, cost currency)."""
    sums = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    zone = rollups.local_zone()
    for cdr in Cdr.objects.filter(rating_state=Cdr.RatingState.RATED).select_related(
        "customer__account", "supplier__account"
    ):
        if grain == "hour":
            start = rollups.hour_start(cdr.created_at)
        else:
            start = rollups.day_start(cdr.created_at.astimezone(zone).date(), zone)
        for shape, kept in KEPT.items():
            row = sums[
                shape,
                start,
                cdr.customer_id if "customer" in kept else None,
                cdr.supplier_id if "supplier" in kept else None,
                cdr.destination if "destination" in kept else "",
                cdr.node_id if "node" in kept else None,
                account_currency(cdr.customer),
                account_currency(cdr.supplier),
            ]
            row["attempts"] += 1
            row["answered"] += cdr.answered_at is not None
            row["effective"] += cdr.answered_at is not None or cdr.sip_code in {486, 480, 487, 600, 603}
            row["duration_ms"] += cdr.duration_ms
            row["billable_seconds"] += cdr.billable_seconds
            row["supplier_billable_seconds"] += cdr.supplier_billable_seconds
            if cdr.pdd_ms is not None:
                row["pdd_ms"] += cdr.pdd_ms
                row["pdd_calls"] += 1
            row["sell"] += cdr.sell_cost or 0
            row["buy"] += cdr.buy_cost or 0
    return {
        key: {k: Decimal(v) if k in ("sell", "buy") else v for k, v in row.items()}
        for key, row in sums.items()
    }


def stored(grain: str, shape: str | None = None) -> dict:
    rows = TrafficRollup.objects.filter(grain=grain)
    if shape:
        rows = rows.filter(shape=shape)
    return {
        (
            r.shape,
            r.period_start,
            r.customer_id,
            r.supplier_id,
            r.destination,
            r.node_id,
            r.currency,
            r.cost_currency,
        ): {f: getattr(r, f) for f in FIELDS}
        for r in rows
    }


def assert_rollups_match():
    for grain in ("hour", "day"):
        assert stored(grain) == expected(grain), grain


def make_calls(
    world, *, callee=BERLIN, count=3, answered=True, code=200, start=None, pdd=1500, destination="Germany"
):
    start = start or timezone.now() - timedelta(hours=3)
    made = []
    for i in range(count):
        at = start + timedelta(minutes=7 * i)
        made.append(
            Cdr.objects.create(
                call_id=f"r{Cdr.objects.count()}@test",
                node=world.node,
                customer=world.customer,
                supplier=world.suppliers["Bravo"] if code != 403 else None,
                callee=callee,
                destination=destination,
                created_at=at,
                answered_at=at + timedelta(seconds=2) if answered else None,
                ended_at=at + timedelta(seconds=62 if answered else 5),
                duration_ms=60_000 + i if answered else 0,
                pdd_ms=pdd + i if pdd is not None else None,
                sip_code=code,
            )
        )
    return made


@pytest.fixture
def traffic(world):
    """Answered calls over the last day (the world's prices start yesterday), busy and
    refused attempts, calls with no PDD."""
    now = timezone.now()
    for hours in (3, 9, 20):
        make_calls(world, start=now - timedelta(hours=hours))
    make_calls(world, answered=False, code=486, count=2, pdd=None)
    make_calls(world, answered=False, code=503, count=2, callee=MOBILE, destination="Germany Mobile")
    return world


def test_rated_calls_are_summed_per_hour_and_day_exactly_as_the_cdrs_say(traffic, settings):
    rating.rate_all()

    assert Cdr.objects.filter(rating_state=Cdr.RatingState.RATED).count() == 13
    assert_rollups_match()
    totals = defaultdict(int)
    for row in TrafficRollup.objects.filter(grain="day", shape="full"):
        for name in ("attempts", "answered", "effective", "pdd_calls"):
            totals[name] += getattr(row, name)
    # 9 answered, 2 busy (effective), 2 network failures (not effective), 11 with a PDD.
    assert dict(totals) == {"attempts": 13, "answered": 9, "effective": 11, "pdd_calls": 11}


def test_days_follow_the_operators_clock_and_hours_stay_utc(world, settings):
    # Half-hour offsets (an hour straddles two local days): the zone whose last midnight
    # was 1 to 12 hours ago, so the calls fall within the world's prices.
    now = timezone.now()
    for zone in ("Asia/Kolkata", "Australia/Darwin", "America/St_Johns"):
        settings.TIME_ZONE = zone
        midnight = rollups.day_start(now.astimezone(rollups.local_zone()).date())
        if timedelta(hours=1) <= now - midnight <= timedelta(hours=12):
            break
    assert midnight.minute == 30
    make_calls(world, start=midnight - timedelta(minutes=10), count=4)  # 23:50, 23:57, 00:04, 00:11

    rating.rate_all()

    assert_rollups_match()
    days = sorted(
        TrafficRollup.objects.filter(grain="day", shape="node").values_list("period_start", "attempts")
    )
    assert days == [(midnight - timedelta(days=1), 2), (midnight, 2)]
    assert {r.period_start.minute for r in TrafficRollup.objects.filter(grain="hour")} == {0}


def test_a_rating_error_counts_only_once_it_is_rated_after_requeue(traffic):
    # Both calls in one day of TIME_ZONE at whatever hour the test runs: 3 h ago, or 10 minutes
    # earlier when 3 h ago is less than 7 minutes before midnight (a second day row otherwise).
    start = timezone.now() - timedelta(hours=3)
    if timezone.localtime(start).date() != timezone.localtime(start + timedelta(minutes=7)).date():
        start -= timedelta(minutes=10)
    missing = make_calls(traffic, callee=JAPAN, count=2, destination="Japan", start=start)  # no price
    rating.rate_all()
    assert Cdr.objects.filter(rating_state=Cdr.RatingState.ERROR).count() == 2
    assert_rollups_match()
    assert not TrafficRollup.objects.filter(destination="Japan").exists()

    rate_services.add_rates(traffic.sell_table, [rate("81", "0.0500", "Japan")], actor=SYSTEM)
    rate_services.add_rates(
        traffic.suppliers["Bravo"].buy_rate_table, [rate("81", "0.0100", "Japan")], actor=SYSTEM
    )
    traffic.snapshot()
    assert rating.requeue_errors([c.pk for c in missing]) == 2
    assert_rollups_match()  # unrated again: still not counted
    rating.rate_all()
    rating.rate_all()  # nothing left: adds nothing

    assert not Cdr.objects.filter(rating_state=Cdr.RatingState.ERROR).exists()
    assert_rollups_match()
    [day] = TrafficRollup.objects.filter(grain="day", shape="full", destination="Japan")
    assert (day.attempts, day.sell) == (2, Decimal("0.100833"))  # 60 s and 61 s at 0.05


def test_a_batch_rolled_back_adds_nothing_and_its_replay_adds_once(traffic):
    with pytest.raises(RuntimeError), transaction.atomic():
        rating.rate_batch()
        raise RuntimeError("the commit failed certification")
    assert not TrafficRollup.objects.exists()

    rating.rate_batch()
    rating.rate_batch()

    assert_rollups_match()


def test_re_rating_moves_the_money_into_the_same_rows(traffic):
    rating.rate_all()
    before = stored("day", "full")
    rate_services.add_rates(traffic.sell_table, [rate("49", "0.0300", "Corrected")], actor=SYSTEM)
    traffic.snapshot()

    now = timezone.now()
    run = rerating.request_rerate(
        actor=SYSTEM, peer=traffic.customer, period_start=now - timedelta(days=4), period_end=now
    )
    run = rerating.run(run.pk, batch_size=4)

    assert run.changed > 0
    assert_rollups_match()
    after = stored("day", "full")
    assert after.keys() == before.keys()
    assert sum(r["sell"] for r in after.values()) > sum(r["sell"] for r in before.values())
    assert sum(r["attempts"] for r in after.values()) == sum(r["attempts"] for r in before.values())


def test_moving_seconds_a_row_lacks_stops_at_zero_instead_of_failing(traffic):
    rating.rate_all()
    cdr = Cdr.objects.filter(answered_at__isnull=False).first()
    TrafficRollup.objects.update(billable_seconds=10)  # as if the call were not counted
    old = (cdr.sell_cost, cdr.buy_cost, cdr.billable_seconds, cdr.supplier_billable_seconds)

    rollups.move_prices([(cdr.pk, old, (cdr.sell_cost, cdr.buy_cost, 0, cdr.supplier_billable_seconds))])

    seconds = TrafficRollup.objects.filter(
        shape="full", customer=cdr.customer_id, destination=cdr.destination
    )
    assert sorted(set(seconds.values_list("billable_seconds", flat=True))) == [0, 10]


def test_rebuild_recomputes_from_the_cdrs_and_is_idempotent(traffic):
    rating.rate_all()
    reference = (stored("hour"), stored("day"))
    TrafficRollup.objects.all().delete()
    # A stale row of a rebuilt day goes; rows of days outside --since stay.
    old = timezone.now() - timedelta(days=30)
    rollups.upsert(
        {
            ("day", rollups.day_start(old.date()), "full", traffic.customer.pk, None, "X", None, "", ""): (
                rollups.Sums(attempts=5)
            )
        }
    )

    call_command(
        "rebuild_rollups", since=(timezone.now() - timedelta(days=5)).date().isoformat(), verbosity=0
    )
    call_command(
        "rebuild_rollups", since=(timezone.now() - timedelta(days=5)).date().isoformat(), verbosity=0
    )

    assert stored("hour") == reference[0]
    day_rows = stored("day")
    stale = ("full", rollups.day_start(old.date()), traffic.customer.pk, None, "X", None, "", "")
    day_rows_stale = day_rows.pop(stale)
    assert day_rows_stale["attempts"] == 5
    assert day_rows == reference[1]

    call_command("rebuild_rollups", verbosity=0)  # from the first CDR's day: the stale row is older
    assert stored("day") == reference[1] | {stale: day_rows_stale}


def test_rebuild_refuses_reversed_dates(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("rebuild_rollups", since="2026-02-02", until="2026-02-01")


def test_two_raters_adding_to_one_row_at_once_both_count(transactional_db):
    """The addition happens in the database: concurrent upserts of one key never lose one."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers in one file; this race needs a server database")
    start = rollups.hour_start(timezone.now())
    identity = ("hour", start, "destination", None, None, "Race", None, "", "")

    def add(_):
        try:
            for _round in range(20):
                with transaction.atomic():
                    rollups.upsert({identity: rollups.Sums(attempts=1, sell=Decimal("0.5"))})
        finally:
            connections.close_all()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(4)))
    [row] = TrafficRollup.objects.filter(destination="Race")
    assert (row.attempts, row.sell) == (80, Decimal("40"))
