"""Time-of-week prices at a call's set-up: call control prices a Saturday call at the weekend
tariff (sell on the customer's clock, buy on the supplier's), the reservation carries it, and
the rater charges the period in force when the call started, not when it is rated.

The world is tests/switching.py (Retail sells Germany 49 at 0.0200 a minute, per second).
Moments are computed from now: the next Saturday 12:00 in Berlin, the Monday after.
"""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.billing.models import Reservation
from apps.billing.services import rating
from apps.callcontrol.decision import decide, settle
from apps.cdr.models import Cdr
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.rates.services import time_profiles
from tests.switching import BERLIN, SYSTEM, rate, suppliers_of, update_peer

SATURDAY, MONDAY = 5, 0
WEEKEND_SELL = Decimal("0.015")
WEEKEND_BUY_CHARLIE = Decimal("0.002")  # Charlie: 0.0120 on weekdays, the dearest for 49


def next_local(weekday: int, hour: int, zone: str = "Europe/Berlin") -> datetime:
    tz = ZoneInfo(zone)
    today = timezone.now().astimezone(tz).date()
    day = today + timedelta(days=(weekday - today.weekday()) % 7 or 7)
    return datetime.combine(day, time(hour), tzinfo=tz)


def last_local(weekday: int, hour: int, zone: str = "Europe/Berlin") -> datetime:
    return next_local(weekday, hour, zone) - timedelta(days=7)


def weekend_rate(prefix: str, price: Decimal, *, since=None) -> Rate:
    row = rate(prefix, str(price), "Germany")
    row.period = "weekend"
    if since is not None:
        row.effective_from = since
    return row


@pytest.fixture
def weekend(world):
    """Acme (Berlin) pays 0.015 for Germany at the weekend; Charlie (Berlin) charges us 0.002."""
    time_profiles.create_time_profile(actor=SYSTEM, name="weekend", windows="Sat-Sun")
    update_peer(world.customer, time_zone="Europe/Berlin")
    update_peer(world.suppliers["Charlie"], time_zone="Europe/Berlin")
    rate_services.add_rates(world.sell_table, [weekend_rate("49", WEEKEND_SELL)], actor=SYSTEM)
    charlie = world.suppliers["Charlie"].buy_rate_table
    rate_services.add_rates(charlie, [weekend_rate("49", WEEKEND_BUY_CHARLIE)], actor=SYSTEM)
    return world


def call_at(world, moment, *, reserve=False):
    snapshot = world.snapshot()
    return settle(snapshot, decide(snapshot, world.request(BERLIN), at=moment), reserve=reserve)


def test_a_weekend_tariff_prices_a_saturday_call_in_call_control(weekend):
    saturday = call_at(weekend, next_local(SATURDAY, 12))
    assert (saturday.sell.tariff.price, saturday.sell.period) == (WEEKEND_SELL, "weekend")
    assert suppliers_of(saturday)[0] == "Charlie"  # 0.002 at the weekend
    charlie = next(c for c in saturday.candidates if c.supplier == "Charlie")
    assert (charlie.price, charlie.buy.period) == (WEEKEND_BUY_CHARLIE, "weekend")

    monday = call_at(weekend, next_local(MONDAY, 12))
    assert (monday.sell.tariff.price, monday.sell.period) == (Decimal("0.02"), "")
    assert suppliers_of(monday)[-1] == "Charlie"


def test_the_weekend_begins_at_midnight_on_the_customers_clock(weekend):
    friday_late_utc = next_local(SATURDAY, 0).astimezone(UTC) + timedelta(minutes=30)  # Fri 22:30 UTC
    assert call_at(weekend, friday_late_utc).sell.tariff.price == WEEKEND_SELL
    update_peer(weekend.customer, time_zone="UTC")
    assert call_at(weekend, friday_late_utc).sell.tariff.price == Decimal("0.02")


def test_check_routing_shows_the_period_of_each_price(weekend):
    out = StringIO()
    moment = next_local(SATURDAY, 12).isoformat()
    call_command("check_routing", peer="Acme", callee=BERLIN, at=moment, stdout=out)
    report = out.getvalue()
    assert (
        "sell rate   49 Germany: 0.015000/min USD, fee 0.000000, 1/1/0, period weekend at Sat 12:00" in report
    )
    charlie = next(line for line in report.splitlines() if line.strip().startswith("Charlie"))
    assert charlie.rstrip().endswith("#1 (weekend)")


def test_the_reservation_carries_the_weekend_tariff_and_the_rater_charges_it_later(weekend):
    saturday = call_at(weekend, next_local(SATURDAY, 12), reserve=True)
    held = Reservation.objects.get(pk=saturday.reservation)
    assert held.sell_tariff["price"] == "0.015000"
    cdr = _cdr(weekend, saturday.request.call_id, saturday.at, supplier="Charlie")

    rating.rate_batch(now=saturday.at + timedelta(days=2))  # rated on Monday

    cdr.refresh_from_db()
    assert (cdr.sell_cost, cdr.buy_cost) == (Decimal("0.015000"), Decimal("0.002000"))


def test_the_rater_prices_a_call_without_a_reservation_at_the_period_of_its_set_up(world):
    """No reservation (a call that bypassed call control): the lists as they stood at set-up,
    on the customer's clock, whatever the day of rating."""
    time_profiles.create_time_profile(actor=SYSTEM, name="weekend", windows="Sat-Sun")
    since = datetime(2020, 1, 1, tzinfo=UTC)
    weekday_rate = rate("49", "0.0200", "Germany")
    weekday_rate.effective_from = since
    customer = world.add_customer(
        "Weekender",
        rates=[weekday_rate, weekend_rate("49", WEEKEND_SELL, since=since)],
        time_zone="Europe/Berlin",
    )
    saturday, monday = last_local(SATURDAY, 12), last_local(MONDAY, 12)
    on_saturday = _cdr(world, "sat@test", saturday, customer=customer, supplier=None)
    on_monday = _cdr(world, "mon@test", monday, customer=customer, supplier=None)

    rating.rate_batch(now=next_local(SATURDAY, 12))  # rated on a Saturday, later

    on_saturday.refresh_from_db()
    on_monday.refresh_from_db()
    assert on_saturday.rating_state == on_monday.rating_state == Cdr.RatingState.RATED
    assert on_saturday.sell_cost == Decimal("0.015000")
    assert on_monday.sell_cost == Decimal("0.020000")


def _cdr(world, call_id, start, *, supplier, customer=None) -> Cdr:
    """A one-minute answered call set up at `start`, as OpenSIPS writes it."""
    return Cdr.objects.create(
        call_id=call_id,
        node=world.node,
        customer=customer or world.customer,
        supplier=world.suppliers[supplier] if supplier else None,
        callee=BERLIN,
        created_at=start,
        answered_at=start,
        ended_at=start + timedelta(seconds=60),
        duration_ms=60_000,
        sip_code=200,
        rating_state=Cdr.RatingState.UNRATED,
    )
