"""django-q2 entry points of call control; schedules are ensured after every migrate."""

from apps.billing.reservations import expire_reservations
from apps.routing.quality import refresh_quality_stats

SCHEDULES = {
    # name: (function path, minutes between runs)
    "Expire reservations of calls without a CDR": ("apps.callcontrol.tasks.expire", 1),
    "Refresh supplier quality (ASR/ACD)": ("apps.callcontrol.tasks.refresh_quality", 5),
}


def expire() -> int:
    return expire_reservations()


def refresh_quality() -> int:
    return refresh_quality_stats()


def ensure_schedules(**kwargs) -> None:
    """Create the periodic tasks once; an operator's later changes to them are kept."""
    from django_q.models import Schedule

    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.get_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
