from django.core.management.base import BaseCommand, CommandError

from apps.billing.services.ledger import balances_out_of_range, ledger_differences
from apps.core.money import MAX_BALANCE, balance_in_range, shown


class Command(BaseCommand):
    help = (
        "Verify that every account's cached balance equals the sum of its ledger and lies within "
        "the product's bounds; exit 1 if not."
    )

    def handle(self, *args, **options):
        # Both reads tolerate any stored number: this command is how a bad one is found.
        differences = ledger_differences()
        for account, balance, total in differences:
            flag = "" if balance_in_range(balance) else " (balance out of range)"
            self.stderr.write(
                f"account {account.pk} ({account}): balance {shown(balance)} != ledger {total} "
                f"(off by {shown(balance - total)}){flag}"
            )
        beyond = balances_out_of_range()
        for account in beyond:
            self.stderr.write(
                f"account {account.pk} ({account}): balance {shown(account.balance)} is out of range "
                f"(beyond +-{MAX_BALANCE:,.0f}); bring it back with an operator's adjustment"
            )
        problems = []
        if differences:
            problems.append(f"{len(differences)} account(s) disagree with their ledger")
        if beyond:
            problems.append(f"{len(beyond)} balance(s) are out of range")
        if problems:
            raise CommandError("; ".join(problems) + ".")
        self.stdout.write(self.style.SUCCESS("Every balance equals the sum of its ledger."))
