"""Rating: every CDR priced on both sides, charged once, its money released; errors kept.

The world (tests/switching.py): customer Acme buys from the Retail list (49
Germany 0.02/min, per second) and has 10.00 USD; suppliers Alpha..Delta sell to us.
"""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry, Reservation
from apps.billing.services import rating, reservations
from apps.cdr.models import Cdr
from apps.peers.models import Peer
from apps.rates import services as rate_services
from tests.switching import BERLIN, SYSTEM, price_list, rate

UNRATED = Cdr.RatingState.UNRATED


def cdr(
    world, *, seconds: float = 90, callee: str = BERLIN, supplier="Bravo", customer="default", **fields
) -> Cdr:
    """An unrated CDR as OpenSIPS writes it: the call set up a minute ago, `seconds` long."""
    start = timezone.now() - timedelta(minutes=1)
    answered = seconds > 0
    values = {
        "call_id": f"call-{Cdr.objects.count() + 1}@test",
        "node": world.node,
        "customer": world.customer if customer == "default" else customer,
        "supplier": world.suppliers[supplier] if isinstance(supplier, str) else supplier,
        "callee": callee,
        "created_at": start,
        "answered_at": start if answered else None,
        "ended_at": start + timedelta(seconds=seconds),
        "duration_ms": int(seconds * 1000),
        "sip_code": 200 if answered else 486,
        "rating_state": UNRATED,
    }
    values.update(fields)
    return Cdr.objects.create(**values)


def balance(peer: Peer) -> Decimal:
    return Account.objects.get(peer=peer).balance


def entries(peer: Peer):
    return LedgerEntry.objects.filter(account__peer=peer, kind=LedgerEntry.Kind.CHARGE)


def test_a_call_is_priced_on_both_sides_and_charged_once(world):
    call = cdr(world, seconds=90.2)  # 91 billable seconds at 1/1

    result = rating.rate_batch()

    call.refresh_from_db()
    assert (result.rated, result.errors, result.charges) == (1, 0, 2)
    assert call.rating_state == Cdr.RatingState.RATED
    assert call.billable_seconds == call.supplier_billable_seconds == 91
    assert call.sell_cost == Decimal("0.030333")  # 0.02 * 91 / 60
    assert call.buy_cost == Decimal("0.012133")  # Bravo 0.008 * 91 / 60
    assert call.margin == Decimal("0.018200")
    assert balance(world.customer) == Decimal("10.00") - Decimal("0.030333")
    assert balance(world.suppliers["Bravo"]) == Decimal("-0.012133")
    [charge] = entries(world.customer)
    assert (charge.reference, charge.cdr_id, charge.amount) == (
        f"cdr:{call.pk}",
        call.pk,
        Decimal("-0.030333"),
    )
    assert charge.occurred_at == call.created_at

    assert rating.rate_batch().selected == 0
    assert entries(world.customer).count() == 1
    assert billing.ledger_differences() == []


def test_a_second_rater_finds_the_calls_rated_and_charges_nothing(world):
    calls = [cdr(world, seconds=s) for s in (10, 20, 30)]

    first = rating.rate_batch(node_id=world.node.pk)
    second = rating.rate_batch(node_id=world.node2.pk)  # the calls are old enough to take over

    assert (first.rated, first.charges) == (3, 6)
    assert (second.selected, second.rated, second.charges) == (0, 0, 0)
    assert entries(world.customer).count() == len(calls)
    assert balance(world.customer) == Decimal("10.00") - Decimal("0.020000")


def test_billing_increments_of_each_side_apply(world):
    sell = price_list("Per 30/6", [rate("49", "0.0600", "Germany", minimum=30, increment=6, fee="0.01")])
    Peer.objects.filter(pk=world.customer.pk).update(sell_rate_table=sell)
    short, longer = cdr(world, seconds=4), cdr(world, seconds=31)

    rating.rate_all()

    short.refresh_from_db()
    longer.refresh_from_db()
    assert (short.billable_seconds, short.sell_cost) == (30, Decimal("0.040000"))  # 0.01 fee + 0.03
    assert (longer.billable_seconds, longer.sell_cost) == (36, Decimal("0.046000"))
    assert (longer.supplier_billable_seconds, longer.buy_cost) == (31, Decimal("0.004133"))


def test_an_unanswered_call_costs_nothing_and_frees_its_money(world):
    decision = world.call()
    assert decision.reservation
    call = cdr(world, seconds=0, call_id=decision.request.call_id)

    result = rating.rate_batch()

    call.refresh_from_db()
    assert (call.rating_state, call.sell_cost, call.buy_cost) == ("rated", Decimal(0), Decimal(0))
    assert (result.charges, result.released) == (0, 1)
    assert Reservation.objects.get(pk=decision.reservation).outcome == Reservation.Outcome.FAILED
    assert Account.objects.get(peer=world.customer).reserved == 0
    assert not entries(world.customer).exists()


def test_rating_releases_the_reservation_and_moves_the_money_from_held_to_spent(world):
    decision = world.call()
    account = Account.objects.get(peer=world.customer)
    assert account.reserved > 0
    cdr(world, seconds=60, call_id=decision.request.call_id)

    rating.rate_batch()

    account.refresh_from_db()
    held = Reservation.objects.get(pk=decision.reservation)
    assert (held.outcome, account.reserved) == (Reservation.Outcome.RATED, 0)
    assert account.balance == Decimal("9.980000")
    assert account.available == Decimal("9.980000")


