"""Print every node's heartbeat age, Galera state, engine sync and file-sync backlog."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.cluster.presence import cluster_report, galera_state


class Command(BaseCommand):
    help = (
        "Show each node: heartbeat age (stale after CLUSTER_STALE_SECONDS), its Galera member's "
        "state, engine sync state, file-sync backlog and the leases it holds. Exits with 1 when "
        "an enabled node is stale (one that never beat has not started yet, and is not)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON object, for scripts.")

    def handle(self, *args, **options):
        reports = cluster_report()
        stale = [report.name for report in reports if report.enabled and report.stale]
        # Read live from this node's own database: a member cut off from the primary component
        # cannot write its status row, so the others see it stale but only it knows why.
        local = galera_state()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "stale_after_seconds": settings.CLUSTER_STALE_SECONDS,
                        "stale": stale,
                        "this_node": {
                            "name": settings.NODE_NAME,
                            "galera": {**local.__dict__, "summary": local.summary()},
                        },
                        "nodes": [report.as_dict() for report in reports],
                    },
                    indent=2,
                )
            )
        else:
            self.stdout.write(self.table(reports))
            self.stdout.write(f"\nThis node ({settings.NODE_NAME}), read now: {local.summary()}")
        if stale:
            # CommandError exits with status 1 and its message on stderr.
            raise CommandError(
                f"stale (no heartbeat for {settings.CLUSTER_STALE_SECONDS}s): {', '.join(stale)}"
            )

    def table(self, reports) -> str:
        if not reports:
            return "No nodes configured."
        rows = [("node", "heartbeat", "state", "galera", "engine sync", "file backlog", "leases")]
        for report in reports:
            age = "never" if report.age_seconds is None else f"{report.age_seconds:.0f}s ago"
            state = report.state
            galera = report.galera.summary() if report.galera else "unknown"
            rows.append(
                (
                    report.name,
                    age,
                    state,
                    galera,
                    report.engine_sync or "-",
                    report.file_backlog or "-",
                    ", ".join(report.leases) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )
