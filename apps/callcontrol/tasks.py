"""django-q2 entry points of call control; schedules are ensured after every migrate."""

from apps.billing.services.reservations import expire_reservations
from apps.cluster import schedules
from apps.cluster.schedules import Kind, Periodic
from apps.routing.quality import refresh_quality_stats

SCHEDULES = {
    # Cluster-wide: run by the node holding each task's lease (apps.cluster.tasks.run_singleton).
    "Expire reservations of calls without a CDR": Periodic(
        "apps.callcontrol.tasks.expire", 1, Kind.SINGLETON
    ),
    "Refresh supplier quality (ASR/ACD)": Periodic(
        "apps.callcontrol.tasks.refresh_quality", 5, Kind.SINGLETON
    ),
}


def expire() -> int:
    return expire_reservations()


def refresh_quality() -> int:
    return refresh_quality_stats()


def ensure_schedules(**kwargs) -> None:
    """Create the periodic tasks once per enabled node; an operator's later changes are kept."""
    schedules.ensure(SCHEDULES)
