"""python manage.py generate_sell_prices <sell table> --supplier NAME [...] --rule cheapest ..."""

from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import DomainError
from apps.peers.models import Peer
from apps.rates.generation import Rule
from apps.rates.management.commands.import_prices import find_table, parse_moment
from apps.rates.services.selling import generate_sell_table
from apps.tenancy.scope import Scope


def amount(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{text!r} is not a decimal number") from None


class Command(BaseCommand):
    help = "Price a sell table from suppliers' buy prices with a margin; prints the import report."

    def add_arguments(self, parser):
        parser.add_argument("table", help="sell rate table name or id")
        parser.add_argument("--supplier", action="append", required=True, help="supplier peer name (repeat)")
        parser.add_argument("--rule", choices=[rule.value for rule in Rule], default=Rule.CHEAPEST.value)
        parser.add_argument("--named", help="with --rule named_supplier: the supplier to price from")
        parser.add_argument("--n-cheapest", type=int, default=3)
        parser.add_argument("--margin-percent", type=amount)
        parser.add_argument("--margin-absolute", type=amount)
        parser.add_argument("--minimum-margin", type=amount)
        parser.add_argument("--rounding", type=int, default=4, help="decimals of the sell price (rounded up)")
        parser.add_argument("--mode", choices=["full", "changes"], default="full")
        parser.add_argument("--effective-from", help="ISO 8601; default now")
        parser.add_argument("--dry-run", action="store_true", help="stop after the preview")

    def handle(self, *args, **options):
        table = find_table(options["table"])
        peers = {peer.name: peer for peer in Peer.objects.suppliers().filter(name__in=options["supplier"])}
        unknown = sorted(set(options["supplier"]) - set(peers))
        if unknown:
            raise CommandError(f"no supplier named {', '.join(unknown)}")
        named = peers.get(options["named"]) if options["named"] else None
        try:
            result = generate_sell_table(
                table,
                actor=Scope.system(),
                suppliers=list(peers.values()),
                rule=options["rule"],
                margin_percent=options["margin_percent"],
                margin_absolute=options["margin_absolute"],
                minimum_margin=options["minimum_margin"],
                n_cheapest=options["n_cheapest"],
                supplier=named,
                rounding=options["rounding"],
                mode=options["mode"],
                effective_from=parse_moment(options["effective_from"]),
                dry_run=options["dry_run"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"{len(result.generation.rows)} prices generated, {len(result.generation.skipped)} skipped"
        )
        for skipped in result.generation.skipped[:20]:
            self.stdout.write(f"  skipped {skipped.prefix}: {skipped.reason}")
        self.stdout.write("\n".join(result.report.lines()))
        if not result.report.ok:
            raise CommandError("the generated prices were not imported")
