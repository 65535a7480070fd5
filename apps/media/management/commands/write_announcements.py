"""Write this node's announcement files from the database (before FreeSWITCH starts, and by hand)."""

from pathlib import Path

from django.core.management.base import BaseCommand

from apps.media.announcements import write_announcements


class Command(BaseCommand):
    help = "Make the announcements directory hold exactly the announcements of the database."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dir", type=Path, default=None, help="Directory to write into (default: ANNOUNCEMENTS_DIR)."
        )

    def handle(self, *args, **options):
        result = write_announcements(options["dir"])
        self.stdout.write(
            f"{len(result.written)} written, {len(result.removed)} removed, {result.kept} already there"
        )
