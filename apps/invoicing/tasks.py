"""django-q2 entry points of invoicing; schedules are ensured after every migrate."""

from apps.cluster.schedules import Kind, Periodic

SCHEDULES = {
    # Cluster-wide, by the lease holder: each account's invoice once its period has ended.
    "Issue and send invoices of ended periods": Periodic(
        "apps.invoicing.tasks.issue_invoices", 60, Kind.SINGLETON
    ),
}


def issue_invoices() -> dict[str, int]:
    from apps.invoicing.services.invoices import issue_due

    return issue_due()
