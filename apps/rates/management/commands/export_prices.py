"""python manage.py export_prices <table> [--at ISO] [--format csv|xlsx] [--output FILE]"""

import csv

from django.core.management.base import BaseCommand
from django.utils import timezone

from apps.rates.importing.parsing import CANONICAL
from apps.rates.management.commands.import_prices import find_table, parse_moment
from apps.rates.models import Rate


def export_rows(table, moment):
    """Canonical rows of the prices in force at `moment` (the import's own column order)."""
    rates = (
        Rate.objects.live()
        .filter(table=table)
        .effective_at(moment)
        .order_by("prefix", "effective_from")
        .values_list(
            "prefix",
            "destination",
            "price",
            "connection_fee",
            "min_seconds",
            "increment_seconds",
            "free_seconds",
            "effective_from",
            "effective_to",
        )
    )
    for row in rates.iterator(chunk_size=10_000):
        *head, start, end = row
        yield [*head, start.isoformat(), end.isoformat() if end else ""]


class Command(BaseCommand):
    help = "Write the prices of a rate table in force at a moment, in the import's canonical columns."

    def add_arguments(self, parser):
        parser.add_argument("table", help="rate table name or id")
        parser.add_argument("--at", help="ISO 8601 moment (default: now)")
        parser.add_argument("--format", choices=["csv", "xlsx"], default="csv")
        parser.add_argument("--output", help="file to write (default: standard output; required for xlsx)")

    def handle(self, *args, **options):
        table = find_table(options["table"])
        moment = parse_moment(options["at"]) or timezone.now()
        rows = export_rows(table, moment)
        if options["format"] == "xlsx":
            import openpyxl

            book = openpyxl.Workbook(write_only=True)
            sheet = book.create_sheet(table.name[:31])
            sheet.append(list(CANONICAL))
            for row in rows:
                sheet.append(row)
            book.save(options["output"] or f"{table.name}.xlsx")
            return
        handle = open(options["output"], "w", newline="") if options["output"] else self.stdout  # noqa: SIM115
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CANONICAL)
        writer.writerows(rows)
        if handle is not self.stdout:
            handle.close()
