"""DIDs on the cast: one on each reseller's customer, ringing its SIP account, and one in stock.

Dates are the services' own (timezone.localdate()): expected fee days are computed from
the same clock, so the tests pass on any day of any month.
"""

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.core import changes
from apps.dids import services
from apps.dids.models import Did
from apps.peers import services as peer_services
from apps.peers.models import Peer, SipAccount
from apps.tenancy.scope import Scope
from tests.conftest import Cast
from tests.factories import make_peer

SYSTEM = Scope.system()
SIP_PASSWORD = "sip-Pass-2024"


def make_did(number: str, *, customer: Peer | None = None, targets=(), **settings) -> Did:
    """A DID made by the operator through the service, as the admin or the API would."""
    return services.create_did(actor=SYSTEM, number=number, customer=customer, targets=targets, **settings)


def add_sip_account(peer: Peer, username: str) -> SipAccount:
    return peer_services.add_sip_account(
        peer, actor=SYSTEM, username=username, domain="sip.example.net", password=SIP_PASSWORD
    )


def today() -> date:
    return timezone.localdate()


def end_of_month(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass
class Numbers:
    a: Did  # on reseller A's customer, ringing its office phone
    b: Did  # on reseller B's customer
    stock: Did  # a block of a hundred, in stock
    sip_a: SipAccount
    sip_b: SipAccount


@pytest.fixture
def numbers(cast: Cast) -> Numbers:
    sip_a = add_sip_account(cast.a.customer, "a-office")
    sip_b = add_sip_account(cast.b.customer, "b-office")
    prices = {
        "supplier_id": cast.supplier.pk,
        "buy_monthly": Decimal("1.00"),
        "buy_per_minute": Decimal("0.002"),
        "sell_monthly": Decimal("5.00"),
        "sell_per_minute": Decimal("0.01"),
    }
    return Numbers(
        a=make_did("442079460001", customer=cast.a.customer, targets=[(sip_a, 20)], **prices),
        b=make_did("442079460002", customer=cast.b.customer, targets=[(sip_b, None)], **prices),
        stock=make_did("442079460100", last_number="442079460199", **prices),
        sip_a=sip_a,
        sip_b=sip_b,
    )


@pytest.fixture
def second_customer_a(cast: Cast) -> Peer:
    """Another customer of reseller A, with a SIP account."""
    peer = make_peer("Customer A2", reseller=cast.a.reseller, sell_rate_table_id=cast.a.sell_table.pk)
    add_sip_account(peer, "a2-desk")
    return peer


ANNOUNCED: list = []


def record(batch) -> None:
    """An after-commit consumer for these tests: keeps every change it is given."""
    ANNOUNCED.extend(batch)


@pytest.fixture
def announced(monkeypatch, django_capture_on_commit_callbacks):
    """`with announced() as seen:` the changes announced by what runs inside, once committed."""
    from contextlib import contextmanager

    monkeypatch.setattr(changes, "AFTER_COMMIT", (*changes.AFTER_COMMIT, f"{__name__}.record"))

    @contextmanager
    def capture():
        ANNOUNCED.clear()
        seen: dict[str, set] = {}
        with django_capture_on_commit_callbacks(execute=True):
            yield seen
        for change in ANNOUNCED:
            seen.setdefault(change.kind, set()).update(change.ids)
        ANNOUNCED.clear()

    return capture
