"""Periodic work, one django-q2 Schedule row per enabled node and its own cluster.

django-q2's scheduler on each node picks the rows whose `cluster` is the node's name (rows
with no cluster would be picked by every node: all would fight over the same rows through
Galera, and all would run the work). So every periodic task has a row per enabled node:
a node's scheduler updates only its own rows and queues only to its own cluster.

- NODE work (its billing loop, which rates its own CDRs first) runs on every node.
- SINGLETON work (recurring fees, quality statistics, reservation expiry) is scheduled on
  every node too, through `apps.cluster.tasks.run_singleton`, which runs it only on the node
  holding the work's lease (apps.cluster.leases) and skips it everywhere else. The lease
  follows the heartbeat, so when its holder dies another node holds it within
  CLUSTER_LEASE_SECONDS + CLUSTER_HEARTBEAT_SECONDS and runs the work at its next scheduled
  time on that node.

An app declares its periodic tasks as `SCHEDULES = {label: Periodic(...)}` in its tasks.py;
`ensure_all` finds them after every migrate and when a node is added, enabled or disabled.
"""

import enum
import importlib
import logging
from dataclasses import dataclass

from django.apps import apps as django_apps
from django.conf import settings
from django.db.models import Q

from apps.cluster import leases
from apps.core.db import retry_on_conflict
from apps.nodes.models import Node

logger = logging.getLogger(__name__)

RUN_SINGLETON = "apps.cluster.tasks.run_singleton"


class Kind(enum.Enum):
    NODE = "node"  # runs on every enabled node
    SINGLETON = "singleton"  # runs on the node holding its lease


@dataclass(frozen=True)
class Periodic:
    """A task run every `minutes` on each node (NODE) or once in the cluster (SINGLETON)."""

    func: str
    minutes: int
    kind: Kind = Kind.NODE

    @property
    def lease(self) -> str:
        return self.func


def schedule_name(label: str, node_name: str) -> str:
    return f"{label} [{node_name}]"


def scheduled_nodes() -> list[str]:
    """The nodes that get schedules: the enabled ones, or this node when none is configured yet."""
    names = list(Node.objects.enabled().order_by("name").values_list("name", flat=True))
    # A fresh single-node install migrates before anyone adds its Node row: it runs anyway.
    if not names and not Node.objects.exists():
        names = [settings.NODE_NAME]
    return names


@retry_on_conflict
def ensure(periodic: dict[str, Periodic]) -> dict[str, int]:
    """Create each task's row for every enabled node and remove other nodes' rows.

    Idempotent; an operator's later changes to a row (its interval, repeats) are kept, the
    function it runs follows the code (a task made a singleton goes under its lease). A
    row from before schedules were per node (no cluster) lends its interval to the new
    rows and is removed.
    """
    from django_q.models import Schedule

    nodes = scheduled_nodes()
    counts = {"created": 0, "updated": 0, "removed": 0}
    for label, task in periodic.items():
        if task.kind is Kind.SINGLETON:
            leases.ensure(task.lease)
            func, args = RUN_SINGLETON, repr((task.lease, task.func))
        else:
            func, args = task.func, None
        legacy = Schedule.objects.filter(name=label, cluster__isnull=True).first()
        for node in nodes:
            # django-q2's table has no unique key on (name, cluster): two nodes migrating at
            # once can both insert a row. Keep the oldest and drop the others, every time.
            twins = list(
                Schedule.objects.filter(name=schedule_name(label, node), cluster=node)
                .order_by("pk")
                .values_list("pk", flat=True)
            )[1:]
            if twins:
                counts["removed"] += Schedule.objects.filter(pk__in=twins).delete()[0]
            row, created = Schedule.objects.get_or_create(
                name=schedule_name(label, node),
                cluster=node,
                defaults={
                    "func": func,
                    "args": args,
                    "schedule_type": legacy.schedule_type if legacy else Schedule.MINUTES,
                    "minutes": legacy.minutes if legacy else task.minutes,
                    "cron": legacy.cron if legacy else None,
                    "repeats": -1,
                },
            )
            counts["created"] += created
            if not created and (row.func, row.args) != (func, args):
                # What runs (and whether under a lease) is the code's; the interval is the operator's.
                Schedule.objects.filter(pk=row.pk).update(func=func, args=args)
                counts["updated"] += 1
        others = Schedule.objects.filter(name__startswith=f"{label} [", name__endswith="]").exclude(
            Q(cluster__in=nodes) & Q(name__in=[schedule_name(label, node) for node in nodes])
        )
        counts["removed"] += others.delete()[0]
        if legacy is not None:
            legacy.delete()
            counts["removed"] += 1
    if any(counts.values()):
        logger.info("schedules for nodes %s: %s", ", ".join(nodes), counts)
    return counts


def ensure_all(**kwargs) -> None:
    """Ensure the schedules of every app with periodic work: each `apps.<app>.tasks.SCHEDULES`.

    Run after every migrate (apps.cluster.apps) and when a node is added, enabled or
    disabled (nodes_changed).
    """
    for config in django_apps.get_app_configs():
        if not config.name.startswith("apps."):
            continue
        try:
            module = importlib.import_module(f"{config.name}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name == f"{config.name}.tasks":
                continue  # an app without tasks
            raise
        periodic = getattr(module, "SCHEDULES", None)
        if periodic and all(isinstance(task, Periodic) for task in periodic.values()):
            ensure(periodic)


# Node fields that decide which nodes have schedule rows (scheduled_nodes).
NODE_FIELDS = frozenset({"name", "enabled"})


def nodes_changed(changes) -> None:
    """After-commit consumer of apps.core.changes: a node added, enabled or disabled gets
    (or loses) its schedule rows; the other nodes' rows are untouched."""
    for change in changes:
        if change.kind == "nodes.Node" and (not change.fields or change.fields & NODE_FIELDS):
            ensure_all()
            return
