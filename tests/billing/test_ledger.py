"""Money: the ledger is the truth, postings happen once, the balance is its cached sum."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEntry
from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry
from apps.billing.services import rating
from apps.cdr.models import Cdr
from apps.core.errors import Conflict, DomainError, NotAllowed
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory


def balance_of(peer) -> Decimal:
    return Account.objects.get(peer=peer).balance


def test_payment_credits_the_balance_through_one_ledger_row(cast, system):
    account = cast.a.customer.account
    entry, created = billing.post_payment(account, actor=system, amount=Decimal("25.50"), reference="PSP-1")
    assert created
    assert entry.amount == Decimal("25.500000")
    assert balance_of(cast.a.customer) == Decimal("25.5")
    assert list(LedgerEntry.objects.filter(account=account).values_list("kind", flat=True)) == ["payment"]
    assert AuditEntry.objects.filter(action="ledger.payment", object_id=str(account.pk)).exists()


def test_the_same_payment_reference_is_posted_once(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=Decimal("10"), reference="PSP-7")
    _, created = billing.post_payment(account, actor=system, amount=Decimal("10"), reference="PSP-7")
    assert not created
    assert balance_of(cast.a.customer) == Decimal("10")
    assert LedgerEntry.objects.filter(account=account).count() == 1


def test_a_reused_reference_with_another_amount_is_a_conflict(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=Decimal("10"), reference="PSP-8")
    with pytest.raises(Conflict):
        billing.post_payment(account, actor=system, amount=Decimal("11"), reference="PSP-8")
    assert balance_of(cast.a.customer) == Decimal("10")


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5")])
def test_a_payment_must_be_positive(cast, system, amount):
    with pytest.raises(DomainError) as error:
        billing.post_payment(cast.a.customer.account, actor=system, amount=amount)
    assert error.value.field == "amount"
    assert not LedgerEntry.objects.exists()


def test_adjustments_and_refunds_move_the_balance_both_ways(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=Decimal("50"))
    billing.post_refund(account, actor=system, amount=Decimal("20"))
    billing.post_adjustment(account, actor=system, amount=Decimal("-0.000001"), reason="rounding")
    billing.post_adjustment(account, actor=system, amount=Decimal("3"), reason="goodwill")
    assert balance_of(cast.a.customer) == Decimal("32.999999")
    with pytest.raises(DomainError):
        billing.post_adjustment(account, actor=system, amount=Decimal("1"), reason="  ")


def test_a_reseller_cannot_move_money_of_another_reseller(cast):
    staff_of_b = Scope.of_user(cast.b.staff)
    with pytest.raises(NotAllowed):
        billing.post_payment(cast.a.customer.account, actor=staff_of_b, amount=Decimal("5"))
    assert balance_of(cast.a.customer) == 0
    billing.post_payment(cast.b.customer.account, actor=staff_of_b, amount=Decimal("5"))
    assert balance_of(cast.b.customer) == 5


def test_ledger_entries_cannot_be_changed_or_deleted(cast, system):
    entry, _ = billing.post_payment(cast.a.customer.account, actor=system, amount=Decimal("5"))
    entry.amount = Decimal("500")
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("500"))
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("5")


def test_the_rater_charges_each_call_once(cast, unrated_call):
    cdrs = [unrated_call(cast.a.customer, "0.0125", node=cast.node) for _ in range(3)]
    assert rating.rate_batch().charges == 3
    assert rating.rate_batch().charges == 0
    # Claimed again, as by a second rater on another Galera node: charged once all the same.
    Cdr.objects.filter(pk=cdrs[0].pk).update(rating_state=Cdr.RatingState.UNRATED)
    assert rating.rate_batch().charges == 0
    assert balance_of(cast.a.customer) == Decimal("-0.0375")
    assert LedgerEntry.objects.filter(kind="charge", cdr__in=cdrs).count() == 3
    # Dated by the call's start (the moment its price was chosen), not by the posting, so
    # statements put calls in their period.
    first = LedgerEntry.objects.get(reference=f"cdr:{cdrs[0].pk}")
    assert first.occurred_at == cdrs[0].created_at


def test_check_ledger_passes_and_then_catches_a_tampered_balance(cast, system, capsys):
    billing.post_payment(cast.a.customer.account, actor=system, amount=Decimal("7"))
    call_command("check_ledger")
    assert "Every balance equals" in capsys.readouterr().out
    Account.objects.filter(pk=cast.a.customer.account.pk).update(balance=Decimal("8"))
    with pytest.raises(CommandError):
        call_command("check_ledger")
    assert "off by 1.000000" in capsys.readouterr().err


money_amounts = st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), places=6).filter(
    lambda amount: amount != 0
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["payment", "refund", "adjustment", "charge"]), money_amounts), max_size=12
    )
)
def test_balance_always_equals_the_sum_of_the_ledger(cast, system, unrated_call, operations):
    account = cast.operator_customer.account
    for kind, amount in operations:
        if kind == "payment":
            billing.post_payment(account, actor=system, amount=abs(amount))
        elif kind == "refund":
            billing.post_refund(account, actor=system, amount=abs(amount), allow_over_refund=True)
        elif kind == "adjustment":
            billing.post_adjustment(account, actor=system, amount=amount, reason="test")
        else:
            unrated_call(cast.operator_customer, abs(amount), node=cast.node)
            rating.rate_batch()
    assert billing.ledger_differences() == []


def test_a_call_is_charged_to_its_own_customer_only(cast, unrated_call):
    cdr = unrated_call(cast.a.customer, "0.5", node=cast.node)
    assert rating.rate_batch().charges == 1
    assert balance_of(cast.a.customer) == Decimal("-0.5")
    assert balance_of(cast.b.customer) == 0
    assert list(LedgerEntry.objects.filter(cdr=cdr).values_list("account__peer", flat=True)) == [
        cast.a.customer.pk
    ]


def test_a_batch_that_reuses_a_reference_with_another_amount_writes_nothing(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=Decimal("10"), reference="PSP-9")
    postings = [
        billing.Posting(account.pk, LedgerEntry.Kind.PAYMENT, Decimal("5"), reference="PSP-10"),
        billing.Posting(account.pk, LedgerEntry.Kind.PAYMENT, Decimal("99"), reference="PSP-9"),
    ]
    with pytest.raises(Conflict):
        billing.post(postings)
    assert balance_of(cast.a.customer) == Decimal("10")
    assert not LedgerEntry.objects.filter(reference="PSP-10").exists()


@pytest.mark.django_db(transaction=True)
def test_two_raters_posting_the_same_charges_at_once_write_each_once(cast):
    import threading

    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; run with a mysql:// or postgres:// DATABASE_URL for the race")
    # The rater's claim keeps two raters off the same CDRs on one server; on Galera both
    # may claim them, and then the ledger's unique reference is what charges each once.
    cdrs = [
        CdrFactory(customer=cast.a.customer, node=cast.node, sell_cost=Decimal("0.01")) for _ in range(50)
    ]
    account = cast.a.customer.account
    postings = [
        billing.Posting(
            account.pk, LedgerEntry.Kind.CHARGE, -cdr.sell_cost, reference=f"cdr:{cdr.pk}", cdr_id=cdr.pk
        )
        for cdr in cdrs
    ]
    barrier = threading.Barrier(2, timeout=20)
    written, errors = [], []

    def rater():
        try:
            barrier.wait()
            written.append(sum(created for _, created in billing.post(postings)))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=rater) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(written) == [0, 50]
    assert balance_of(cast.a.customer) == Decimal("-0.5")
    assert billing.ledger_differences() == []
