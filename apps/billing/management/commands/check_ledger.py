from django.core.management.base import BaseCommand, CommandError

from apps.billing.services import ledger_differences


class Command(BaseCommand):
    help = "Verify that every account's cached balance equals the sum of its ledger; exit 1 if not."

    def handle(self, *args, **options):
        differences = ledger_differences()
        for account, balance, total in differences:
            self.stderr.write(
                f"account {account.pk} ({account.peer}): balance {balance} != ledger {total} "
                f"(off by {balance - total})"
            )
        if differences:
            raise CommandError(f"{len(differences)} account(s) disagree with their ledger.")
        self.stdout.write(self.style.SUCCESS("Every balance equals the sum of its ledger."))
