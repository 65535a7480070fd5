"""Beat this node's heartbeat: once, or in a loop (when the workers do not, or to test)."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.cluster.presence import beat


class Command(BaseCommand):
    help = (
        "Record this node's heartbeat, its Galera state and keep its leases, every "
        "CLUSTER_HEARTBEAT_SECONDS until SIGTERM (or once with --once). The qcluster workers "
        "do this themselves unless CLUSTER_HEARTBEAT_IN_WORKERS=false."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Beat once and exit.")
        parser.add_argument("--node", default=None, help="Node name (default: NODE_NAME).")

    def handle(self, *args, **options):
        name = options["node"] or settings.NODE_NAME
        stop = threading.Event()
        if not options["once"]:
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
        while True:
            try:
                result = beat(name)
            except Exception as exc:  # the database is down or not synced: say so, beat again
                if options["once"]:
                    raise CommandError(f"heartbeat of {name} failed: {exc}") from exc
                self.stderr.write(f"{name}: heartbeat failed: {exc}")
                if stop.wait(settings.CLUSTER_HEARTBEAT_SECONDS):
                    return
                continue
            if not result.known:
                raise CommandError(f"No node named {name!r}: add it first, or set NODE_NAME.")
            self.stdout.write(
                f"{name}: {result.galera.summary()}; leases: {', '.join(result.leases) or 'none'}"
            )
            if options["once"] or stop.wait(settings.CLUSTER_HEARTBEAT_SECONDS):
                return
