"""factory_boy factories that build objects through the services, as production does."""

import ipaddress
from decimal import Decimal

import factory
from django.utils import timezone

from apps.cdr.models import Cdr
from apps.nodes.models import Node
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.rates import services as rate_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.scope import Scope

SYSTEM = Scope.system()


def make_reseller(name: str, currency: str = "USD"):
    return tenancy_services.create_reseller(actor=SYSTEM, name=name, currency=currency, company=f"{name} Ltd")


def make_rate_table(name: str, *, purpose: str = "sell", reseller=None, currency: str = "USD"):
    return rate_services.create_rate_table(
        actor=SYSTEM,
        name=name,
        purpose=purpose,
        currency=currency,
        reseller_id=reseller.pk if reseller else None,
    )


def make_peer(name: str, *, role: str = Peer.Role.CUSTOMER, reseller=None, **kwargs) -> Peer:
    return peer_services.create_peer(
        actor=SYSTEM, name=name, role=role, reseller_id=reseller.pk if reseller else None, **kwargs
    )


class NodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Node
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"node{n + 1}")
    # Counted as integers so that a long test run never walks off the end of an octet.
    management_address = factory.Sequence(lambda n: str(ipaddress.IPv4Address("10.0.0.1") + n))
    sip_address = factory.Sequence(lambda n: str(ipaddress.IPv4Address("100.64.0.1") + n))


class CdrFactory(factory.django.DjangoModelFactory):
    """A rated, answered call of one minute (CDR rows are written by OpenSIPS, not services)."""

    class Meta:
        model = Cdr

    call_id = factory.Sequence(lambda n: f"call-{n}@test")
    caller = "441234567890"
    callee = "33612345678"
    created_at = factory.LazyFunction(timezone.now)
    answered_at = factory.LazyAttribute(lambda o: o.created_at)
    ended_at = factory.LazyAttribute(lambda o: o.created_at + timezone.timedelta(seconds=60))
    duration_ms = 60_000
    billable_seconds = 60
    sip_code = 200
    sip_reason = "OK"
    sell_cost = Decimal("0.012000")
    buy_cost = Decimal("0.008000")
    rating_state = Cdr.RatingState.RATED
