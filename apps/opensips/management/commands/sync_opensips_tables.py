"""Rewrite OpenSIPS's provisioned tables from our models, or report drift with --check."""

from functools import partial

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.core.db import retry_on_conflict
from apps.nodes.models import Node
from apps.opensips import dialogs, provisioning


class Command(BaseCommand):
    help = (
        "Bring address, subscriber, dr_gateways and registrant in step with peers, endpoints, SIP "
        "accounts, gateways and registrations, make every node's dialog table, then ask every node "
        "to reload. With --check, "
        "change nothing and exit 1 when a table differs from what our models say."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Report drift only; exit 1 on drift.")
        parser.add_argument(
            "--table",
            action="append",
            choices=provisioning.ALL_TABLES,
            help="Only this table (repeatable); all by default.",
        )

    def handle(self, *args, check=False, table=None, **options):
        tables = table or provisioning.ALL_TABLES
        if check:
            results = provisioning.check_tables(tables)
        else:
            for node_id in Node.objects.values_list("pk", flat=True):
                # Data definition, which would commit a caller's transaction: after it, if any.
                transaction.on_commit(partial(dialogs.ensure_table, node_id))
            results = retry_on_conflict(provisioning.sync_tables)(tables)
        for result in results:
            self.stdout.write(str(result))
            for reason in result.refused:
                self.stderr.write(f"  not written: {reason}")
        drift = [r.table for r in results if r.changed]
        if check and drift:
            raise CommandError(f"OpenSIPS tables differ from the models: {', '.join(drift)}.", returncode=1)
        if not check:
            self.stdout.write(self.style.SUCCESS("OpenSIPS tables are in step with the models."))