def test_another_customers_call_with_the_same_call_id_keeps_its_money(world):
    other = world.add_customer("Other", "198.51.100.99")
    decision = world.call(source_ip="198.51.100.99")
    cdr(world, seconds=30, call_id=decision.request.call_id)  # Acme's CDR, same Call-ID

    rating.rate_batch()

    assert Reservation.objects.get(pk=decision.reservation).is_active
    assert Account.objects.get(peer=other).reserved > 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"customer": None}, "Unknown customer: the call has no customer peer."),
        ({"callee": "999123"}, "No sell rate for 999123 in Acme's price list"),
        ({"callee": "33612345678", "supplier": "Delta"}, "No buy rate for 33612345678 in Delta's price list"),
    ],
)
def test_a_call_that_cannot_be_rated_is_kept_with_its_reason(world, fields, reason):
    call = cdr(world, **fields)

    result = rating.rate_batch()

    call.refresh_from_db()
    assert (result.rated, result.errors, result.charges) == (0, 1, 0)
    assert call.rating_state == Cdr.RatingState.ERROR
    assert call.rating_error.startswith(reason)
    assert call.sell_cost is None
    assert not LedgerEntry.objects.filter(cdr=call).exists()
    assert rating.rate_batch().selected == 0  # not retried in a loop


def test_a_customer_without_a_price_list_or_account_is_an_error(world):
    Peer.objects.filter(pk=world.customer.pk).update(sell_rate_table=None)
    call = cdr(world)

    rating.rate_batch()

    call.refresh_from_db()
    assert call.rating_error == "Customer Acme has no sell price list."


def test_fixed_calls_are_rated_after_requeueing(world):
    call = cdr(world, callee="33612345678", supplier="Delta")
    rating.rate_batch()
    rate_services.add_rates(
        world.suppliers["Delta"].buy_rate_table, [rate("33", "0.0100", "France")], actor=SYSTEM
    )
    world.snapshot()  # as the index rebuild task does on every node after an import

    assert rating.requeue_errors([call.pk]) == 1
    rating.rate_batch()

    call.refresh_from_db()
    assert call.rating_state == Cdr.RatingState.RATED
    assert (call.sell_cost, call.buy_cost) == (Decimal("0.045000"), Decimal("0.015000"))


def test_a_node_rates_its_own_calls_first_and_takes_over_stale_ones(world):
    mine = cdr(world, seconds=5)
    other = cdr(world, seconds=5, node=world.node2)
    stale = cdr(world, seconds=5, node=world.node2, ended_at=timezone.now() - timedelta(minutes=5))

    first = rating.rate_batch(node_id=world.node.pk)
    second = rating.rate_batch(node_id=world.node.pk)

    assert first.rated == 1 and Cdr.objects.get(pk=mine.pk).rating_state == "rated"
    assert second.rated == 1 and Cdr.objects.get(pk=stale.pk).rating_state == "rated"
    assert Cdr.objects.get(pk=other.pk).rating_state == UNRATED  # node2's own worker will
    assert rating.rate_batch(node_id=world.node2.pk).rated == 1


def test_money_held_is_released_once_when_two_paths_race(world):
    decision = world.call()
    assert reservations.release_many([decision.reservation], outcome="rated") == 1
    assert reservations.release_many([decision.reservation], outcome="rated") == 0
    assert Account.objects.get(peer=world.customer).reserved == 0


def test_rate_cdrs_command_rates_a_peers_calls_since_a_date(world):
    other = world.add_customer("Other", "198.51.100.99")
    old = cdr(world, created_at=timezone.now() - timedelta(days=3))
    recent, others = cdr(world), cdr(world, customer=other)
    out = StringIO()

    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    call_command("rate_cdrs", "--since", since, "--peer", "Acme", stdout=out)

    states = dict(Cdr.objects.values_list("pk", "rating_state"))
    assert (states[old.pk], states[recent.pk], states[others.pk]) == (UNRATED, "rated", UNRATED)
    assert "1 rated, 0 cannot be rated" in out.getvalue()


def test_rate_cdrs_retries_errors_and_reports_them(world):
    call = cdr(world, callee="999123")
    err = StringIO()
    call_command("rate_cdrs", stdout=StringIO(), stderr=err)
    assert "1 call(s) cannot be rated" in err.getvalue()
    rate_services.add_rates(world.sell_table, [rate("999", "0.5000", "Premium")], actor=SYSTEM)
    rate_services.add_rates(
        world.suppliers["Bravo"].buy_rate_table, [rate("999", "0.2500", "Premium")], actor=SYSTEM
    )
    world.snapshot()

    out = StringIO()
    call_command("rate_cdrs", "--retry-errors", stdout=out)

    assert "1 call(s) put back" in out.getvalue()
    assert Cdr.objects.get(pk=call.pk).sell_cost == Decimal("0.750000")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "is not an ISO date"),
        (["--peer", "Nobody"], "No single peer"),
        (["--batch", "0"], "--batch is at least 1"),
    ],
)
def test_rate_cdrs_refuses_bad_arguments(world, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("rate_cdrs", *args, stdout=StringIO())


def test_a_backlog_goes_on_after_batches_that_gave_up_on_conflicts_and_stops_when_they_persist(
    db, monkeypatch
):
    # On Galera three raters writing the same balance rows can outlast the retry budget.
    from django.db import OperationalError

    real = rating.rate_batch
    outcomes = iter(["conflict", "conflict", "real", "real"])

    def flaky(**kwargs):
        if next(outcomes) == "conflict":
            error = OperationalError(1213, "Deadlock found")
            error.__cause__ = OperationalError(1213, "Deadlock found")
            raise error
        return real(**kwargs)

    monkeypatch.setattr(rating, "rate_batch", flaky)
    monkeypatch.setattr(rating, "CONFLICT_PAUSE", 0)
    assert rating.rate_all().selected == 0  # two give-ups, then an empty queue: it went on

    outcomes = iter(["conflict"] * rating.GIVE_UP_LIMIT)
    with pytest.raises(rating.RatingStalled):
        rating.rate_all()
