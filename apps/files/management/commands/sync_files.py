"""Show the file-sync backlog, catch a node up, or do this node's owed pushes now."""

from django.core.management.base import BaseCommand, CommandError

from apps.files import services, tasks
from apps.nodes.models import Node


class Command(BaseCommand):
    help = (
        "Without options: the backlog per node. --reconcile NODE: queue every copy to or from "
        "NODE that is not where it should be (--verify: also re-check its present copies). "
        "--now: push and delete, in this process, everything this node's files still owe."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reconcile", metavar="NODE", help="Node that was away.")
        parser.add_argument(
            "--verify", action="store_true", help="With --reconcile: re-verify present copies."
        )
        parser.add_argument("--now", action="store_true", help="Run this node's owed pushes here, now.")
        parser.add_argument("--origin", help="With --now: the origin node (default NODE_NAME).")
        parser.add_argument("--target", help="With --now: only copies to this node.")

    def handle(self, *args, reconcile, verify, now, origin, target, **options):
        if reconcile:
            node = Node.objects.filter(name=reconcile).first()
            if node is None:
                raise CommandError(f"--reconcile: no node named {reconcile!r}.")
            counts = services.reconcile(node, verify=verify)
            self.stdout.write(", ".join(f"{key} {value}" for key, value in counts.items()))
        if now:
            try:
                results = tasks.sync_now(origin, target=target)
            except Node.DoesNotExist:
                raise CommandError(f"--origin: no node named {origin!r}.") from None
            for (file_id, node_name), result in results.items():
                self.stdout.write(f"file {file_id} -> {node_name}: {result}")
        failed = 0
        for name, counts in services.backlog_by_node().items():
            failed += counts["failed"]
            self.stdout.write(
                f"{name}: present {counts['present']}, pending {counts['pending']}, "
                f"failed {counts['failed']}, deleting {counts['deleting']}"
                + (f" — last error: {counts['last_error']}" if counts["last_error"] else "")
            )
        if failed and now:
            raise CommandError(f"{failed} copies failed.")
