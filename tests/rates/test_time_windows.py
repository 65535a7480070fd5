"""Time profiles' windows, pure: how operators write them, midnight, the week's end, the clock.

Moments are built from fixed calendar dates on purpose: these tests are about the calendar
(a Saturday, the night the clocks change), not about today.
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from apps.rates.time_windows import (
    ANY_TIME,
    DAY,
    TimeProfiles,
    WindowError,
    Windows,
    local_label,
    second_of_week,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(day: int, hour: int, minute: int = 0) -> int:
    """Second of the week: day 0 is Monday."""
    return day * DAY + hour * 3600 + minute * 60


MON, TUE, FRI, SAT, SUN = 0, 1, 4, 5, 6


def test_weekend_is_saturday_and_sunday_whole():
    weekend = Windows.parse("Sat-Sun")
    assert weekend.covers(at(SAT, 0))
    assert weekend.covers(at(SUN, 23, 59))
    assert not weekend.covers(at(FRI, 23, 59))
    assert not weekend.covers(at(MON, 0))
    assert weekend.seconds == 2 * DAY


def test_a_window_past_midnight_belongs_to_the_day_it_starts():
    nights = Windows.parse("Mon-Fri 22:00-06:00")
    assert nights.covers(at(MON, 22, 30))
    assert nights.covers(at(TUE, 5, 59))
    assert nights.covers(at(SAT, 5, 59))  # Friday's night
    assert not nights.covers(at(SAT, 6))
    assert not nights.covers(at(MON, 3))  # Sunday's night: Sunday is not listed
    assert not nights.covers(at(TUE, 12))


def test_sunday_night_runs_into_monday_morning():
    nightly = Windows.parse("daily 22:00-06:00")
    assert nightly.covers(at(SUN, 23))
    assert nightly.covers(at(MON, 0, 30))
    assert nightly.covers(at(MON, 5, 59))
    assert not nightly.covers(at(MON, 6))
    assert nightly.seconds == 7 * 8 * 3600


def test_several_windows_lists_and_ranges_that_wrap():
    offpeak = Windows.parse("Mon-Fri 19:00-08:00; Sat,Sun")
    assert offpeak.covers(at(TUE, 7)) and offpeak.covers(at(SUN, 12)) and offpeak.covers(at(SAT, 7, 59))
    assert not offpeak.covers(at(TUE, 8)) and not offpeak.covers(at(MON, 7))
    long_weekend = Windows.parse("Fri-Mon")  # wraps over Sunday
    assert long_weekend.covers(at(MON, 12)) and long_weekend.covers(at(FRI, 0))
    assert not long_weekend.covers(at(TUE, 0))
    assert Windows.parse("friday 17:00-24:00").covers(at(FRI, 23, 59))
    assert not Windows.parse("friday 17:00-24:00").covers(at(SAT, 0))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one window"),
        ("Weekends", "'Weekends' in 'Weekends' is not a day"),
        ("Mon-Fri 25:00-06:00", "'25:00' in 'Mon-Fri 25:00-06:00' is not a time of day"),
        ("Mon 24:00-06:00", "is not a time of day"),
        ("Mon 10:00-10:00", "is empty"),
        ("Mon 10-12", "is not like"),
    ],
)
def test_a_window_that_does_not_read_says_what_is_wrong(text, message):
    with pytest.raises(WindowError, match=message):
        Windows.parse(text)


def test_the_clock_is_the_zones_wall_clock_across_a_change_of_time():
    # Sunday 2026-03-29 the clocks in Berlin go from 02:00 to 03:00 (UTC+1 -> UTC+2).
    before = datetime(2026, 3, 28, 21, 30, tzinfo=UTC)  # Saturday 22:30 in Berlin (winter)
    after = datetime(2026, 3, 29, 20, 30, tzinfo=UTC)  # Sunday 22:30 in Berlin (summer)
    assert second_of_week(before, BERLIN) == at(SAT, 22, 30)
    assert second_of_week(after, BERLIN) == at(SUN, 22, 30)
    nightly = Windows.parse("daily 22:00-06:00")
    assert nightly.covers(second_of_week(before, BERLIN)) and nightly.covers(second_of_week(after, BERLIN))
    assert local_label(after, BERLIN) == "Sun 22:30 Europe/Berlin"


def test_one_moment_is_night_in_one_zone_and_day_in_another():
    moment = datetime(2026, 6, 3, 23, 0, tzinfo=UTC)  # a Wednesday
    nightly = Windows.parse("daily 22:00-06:00")
    assert nightly.covers(second_of_week(moment, BERLIN))  # Thursday 01:00
    assert not nightly.covers(second_of_week(moment, NEW_YORK))  # Wednesday 19:00


def test_of_two_profiles_in_force_the_one_covering_less_of_the_week_ranks_first():
    profiles = TimeProfiles(
        [(1, "offpeak", "Mon-Fri 19:00-08:00; Sat-Sun"), (2, "weekend", "Sat-Sun"), (3, "broken", "Xyz")]
    )
    assert set(profiles.by_name) == {"offpeak", "weekend"}  # a text that does not read is left out
    saturday_evening = profiles.at(datetime(2026, 6, 6, 18, 0, tzinfo=UTC), BERLIN)
    assert saturday_evening.rank("weekend") < saturday_evening.rank("offpeak") < ANY_TIME
    assert saturday_evening.rank("") == ANY_TIME
    assert saturday_evening.rank("broken") is None and saturday_evening.rank("unknown") is None
    tuesday_noon = profiles.at(datetime(2026, 6, 2, 10, 0, tzinfo=UTC), BERLIN)
    assert tuesday_noon.rank("weekend") is None and tuesday_noon.rank("offpeak") is None
