"""Invoice periods on the customer's clock: pure date arithmetic, no ORM, no clock."""

from datetime import date, datetime, time, timedelta, tzinfo

MONTHLY, WEEKLY = "monthly", "weekly"


def period_containing(kind: str, day: date) -> tuple[date, date]:
    """The (first, last) day of the `kind` period that `day` falls in; weeks run Monday to Sunday."""
    if kind == MONTHLY:
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    if kind == WEEKLY:
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    raise ValueError(f"no periods of kind {kind!r}")


def last_complete_period(kind: str, today: date) -> tuple[date, date]:
    """The latest `kind` period that ended before `today` began."""
    first, _ = period_containing(kind, today)
    return period_containing(kind, first - timedelta(days=1))


def instants(first: date, last: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[starts_at, ends_at): from the start of `first` to the start of the day after `last`,
    in `zone` (a day may be 23 or 25 hours long there)."""
    if last < first:
        raise ValueError("a period ends on or after its first day")
    return datetime.combine(first, time.min, zone), datetime.combine(last + timedelta(days=1), time.min, zone)
