"""`manage.py loaddemo`: fill the database with a demo carrier, idempotently."""

import time

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.core.demo import API_KEY_NAME, DEFAULT_CDRS, DEMO_PASSWORD, DemoLoader, Report
from apps.core.errors import DomainError

BASE_URL = "http://127.0.0.1:8000"
NEW_KEY_HINT = (
    'python manage.py shell -c "from apps.tenancy.services import create_api_key; '
    "from apps.tenancy.scope import Scope; "
    "print(create_api_key(actor=Scope.system(), name='ops', scope='operator')[1])\""
)


class Command(BaseCommand):
    help = (
        "Load demo data: an operator, two resellers with customers, three suppliers, price lists "
        "of real destinations, routing plans, two DIDs, three nodes, payments and a month of rated "
        "calls. Safe to run again: what exists is left as it is."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help=f"Password of the demo logins and SIP accounts it creates (default: {DEMO_PASSWORD}).",
        )
        parser.add_argument(
            "--cdrs",
            type=int,
            default=DEFAULT_CDRS,
            help=f"How many call records to make over the last 30 days (default: {DEFAULT_CDRS}); "
            "skipped when demo calls exist.",
        )

    def handle(self, *args, password: str, cdrs: int, **options):
        if cdrs < 0:
            raise CommandError("--cdrs cannot be negative.")
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError(f"--password: {' '.join(exc.messages)}") from None
        started = time.perf_counter()
        try:
            # One transaction: a failure half-way leaves nothing behind, so a rerun starts clean.
            with transaction.atomic():
                report = DemoLoader(password=password, cdrs=cdrs).run()
        except (DomainError, ValidationError) as exc:
            message = getattr(exc, "message", None) or "; ".join(getattr(exc, "messages", [str(exc)]))
            raise CommandError(f"Demo data not loaded: {message}") from None
        self._print(report, password, time.perf_counter() - started)

    def _print(self, report: Report, password: str, elapsed: float) -> None:
        out = self.stdout.write
        out(self.style.MIGRATE_HEADING("Demo data"))
        for kind, (created, existing) in report.counts.items():
            parts = [f"{created} created"] if created else []
            if existing:
                parts.append(f"{existing} already there")
            out(f"  {kind:<16} {', '.join(parts) or 'none'}")
        out("  " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in report.timings))
        out(self.style.SUCCESS(f"Done in {elapsed:.1f}s."))

        out(self.style.MIGRATE_HEADING(f"Logins (password: {password})"))
        for login in report.logins:
            kept = "" if login.created else "  (existed before this run; password unchanged)"
            out(f"  {login.username:<12} {login.role:<32} {BASE_URL}{login.path}{kept}")
        out(f"  Admin {BASE_URL}/admin/  Portal {BASE_URL}/portal/  API {BASE_URL}/api/v1/schema/ui/")

        out(self.style.MIGRATE_HEADING("API"))
        if report.api_token:
            out(f"  Operator API key (shown once, keep it): {report.api_token}")
            out(f'  Try: curl -H "Authorization: Bearer {report.api_token}" {BASE_URL}/api/v1/')
        elif report.api_key:
            out(
                f"  The operator key {API_KEY_NAME!r} ({report.api_key.lookup}...) exists; its token was "
                "shown when it was made and is not stored."
            )
            out(f"  Issue another one in the admin ({BASE_URL}/admin/) or with:\n    {NEW_KEY_HINT}")
