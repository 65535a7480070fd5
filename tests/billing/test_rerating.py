"""Re-rating after a corrected price list: differences posted as adjustments, once."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry, RerateLine, RerateRun
from apps.billing.services import rating, rerating
from apps.cdr.models import Cdr
from apps.core.errors import DomainError, NotAllowed
from apps.rates import services as rate_services
from apps.tenancy.scope import Kind, Scope
from tests.factories import make_reseller
from tests.switching import BERLIN, MOBILE, SYSTEM, rate

ADJUSTMENT = LedgerEntry.Kind.ADJUSTMENT


def rated_calls(world, count: int, *, callee=BERLIN, supplier="Bravo", seconds=60, customer=None):
    start = timezone.now() - timedelta(hours=2)
    for i in range(count):
        Cdr.objects.create(
            call_id=f"c{Cdr.objects.count()}@test",
            node=world.node,
            customer=customer or world.customer,
            supplier=world.suppliers[supplier],
            callee=callee,
            created_at=start + timedelta(seconds=i),
            answered_at=start + timedelta(seconds=i),
            ended_at=start + timedelta(seconds=i + seconds),
            duration_ms=seconds * 1000,
            sip_code=200,
        )
    rating.rate_all()
    return Cdr.objects.order_by("pk")


def correct_price(world, table, prefix: str, price: str) -> None:
    """A corrected price valid since yesterday (the import path ends the old row)."""
    rate_services.add_rates(table, [rate(prefix, price, "Corrected")], actor=SYSTEM)
    world.snapshot()


def period():
    now = timezone.now()
    return {"period_start": now - timedelta(days=1), "period_end": now}


def test_a_corrected_sell_price_is_posted_as_one_adjustment_per_account(world):
    calls = rated_calls(world, 5)  # 5 one-minute calls to Germany at 0.02
    correct_price(world, world.sell_table, "49", "0.0300")
    before = Account.objects.get(peer=world.customer).balance

    run = rerating.request_rerate(actor=SYSTEM, peer=world.customer, **period())
    run = rerating.run(run.pk)

    assert (run.state, run.examined, run.changed) == (RerateRun.State.DONE, 5, 5)
    assert {c.sell_cost for c in calls.all()} == {Decimal("0.030000")}
    assert {c.buy_cost for c in calls.all()} == {Decimal("0.008000")}  # supplier side untouched
    assert {c.supplier_billable_seconds for c in calls.all()} == {60}
    [adjustment] = LedgerEntry.objects.filter(kind=ADJUSTMENT)
    assert adjustment.amount == Decimal("-0.050000")
    assert adjustment.reference.startswith(f"rerate:{run.pk}:")
    # The first charges stay on the ledger as they were.
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE, account__peer=world.customer).count() == 5
    assert Account.objects.get(peer=world.customer).balance == before - Decimal("0.05")
    [line] = RerateLine.objects.filter(run=run)
    assert (line.calls, line.before, line.after, line.difference) == (
        5,
        Decimal("0.100000"),
        Decimal("0.150000"),
        Decimal("0.050000"),
    )
    assert billing.ledger_differences() == []


def test_running_a_run_again_posts_nothing_more(world):
    rated_calls(world, 3)
    correct_price(world, world.sell_table, "49", "0.0100")
    run = rerating.request_rerate(actor=SYSTEM, **period())

    rerating.run(run.pk)
    RerateRun.objects.filter(pk=run.pk).update(state=RerateRun.State.RUNNING)  # as if it died at the end
    rerating.run(run.pk)
    second = rerating.request_rerate(actor=SYSTEM, **period())
    second = rerating.run(second.pk)

    assert LedgerEntry.objects.filter(kind=ADJUSTMENT).count() == 1
    assert LedgerEntry.objects.get(kind=ADJUSTMENT).amount == Decimal("0.030000")  # a refund of 3 * 0.01
    assert (second.examined, second.changed) == (3, 0)


def test_a_supplier_table_rerate_changes_only_the_buy_side(world):
    rated_calls(world, 2, supplier="Bravo")
    rated_calls(world, 2, supplier="Alpha")
    bravo = world.suppliers["Bravo"]
    correct_price(world, bravo.buy_rate_table, "49", "0.0100")

    run = rerating.run(rerating.request_rerate(actor=SYSTEM, table=bravo.buy_rate_table, **period()).pk)

    assert (run.examined, run.changed) == (2, 2)
    [adjustment] = LedgerEntry.objects.filter(kind=ADJUSTMENT)
    assert adjustment.account.peer == bravo
    assert adjustment.amount == Decimal("-0.004000")  # we owe Bravo 2 * (0.010 - 0.008) more
    assert set(Cdr.objects.filter(supplier=bravo).values_list("buy_cost", flat=True)) == {Decimal("0.010000")}
    assert set(Cdr.objects.values_list("sell_cost", flat=True)) == {Decimal("0.020000")}


def test_batches_are_applied_whole_and_the_run_resumes_after_the_last(world):
    rated_calls(world, 7, callee=MOBILE)
    correct_price(world, world.sell_table, "4915", "0.1000")
    run = rerating.request_rerate(actor=SYSTEM, **period())

    run = rerating.run(run.pk, batch_size=3)

    assert (run.examined, run.changed) == (7, 7)
    adjustments = LedgerEntry.objects.filter(kind=ADJUSTMENT, account__peer=world.customer)
    assert adjustments.count() == 3  # one per batch
    assert sum(a.amount for a in adjustments) == Decimal("-0.140000")  # 7 * (0.10 - 0.08)
    assert run.last_cdr_id == Cdr.objects.order_by("pk").last().pk


def test_calls_outside_the_period_or_the_peer_are_not_touched(world):
    other = world.add_customer("Other", "198.51.100.99")
    rated_calls(world, 2)
    rated_calls(world, 2, customer=other)
    correct_price(world, world.sell_table, "49", "0.0300")
    now = timezone.now()

    early = rerating.run(
        rerating.request_rerate(
            actor=SYSTEM, period_start=now - timedelta(days=2), period_end=now - timedelta(days=1)
        ).pk
    )
    mine = rerating.run(rerating.request_rerate(actor=SYSTEM, peer=world.customer, **period()).pk)

    assert early.examined == 0
    assert (mine.examined, mine.changed) == (2, 2)
    assert set(Cdr.objects.filter(customer=other).values_list("sell_cost", flat=True)) == {
        Decimal("0.020000")
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"period_start": timezone.now(), "period_end": timezone.now() - timedelta(hours=1)}, "period_end"),
        ({"period_start": timezone.now(), "period_end": timezone.now() + timedelta(days=3)}, "period_end"),
    ],
)
def test_a_bad_period_is_refused(world, fields, field):
    with pytest.raises(DomainError) as error:
        rerating.request_rerate(actor=SYSTEM, **fields)
    assert error.value.field == field
    assert not RerateRun.objects.exists()


def test_a_reseller_rerates_its_own_peers_only(world):
    mine, theirs = make_reseller("Mine"), make_reseller("Theirs")
    customer = world.add_customer("Reseller's", reseller=mine)
    actor = Scope(Kind.RESELLER, reseller_id=mine.pk, label="mine")

    run = rerating.request_rerate(actor=actor, peer=customer, **period())
    assert run.reseller_id == mine.pk
    assert list(RerateRun.objects.visible_to(actor)) == [run]
    other = Scope(Kind.RESELLER, reseller_id=theirs.pk, label="theirs")
    assert not RerateRun.objects.visible_to(other).exists()
    with pytest.raises(NotAllowed):
        rerating.request_rerate(actor=other, peer=customer, **period())
    with pytest.raises(DomainError):
        rerating.request_rerate(actor=actor, **period())  # the whole switch is the operator's
