"""Time of the week: the windows of a time profile, and which profiles are in force at a moment.

Pure, no ORM and no clock. A time profile (apps.rates.models.TimeProfile) names its windows
the way operators write them, one or more separated by semicolons:

    Sat-Sun                       all of Saturday and Sunday
    Mon-Fri 19:00-08:00; Sat-Sun  weekday evenings and nights, and the weekend
    daily 22:00-06:00             every night
    Mon,Wed,Fri 09:00-17:30

Days are Mon..Sun (or full names), lists and ranges (a range may wrap: Fri-Mon); "daily"
is every day. Without times a window is the whole day. A window whose end is at or before
its start crosses midnight and belongs to the day it starts: "Mon-Fri 22:00-06:00" runs
from Monday 22:00 to Saturday 06:00, and Monday 00:00-06:00 is not in it (that is Sunday's
night). 24:00 ends a window at midnight.

Windows are evaluated on the wall clock of a time zone (the customer's: docs/CALL_CONTROL.md),
through zoneinfo: a window from 22:00 starts at 22:00 local time in winter and in summer.
They compile to sorted, merged ranges of seconds since Monday 00:00, so "is it in force"
is one bisect.
"""

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

DAY = 86_400
WEEK = 7 * DAY
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {**{name: n for n, name in enumerate(DAY_NAMES)}, **{name: n for n, name in enumerate(FULL_NAMES)}}
_WINDOW = re.compile(
    r"^(?P<days>[A-Za-z,\s-]+?)\s*(?:(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2}))?$"
)
# A rate or rule without a profile: in force whenever its row is, below every profile in force.
ANY_TIME = 1 << 30


class WindowError(ValueError):
    """A windows text that does not read; the message says what and where."""


def _day(text: str, spec: str) -> int:
    day = _DAYS.get(text.strip().lower())
    if day is None:
        raise WindowError(f"'{text.strip()}' in '{spec}' is not a day (Mon, Tue, ... Sun, or daily).")
    return day


def _days(text: str, spec: str) -> list[int]:
    text = text.strip()
    if text.lower() in ("daily", "every day"):
        return list(range(7))
    days: list[int] = []
    for item in text.split(","):
        first, dash, last = item.partition("-")
        start = _day(first, spec)
        if not dash:
            days.append(start)
            continue
        end = _day(last, spec)
        days.extend((start + n) % 7 for n in range((end - start) % 7 + 1))
    return days


def _clock(text: str, spec: str, *, end: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise WindowError(f"'{text}' in '{spec}' is not a time of day (00:00 to 23:59, or 24:00 as an end).")
    return hours * 3600 + minutes * 60


def parse_windows(text: str) -> list[tuple[int, int]]:
    """The windows of `text` as (start, length) in seconds, start counted from Monday 00:00."""
    spans: list[tuple[int, int]] = []
    parts = [part.strip() for part in (text or "").split(";")]
    if not any(parts):
        raise WindowError("Give at least one window, e.g. 'Sat-Sun' or 'Mon-Fri 19:00-08:00'.")
    for spec in parts:
        if not spec:
            continue
        match = _WINDOW.match(spec)
        if match is None:
            raise WindowError(f"'{spec}' is not like 'Mon-Fri 19:00-08:00' or 'Sat-Sun'.")
        days = _days(match["days"], spec)
        if match["start"] is None:
            start, length = 0, DAY
        else:
            start = _clock(match["start"], spec, end=False)
            stop = _clock(match["end"], spec, end=True)
            if stop == start:
                raise WindowError(f"'{spec}' is empty: leave the times out for the whole day.")
            length = (stop - start) % DAY or DAY
        spans.extend((day * DAY + start, length) for day in days)
    return spans


def _merge(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Half-open [from, to) ranges within one week, sorted and merged (a window past Sunday
    midnight continues on Monday)."""
    pieces = []
    for start, length in spans:
        end = start + length
        if end <= WEEK:
            pieces.append((start, end))
        else:
            pieces += [(start, WEEK), (0, end - WEEK)]
    merged: list[list[int]] = []
    for start, end in sorted(pieces):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


@dataclass(frozen=True, slots=True)
class Windows:
    """A profile's windows, compiled: merged [from, to) seconds of the week."""

    text: str
    ranges: tuple[tuple[int, int], ...]
    starts: tuple[int, ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, text: str) -> "Windows":
        ranges = _merge(parse_windows(text))
        return cls(text.strip(), ranges, tuple(start for start, _end in ranges))

    @property
    def seconds(self) -> int:
        """How much of the week the windows cover: the less, the more specific."""
        return sum(end - start for start, end in self.ranges)

    def covers(self, second: int) -> bool:
        """True if second `second` of the week (0 = Monday 00:00:00) is inside a window."""
        index = bisect.bisect_right(self.starts, second) - 1
        return index >= 0 and second < self.ranges[index][1]


def second_of_week(moment: datetime, zone: tzinfo) -> int:
    """Seconds since Monday 00:00 on the wall clock of `zone` at the aware `moment`."""
    local = moment.astimezone(zone)
    return local.weekday() * DAY + local.hour * 3600 + local.minute * 60 + local.second


def local_label(moment: datetime, zone: tzinfo) -> str:
    """'Sat 23:10 Europe/Berlin': the moment as the windows see it."""
    local = moment.astimezone(zone)
    return f"{DAY_NAMES[local.weekday()].capitalize()} {local:%H:%M} {zone}"


@dataclass(frozen=True, slots=True)
class Profile:
    """A named time profile, compiled, with its rank among all profiles (lower: more specific)."""

    id: int
    name: str
    windows: Windows
    rank: int


class TimeProfiles:
    """Every time profile by name, ranked: of two in force, the one covering less of the week wins
    (then the name), as the longest prefix does among prices."""

    def __init__(self, profiles: Iterable[tuple[int, str, str]] = ()) -> None:
        """`profiles`: (id, name, windows text); a text that does not parse is left out."""
        compiled = []
        for pk, name, text in profiles:
            try:
                compiled.append((pk, name, Windows.parse(text)))
            except WindowError:
                continue  # TimeProfile.clean refuses these; an old row must not stop calls
        compiled.sort(key=lambda item: (item[2].seconds, item[1]))
        self.by_name = {
            name: Profile(pk, name, windows, rank) for rank, (pk, name, windows) in enumerate(compiled)
        }
        self.by_id = {profile.id: profile for profile in self.by_name.values()}

    def __len__(self) -> int:
        return len(self.by_name)

    def at(self, moment: datetime, zone: tzinfo) -> "InForce":
        return InForce(self, second_of_week(moment, zone))


class InForce:
    """Which profiles are in force at one second of the week; asked once per name at most."""

    __slots__ = ("_cache", "_profiles", "second")

    def __init__(self, profiles: TimeProfiles, second: int) -> None:
        self._profiles = profiles
        self.second = second
        self._cache: dict[str, int | None] = {}

    def rank(self, name: str) -> int | None:
        """The profile's rank if it is in force now (lower wins), else None; "" is ANY_TIME."""
        if not name:
            return ANY_TIME
        found = self._cache.get(name, -1)
        if found != -1:
            return found
        profile = self._profiles.by_name.get(name)
        found = profile.rank if profile is not None and profile.windows.covers(self.second) else None
        self._cache[name] = found
        return found
