from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.billing.services import rating
from apps.cdr.models import Cdr
from apps.nodes.models import Node
from apps.peers.models import Peer


def moment(value: str) -> datetime:
    parsed = parse_datetime(value) or (parse_datetime(value + "T00:00:00") if len(value) == 10 else None)
    if parsed is None:
        raise CommandError(f"--since {value!r} is not an ISO date or time such as 2026-11-01T00:00:00Z.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Rate the CDRs waiting to be rated (the workers do it continuously; this is for a backlog, "
        "or after fixing a price list with --retry-errors). Safe to run beside the workers."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="Only calls set up at or after this ISO date/time.")
        parser.add_argument("--peer", help="Only this customer's calls (name or id).")
        parser.add_argument(
            "--retry-errors", action="store_true", help="Put the calls that could not be rated back first."
        )
        parser.add_argument("--batch", type=int, default=rating.BATCH_SIZE, help="CDRs per transaction.")

    def handle(self, *args, since=None, peer=None, retry_errors=False, batch=rating.BATCH_SIZE, **options):
        if batch < 1:
            raise CommandError("--batch is at least 1.")
        calls = Cdr.objects.all()
        if since:
            calls = calls.filter(created_at__gte=moment(since))
        if peer:
            found = Peer.objects.filter(pk=int(peer)) if peer.isdigit() else Peer.objects.filter(name=peer)
            if found.count() != 1:
                raise CommandError(f"No single peer named or numbered {peer!r}.")
            calls = calls.filter(customer=found.get())
        if retry_errors:
            self.stdout.write(f"{rating.requeue_errors(queryset=calls)} call(s) put back to be rated.")
        # This node's calls first, as its worker does (raters on several nodes then start on
        # different rows), then whatever is left.
        node_id = Node.objects.filter(name=settings.NODE_NAME).values_list("pk", flat=True).first()
        try:
            result = rating.rate_all(queryset=calls, limit=batch, node_id=node_id)
            if node_id is not None:
                result.add(rating.rate_all(queryset=calls, limit=batch))
        except rating.RatingStalled as exc:
            raise CommandError(
                f"Rating stopped: {exc}. Run the command again; nothing was charged twice."
            ) from None
        self.stdout.write(
            f"{result.rated} rated, {result.errors} cannot be rated; "
            f"{result.charges} charge(s) posted, {result.released} reservation(s) released."
        )
        if result.errors:
            self.stderr.write(
                f"{result.errors} call(s) cannot be rated: see Rating errors in the admin "
                "(the reason is kept on each CDR), fix the price list, then run with --retry-errors."
            )
