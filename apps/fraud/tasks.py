"""django-q2 entry points of fraud control; schedules are ensured after every migrate.

All three are cluster singletons under the lease (apps.cluster.schedules): the controllers
judge the whole cluster's CDRs, and two nodes judging at once would only race on the same
alerts.
"""

from datetime import timedelta

from django.db.models import Max
from django.utils import timezone

from apps.cluster.schedules import Kind, Periodic
from apps.core.db import retry_on_conflict

SCHEDULES = {
    "Run the fraud and quality controllers": Periodic("apps.fraud.tasks.run_controllers", 2, Kind.SINGLETON),
    "End fraud alerts whose time is up": Periodic("apps.fraud.tasks.end_expired_alerts", 1, Kind.SINGLETON),
    "Delete old authentication failures": Periodic(
        "apps.fraud.tasks.purge_auth_failures", 60, Kind.SINGLETON
    ),
}
# Failed authentications are kept at least this long, whatever the windows (for people to read).
KEEP_AUTH_FAILURES = timedelta(days=1)
PURGE_BATCH = 5000


def run_controllers() -> dict:
    from apps.fraud.controllers import run_all

    return run_all()


def end_expired_alerts() -> int:
    from apps.fraud.services import end_expired

    return end_expired()


def purge_auth_failures(*, now=None) -> int:
    """Delete failures older than the longest brute-force window (at least a day); how many.

    In batches, each its own transaction: after an attack there may be millions of rows,
    and one huge DELETE would hold its locks (and a Galera write set) for too long.
    """
    from apps.fraud.models import AuthFailure, Controller
    from apps.fraud.models import Kind as ControllerKind

    now = now or timezone.now()
    longest = Controller.objects.filter(kind__in=(ControllerKind.SIP_AUTH, ControllerKind.LOGIN)).aggregate(
        minutes=Max("window_minutes")
    )["minutes"]
    cutoff = now - max(KEEP_AUTH_FAILURES, timedelta(minutes=longest or 0))
    deleted = 0
    while True:
        ids = list(
            AuthFailure.objects.filter(created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("pk", flat=True)[:PURGE_BATCH]
        )
        if not ids:
            return deleted
        deleted += _delete_failures(ids)


@retry_on_conflict
def _delete_failures(ids: list[int]) -> int:
    from apps.fraud.models import AuthFailure

    return AuthFailure.objects.filter(pk__in=ids).delete()[0]
