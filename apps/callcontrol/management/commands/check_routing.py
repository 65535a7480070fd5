"""manage.py check_routing --peer P --callee N [--caller C] [--node X] [--at ISO]"""

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.callcontrol.checking import CheckInput, candidate_rows, check_routing, report_lines
from apps.core.errors import DomainError
from apps.nodes.models import Node
from apps.peers.models import Peer


class Command(BaseCommand):
    help = "Run call control's decision for a call without reserving money, and explain every step."

    def add_arguments(self, parser):
        parser.add_argument("--peer", help="Customer peer: id or name.")
        parser.add_argument("--source-ip", help="Identify the customer by source address instead.")
        parser.add_argument("--auth-user", help="Identify the customer by SIP user (user or user@domain).")
        parser.add_argument("--callee", required=True, help="The number dialled, as the customer sends it.")
        parser.add_argument("--caller", default="")
        parser.add_argument("--node", help="Node name (default: the first enabled node).")
        parser.add_argument("--at", help="ISO time of the call (default: now); prices in force then.")
        parser.add_argument("--call-id", default="check-routing", help="Seeds the percentage split.")
        parser.add_argument(
            "--json", action="store_true", help="Print the answer OpenSIPS would get, as JSON."
        )

    def handle(self, *args, **options):
        inputs = CheckInput(
            callee=options["callee"],
            caller=options["caller"],
            peer=_peer(options["peer"]) if options["peer"] else None,
            source_ip=options["source_ip"],
            auth_user=options["auth_user"],
            node=_node(options["node"]) if options["node"] else None,
            at=_moment(options["at"]) if options["at"] else None,
            call_id=options["call_id"],
        )
        try:
            decision = check_routing(inputs)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            answer = decision.as_response()
            answer["steps"] = [{"step": s.name, "ok": s.ok, "detail": s.detail} for s in decision.steps]
            answer["candidates"] = candidate_rows(decision)
            self.stdout.write(json.dumps(answer, indent=2))
        else:
            self.stdout.write("\n".join(report_lines(decision)))


def _peer(value: str) -> Peer:
    customers = Peer.objects.customers()
    if value.isdigit():
        try:
            return customers.get(pk=int(value))
        except Peer.DoesNotExist:
            raise CommandError(f"No customer peer #{value}.") from None
    matches = list(customers.filter(name__iexact=value).select_related("reseller"))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CommandError(f"No customer peer named {value!r}.")
    owners = ", ".join(f"#{p.pk} ({p.reseller or 'operator'})" for p in matches)
    raise CommandError(f"Several customers are named {value!r}: {owners}; give the id.")


def _node(name: str) -> Node:
    try:
        return Node.objects.get(name=name)
    except Node.DoesNotExist:
        raise CommandError(f"No node named {name!r}.") from None


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--at {value!r} is not an ISO date and time.") from None
    return timezone.make_aware(moment, timezone.utc) if timezone.is_naive(moment) else moment
