"""A peer that both sends and receives (role "user") has one balance with us: its calls
are charged to it, the calls it terminates for us are credited to it, and its invoice nets
the two.

The world (tests/switching.py): Acme buys from Retail (49 Germany 0.0200, 44 United
Kingdom 0.0150, per second). Echo, a mutual peer, also buys from Retail and sells us
Germany at 0.0090 and the UK at 0.0060.
"""

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry
from apps.billing.services import rating, rerating
from apps.invoicing.models import InvoiceLine
from apps.invoicing.services import invoices
from apps.peers.models import Peer
from apps.rates.models import Rate
from tests.billing.test_rating import cdr
from tests.billing.test_rerating import correct_price
from tests.factories import make_peer
from tests.switching import BERLIN, SYSTEM, UK, price_list, rate

TERMINATED = LedgerEntry.Kind.TERMINATED


@pytest.fixture
def echo(world) -> Peer:
    buy = price_list("Echo buy", [rate("49", "0.0090", "Germany"), rate("44", "0.0060")], purpose="buy")
    return make_peer(
        "Echo", role=Peer.Role.USER, sell_rate_table_id=world.sell_table.pk, buy_rate_table_id=buy.pk
    )


def entries(peer):
    return list(
        LedgerEntry.objects.filter(account__peer=peer)
        .order_by("pk")
        .values_list("kind", "amount", "description")
    )


def test_a_call_a_mutual_peer_terminates_is_credited_to_it(world, echo):
    cdr(world, seconds=60, callee=BERLIN, supplier=echo)

    rating.rate_batch()

    assert entries(echo) == [(TERMINATED, Decimal("0.009"), "Call terminated to Germany")]
    assert Account.objects.get(peer=echo).balance == Decimal("0.009")
    charged = LedgerEntry.objects.get(account__peer=world.customer, kind=LedgerEntry.Kind.CHARGE)
    assert charged.amount == Decimal("-0.02")


def test_its_own_calls_are_charged_to_the_same_balance(world, echo):
    cdr(world, seconds=60, callee=BERLIN, supplier=echo)  # Acme -> Echo: Echo earns 0.009
    cdr(world, seconds=30, callee=UK, customer=echo, supplier="Alpha")  # Echo calls: 0.0075

    rating.rate_batch()

    assert sorted(amount for _, amount, _ in entries(echo)) == [Decimal("-0.0075"), Decimal("0.009")]
    assert Account.objects.get(peer=echo).balance == Decimal("0.0015")


def test_a_pure_supplier_is_still_debited_what_we_buy_from_it(world):
    cdr(world, seconds=60, callee=BERLIN, supplier="Bravo")
    rating.rate_batch()
    assert entries(world.suppliers["Bravo"]) == [
        (LedgerEntry.Kind.CHARGE, Decimal("-0.008"), "Traffic bought")
    ]


def test_the_invoice_nets_what_it_called_and_what_it_terminated(world, echo):
    Rate.objects.update(effective_from=F("effective_from") - timedelta(days=2))  # in force yesterday noon
    world.snapshot()
    yesterday = timezone.localdate() - timedelta(days=1)
    at = timezone.make_aware(datetime.combine(yesterday, time(12)))
    for _ in range(2):
        cdr(
            world,
            seconds=60,
            callee=BERLIN,
            supplier=echo,
            created_at=at,
            answered_at=at,
            destination="Germany",
        )
    cdr(
        world, seconds=60, callee=UK, customer=echo, supplier="Alpha", created_at=at, answered_at=at,
        destination="United Kingdom",
    )  # fmt: skip
    rating.rate_batch()
    Account.objects.filter(peer=echo).update(tax_rate=Decimal("20"))

    invoice = invoices.create_invoice(
        Account.objects.get(peer=echo), actor=SYSTEM, period_start=yesterday, period_end=yesterday
    )

    assert (invoice.charges, invoice.terminated) == (Decimal("-0.015"), Decimal("0.018"))
    # Tax is on what it bought from us only; what we owe it for terminating nets the balance.
    assert (invoice.net, invoice.tax) == (Decimal("0.015"), Decimal("0.00"))
    assert invoice.closing_balance == Decimal("0.003")
    assert invoice.amount_due == 0
    lines = {
        (line.kind, line.description): (line.calls, line.seconds, line.amount) for line in invoice.lines.all()
    }
    assert lines[InvoiceLine.Kind.TERMINATED, "Germany"] == (2, 120, Decimal("0.018"))
    assert lines[InvoiceLine.Kind.CALLS, "United Kingdom"] == (1, 60, Decimal("-0.015"))


def test_re_rating_a_mutual_peers_buy_price_moves_its_credit(world, echo):
    cdr(world, seconds=60, callee=BERLIN, supplier=echo)
    rating.rate_batch()
    correct_price(world, echo.buy_rate_table, "49", "0.0120")
    now = timezone.now()

    rerating.run(
        rerating.request_rerate(actor=SYSTEM, period_start=now - timedelta(days=1), period_end=now).pk
    )

    # Dearer to buy from Echo: it earned 0.003 more.
    adjustment = LedgerEntry.objects.get(account__peer=echo, kind=LedgerEntry.Kind.ADJUSTMENT)
    assert adjustment.amount == Decimal("0.003")
    assert Account.objects.get(peer=echo).balance == Decimal("0.012")
