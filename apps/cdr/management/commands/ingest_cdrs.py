"""Import OpenSIPS's acc and missed_calls rows as CDRs, once each."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.cdr import ingest


class Command(BaseCommand):
    help = (
        "Turn OpenSIPS's acc rows into customer CDRs (rated by the billing loop) and missed_calls "
        "rows into supplier attempts; rows that cannot be mapped become CDRs with a rating error."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--all-nodes",
            action="store_true",
            help=f"Import every node's rows, not only this node's ({settings.NODE_NAME}) and dead nodes'.",
        )
        parser.add_argument("--batch", type=int, default=ingest.BATCH_SIZE, help="Rows per transaction.")

    def handle(self, *args, all_nodes=False, batch=ingest.BATCH_SIZE, **options):
        if batch < 1:
            self.stderr.write("--batch must be at least 1.")
            raise SystemExit(2)
        try:
            result = ingest.ingest_all(node=None if all_nodes else settings.NODE_NAME, limit=batch)
        except ingest.IngestStalled as exc:
            raise CommandError(
                f"Import stopped: {exc}. Run the command again; no row is imported twice."
            ) from None
        self.stdout.write(
            f"Imported {result.calls} calls and {result.attempts} attempts "
            f"({result.errors} with errors, {result.replayed} already imported, "
            f"{result.unrouted} rejections without a supplier)."
        )
