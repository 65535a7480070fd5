"""Routing rules with a window: in force in their hours on the customer's clock, and then
before a rule of the same prefix without one; check routing says which window applied.

The clock is injected: every call is decided `at` a moment computed from now (the next
Wednesday 23:00 in Berlin, ...), never a calendar date that time overtakes. The world is
tests/switching.py: Acme's plan Main has one least-cost rule for every number.
"""

from datetime import datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.callcontrol.decision import decide
from apps.rates.models import TimeProfile
from apps.rates.services import time_profiles
from apps.routing.models import Method
from tests.conftest import PASSWORD
from tests.switching import BERLIN, LCR_BERLIN, SYSTEM, add_route, add_rule, suppliers_of, update_peer

MONDAY, WEDNESDAY, FRIDAY, SATURDAY = 0, 2, 4, 5
BERLIN_ZONE = "Europe/Berlin"


def next_local(weekday: int, hour: int, zone: str = BERLIN_ZONE, minute: int = 0) -> datetime:
    """The next `weekday` (0 = Monday) after today at hour:minute on `zone`'s wall clock."""
    tz = ZoneInfo(zone)
    today = timezone.now().astimezone(tz).date()
    day = today + timedelta(days=(weekday - today.weekday()) % 7 or 7)
    return datetime.combine(day, time(hour, minute), tzinfo=tz)


def profile(name: str, windows: str):
    return time_profiles.create_time_profile(actor=SYSTEM, name=name, windows=windows)


def call_at(world, moment: datetime, callee: str = BERLIN, **fields):
    return decide(world.snapshot(), world.request(callee, **fields), at=moment)


@pytest.fixture
def berlin(world):
    update_peer(world.customer, time_zone=BERLIN_ZONE)
    return world


@pytest.fixture
def night_rule(berlin):
    """Numbers of 49 go to Charlie alone at night (22:00-06:00 on the customer's clock)."""
    rule = add_rule(berlin.plan, "49", Method.PRIORITY, time_profile=profile("night", "daily 22:00-06:00"))
    add_route(rule, berlin.suppliers["Charlie"])
    return rule


def test_a_rule_valid_only_at_night_routes_a_night_call_and_not_a_day_call(berlin, night_rule):
    night = call_at(berlin, next_local(WEDNESDAY, 23))
    assert night.routed and night.rule.id == night_rule.pk
    assert suppliers_of(night) == ["Charlie"]

    day = call_at(berlin, next_local(WEDNESDAY, 12))
    assert day.routed and day.rule.id == berlin.rule.pk  # the rule for every number
    assert suppliers_of(day) == LCR_BERLIN


def test_in_its_window_a_rule_beats_one_of_the_same_prefix_without_a_window(berlin, night_rule):
    always = add_rule(berlin.plan, "49", Method.PRIORITY, position=0)
    add_route(always, berlin.suppliers["Alpha"])
    assert call_at(berlin, next_local(WEDNESDAY, 23)).rule.id == night_rule.pk
    assert call_at(berlin, next_local(WEDNESDAY, 12)).rule.id == always.pk


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts(berlin):
    weeknights = add_rule(berlin.plan, "49", time_profile=profile("weeknights", "Mon-Fri 22:00-06:00"))
    add_route(weeknights, berlin.suppliers["Charlie"])
    friday_night = next_local(FRIDAY, 22) + timedelta(hours=5)  # Saturday 03:00
    assert call_at(berlin, friday_night).rule.id == weeknights.pk
    sunday_night = next_local(MONDAY, 3)  # Monday 03:00 is Sunday's night
    assert call_at(berlin, sunday_night).rule.id == berlin.rule.pk
    assert call_at(berlin, next_local(MONDAY, 22, minute=1)).rule.id == weeknights.pk


def test_the_same_moment_is_night_for_one_customer_and_day_for_another(berlin, night_rule):
    gotham = berlin.add_customer("Gotham", "198.51.100.20", time_zone="America/New_York")
    moment = next_local(WEDNESDAY, 23)  # 17:00 in New York

    assert call_at(berlin, moment).rule.id == night_rule.pk
    theirs = call_at(berlin, moment, source_ip="198.51.100.20")
    assert theirs.peer.id == gotham.pk and theirs.rule.id == berlin.rule.pk


def test_windows_are_read_from_the_snapshot_without_a_query_per_call(
    berlin, night_rule, django_assert_num_queries
):
    snapshot = berlin.snapshot()
    for hour in (23, 12):  # opens the rate indexes once
        decide(snapshot, berlin.request(BERLIN), at=next_local(WEDNESDAY, hour))
    with django_assert_num_queries(0):
        for hour in (23, 12):
            decide(snapshot, berlin.request(BERLIN), at=next_local(WEDNESDAY, hour))


def test_a_profile_that_no_longer_reads_opens_its_rules_never(berlin, night_rule):
    TimeProfile.objects.filter(name="night").update(windows="nightly")  # bypassing clean()
    assert call_at(berlin, next_local(WEDNESDAY, 23)).rule.id == berlin.rule.pk


def test_check_routing_shows_which_window_applied_and_which_was_closed(berlin, night_rule):
    night = next_local(WEDNESDAY, 23)
    out = StringIO()
    call_command("check_routing", peer="Acme", callee=BERLIN, at=night.isoformat(), stdout=out)
    report = out.getvalue()
    assert "(Wed 23:00 Europe/Berlin for Acme)" in report.splitlines()[0]
    assert (
        f"rule #{night_rule.pk} prefix 49, window night (daily 22:00-06:00) at Wed 23:00 Europe/Berlin"
        in report
    )

    out = StringIO()
    call_command(
        "check_routing", peer="Acme", callee=BERLIN, at=next_local(WEDNESDAY, 12).isoformat(), stdout=out
    )
    assert (
        f"not in force at Wed 12:00 Europe/Berlin: #{night_rule.pk} night (daily 22:00-06:00)"
        in out.getvalue()
    )


def test_the_check_routing_page_names_the_window(berlin, night_rule, django_user_model):
    django_user_model.objects.create_superuser("op", "op@example.com", PASSWORD)
    client = Client()
    client.login(username="op", password=PASSWORD)
    night = next_local(WEDNESDAY, 23).astimezone(ZoneInfo("UTC"))
    page = client.get(
        "/admin/check-routing/",
        {"peer": berlin.customer.pk, "callee": BERLIN, "at": night.strftime("%Y-%m-%d %H:%M:%S")},
    ).content.decode()
    text = " ".join(page.split())
    assert "On Acme's clock: Wed 23:00 Europe/Berlin. Sell price of any time." in text
    assert f"Routing rule #{night_rule.pk} in its window <strong>night</strong> (daily 22:00-06:00)" in text
