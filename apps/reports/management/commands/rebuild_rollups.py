from datetime import date

from django.core.management.base import BaseCommand, CommandError

from apps.reports import rollups


class Command(BaseCommand):
    help = (
        "Recompute the reports' traffic rollups from the rated CDRs, one transaction per day "
        "(idempotent): fills the rollups of calls rated before they existed, or repairs them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", help="First day to rebuild (YYYY-MM-DD, TIME_ZONE); default the first CDR's."
        )
        parser.add_argument("--until", help="Last day to rebuild (YYYY-MM-DD); default today.")

    def handle(self, *args, since=None, until=None, verbosity=1, **options):
        try:
            first = date.fromisoformat(since) if since else None
            last = date.fromisoformat(until) if until else None
        except ValueError as exc:
            raise CommandError(f"Use YYYY-MM-DD dates: {exc}") from None
        if first and last and last < first:
            raise CommandError("--until is before --since.")

        def progress(day, count):
            if verbosity > 1:
                self.stdout.write(f"{day}: {count} rows")

        written = rollups.rebuild(first, last, progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Rebuilt the rollups: {written} rows written."))
