"""django-q2 entry points of OpenSIPS provisioning."""

import logging

from apps.cluster.schedules import Kind, Periodic
from apps.core.db import retry_on_conflict
from apps.opensips import provisioning

logger = logging.getLogger(__name__)

SCHEDULES = {
    # The services keep the tables in step as they change our models; this repairs what they
    # cannot see: two nodes changing one table at the same moment (Galera shares no row
    # locks, so each diffs without the other's uncommitted rows), or a table edited by hand.
    "Repair OpenSIPS tables that drifted": Periodic("apps.opensips.tasks.repair_tables", 5, Kind.SINGLETON),
}


def repair_tables() -> str:
    """Bring every OpenSIPS table in step with our models; the nodes reload what changed."""
    results = retry_on_conflict(provisioning.sync_tables)()
    drifted = [str(result) for result in results if result.changed]
    if drifted:
        logger.warning("OpenSIPS tables had drifted and were repaired: %s", "; ".join(drifted))
        return "repaired " + "; ".join(drifted)
    return "in step"
