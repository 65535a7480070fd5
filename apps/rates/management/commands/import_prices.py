"""python manage.py import_prices <table> <file> [--mode full|changes] [--effective-from ISO] ..."""

from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import DomainError
from apps.rates.models import ImportTemplate, PriceImport, RateTable
from apps.rates.services import activation, imports
from apps.tenancy.scope import Scope


def find_table(name_or_id: str) -> RateTable:
    tables = (
        RateTable.objects.filter(pk=int(name_or_id)) if name_or_id.isdigit() else RateTable.objects.none()
    )
    tables = tables or RateTable.objects.filter(name=name_or_id)
    if len(tables) != 1:
        found = "no" if not tables else "several"
        raise CommandError(f"{found} price list named {name_or_id!r}; give its id instead")
    return tables[0]


def parse_moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--effective-from {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Import a CSV or XLSX price list into a rate table; prints the report, exits 1 on errors."

    def add_arguments(self, parser):
        parser.add_argument("table", help="rate table name or id")
        parser.add_argument("file", type=Path)
        parser.add_argument("--mode", choices=PriceImport.Mode.values, default=PriceImport.Mode.CHANGES)
        parser.add_argument("--effective-from", help="start of rows without a date (default: now)")
        parser.add_argument("--template", help="import template name")
        parser.add_argument("--dry-run", action="store_true", help="validate and preview only")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="import the valid rows, report the rest"
        )
        parser.add_argument("--chunk-size", type=int, default=imports.IMPORT_CHUNK_ROWS)

    def handle(self, *args, **options):
        table = find_table(options["table"])
        template = None
        if options["template"]:
            template = ImportTemplate.objects.filter(name=options["template"]).first()
            if template is None:
                raise CommandError(f"no import template named {options['template']!r}")
        try:
            data = options["file"].read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc.strerror}") from None
        try:
            report = activation.import_price_file(
                table,
                data,
                actor=Scope.system(),
                filename=options["file"].name,
                template=template,
                mode=options["mode"],
                effective_from=parse_moment(options["effective_from"]),
                skip_invalid=options["skip_invalid"],
                dry_run=options["dry_run"],
                chunk_size=options["chunk_size"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        for line in report.lines():
            self.stdout.write(line)
        if not report.ok and not (options["skip_invalid"] and report.rows_valid):
            raise CommandError(f"{report.errors_total} errors: nothing was imported")
