"""Money is bounded at every door and stored exactly on every database.

The bounds are apps.core.money's: amounts, fees and credit limits up to 10^9, prices up
to 10^7 a minute, balances within +-10^12. Anything past them is refused, with the field
named, before a row is written; what was stored before the bounds existed (or by raw SQL)
is shown and flagged, never a reason for a page or a command to fail.
"""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry, RecurringFee
from apps.billing.services import Posting, fees, rating
from apps.billing.services.ledger import ledger_total
from apps.cdr.models import Cdr
from apps.core.errors import DomainError, NotAllowed
from apps.core.models import money_to_db
from apps.core.money import MAX_AMOUNT, MAX_BALANCE, MAX_PRICE
from apps.peers.models import Peer
from apps.rates import services as rate_services
from apps.rates.importing.report import ImportReport
from apps.rates.importing.validation import Validator
from apps.rates.models import Rate
from apps.rates.rows import RateRow
from apps.tenancy.scope import Scope
from tests.factories import make_peer
from tests.switching import price_list, rate

D = Decimal
HUGE = D("99999999999999.99")
# Past MAX_BALANCE, yet a value every database holds exactly (SQLite's int64 micro-units
# end at 9.2 * 10^12; past that it keeps a REAL): what raw SQL or the old bug could leave.
OUT_OF_RANGE = D("9000000000000.99")
MICRO = D("0.000001")


def balance_of(account) -> Decimal:
    return Account.objects.get(pk=account.pk).balance


def entries_of(account) -> int:
    return LedgerEntry.objects.filter(account=account).count()


def refused(call, field: str) -> DomainError:
    """Run `call`; it must raise a domain error naming `field` (status 400)."""
    with pytest.raises(DomainError) as caught:
        call()
    assert caught.value.field == field, caught.value.message
    assert caught.value.status_code == 400, caught.value.message
    return caught.value


def write_raw(model, pk: int, **columns) -> None:
    """Write money columns as raw SQL does, past every check (as the old bug left rows)."""
    table = connection.ops.quote_name(model._meta.db_table)
    sets = ", ".join(f"{connection.ops.quote_name(name)} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {sets} WHERE id = %s",  # noqa: S608 - names from the model
            [money_to_db(value) for value in columns.values()] + [pk],
        )


# --- the defects as reported -----------------------------------------------------------------


def test_a_payment_of_a_hundred_thousand_billion_is_refused_before_anything_is_written(cast):
    account = cast.a.customer.account
    staff = Scope.of_user(cast.a.staff)
    error = refused(
        lambda: billing.post_payment(account, actor=staff, amount=HUGE, reference="huge"), "amount"
    )
    assert "1,000,000,000" in error.message
    assert (entries_of(account), balance_of(account)) == (0, 0)
    # Nothing stuck: the account takes an ordinary payment, and the ledger checks out.
    billing.post_payment(account, actor=staff, amount=D("12.50"), reference="ok")
    assert balance_of(account) == D("12.50")
    call_command("check_ledger", stdout=StringIO())


def test_a_refund_far_above_the_balance_is_refused(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=D("10"), reference="paid")
    refused(lambda: billing.post_refund(account, actor=system, amount=HUGE, reference="r"), "amount")
    assert balance_of(account) == D("10")


def test_a_credit_limit_of_a_hundred_thousand_billion_is_refused(cast, system):
    account = cast.operator_customer.account  # postpaid
    refused(
        lambda: billing.update_account(
            account, actor=system, changes={"credit_limit": D("99999999999999.999999")}
        ),
        "credit_limit",
    )
    assert Account.objects.get(pk=account.pk).credit_limit == D("100")


def test_a_peer_opened_with_a_huge_credit_limit_is_not_created(cast, system):
    refused(
        lambda: make_peer("Too Much", account_mode="postpaid", credit_limit=D("99999999999999.999999")),
        "credit_limit",
    )
    assert not Peer.objects.filter(name="Too Much").exists()


def test_an_amount_with_sixteen_digits_reads_back_exactly(cast, system):
    # SQLite kept DECIMAL columns as REAL: 9999999999.999999 came back as 10000000000.000000.
    # 9999999999.999999 is past MAX_AMOUNT now, so the balance gets there in steps.
    account = cast.a.customer.account
    postings = [Posting(account.pk, "payment", MAX_AMOUNT, reference=f"p{n}") for n in range(9)]
    postings.append(Posting(account.pk, "payment", D("999999999.999999"), reference="last"))
    billing.post(postings)
    assert balance_of(account) == D("9999999999.999999")
    assert LedgerEntry.objects.filter(account=account).total() == D("9999999999.999999")
    call_command("check_ledger", stdout=StringIO())


# --- every door: payments, refunds, adjustments, postings ------------------------------------


def test_the_largest_payment_is_accepted_and_one_micro_unit_more_is_refused(cast, system):
    account = cast.a.customer.account
    refused(
        lambda: billing.post_payment(account, actor=system, amount=MAX_AMOUNT + MICRO, reference="x"),
        "amount",
    )
    billing.post_payment(account, actor=system, amount=MAX_AMOUNT, reference="y")
    assert balance_of(account) == MAX_AMOUNT


@pytest.mark.parametrize("amount", ["1e30", "-1e30", "NaN", "Infinity", "12.5.1"])
def test_absurd_amounts_are_refused_naming_the_amount(cast, system, amount):
    account = cast.a.customer.account
    refused(lambda: billing.post_payment(account, actor=system, amount=amount, reference="x"), "amount")
    refused(
        lambda: billing.post_adjustment(account, actor=system, amount=amount, reason="typo", reference="y"),
        "amount",
    )
    assert entries_of(account) == 0


def test_an_adjustment_past_the_largest_amount_is_refused_either_way(cast, system):
    account = cast.a.customer.account
    for amount in (MAX_AMOUNT + 1, -MAX_AMOUNT - 1):
        refused(
            lambda amount=amount: billing.post_adjustment(account, actor=system, amount=amount, reason="x"),
            "amount",
        )
    billing.post_adjustment(account, actor=system, amount=-MAX_AMOUNT, reason="largest debit")
    assert balance_of(account) == -MAX_AMOUNT


def test_a_refund_is_capped_by_what_was_paid(cast):
    account = cast.a.customer.account
    staff = Scope.of_user(cast.a.staff)
    billing.post_payment(account, actor=staff, amount=D("10"), reference="p1")
    billing.post_payment(account, actor=staff, amount=D("5"), reference="p2")
    billing.post_adjustment(account, actor=staff, amount=D("100"), reason="goodwill")  # not paid
    billing.post_refund(account, actor=staff, amount=D("9"), reference="r1")
    error = refused(
        lambda: billing.post_refund(account, actor=staff, amount=D("6.000001"), reference="r2"), "amount"
    )
    assert "6.000000" in error.message  # what may still be refunded
    billing.post_refund(account, actor=staff, amount=D("6"), reference="r3")
    refused(lambda: billing.post_refund(account, actor=staff, amount=MICRO, reference="r4"), "amount")
    assert balance_of(account) == D("100")


def test_replaying_a_refund_is_not_counted_against_the_cap(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=D("10"), reference="p")
    first, created = billing.post_refund(account, actor=system, amount=D("10"), reference="r")
    again, created_again = billing.post_refund(account, actor=system, amount=D("10"), reference="r")
    assert (created, created_again, again.pk) == (True, False, first.pk)


def test_only_the_operator_may_refund_beyond_what_was_paid(cast):
    account = cast.a.customer.account
    operator, staff = Scope.of_user(cast.operator), Scope.of_user(cast.a.staff)
    billing.post_payment(account, actor=staff, amount=D("10"), reference="p")
    with pytest.raises(NotAllowed) as caught:
        billing.post_refund(account, actor=staff, amount=D("50"), reference="r", allow_over_refund=True)
    assert caught.value.field == "allow_over_refund"
    entry, _ = billing.post_refund(
        account, actor=operator, amount=D("50"), reference="r", allow_over_refund=True
    )
    assert entry.amount == D("-50")
    assert balance_of(account) == D("-40")
    # The override does not lift the largest amount.
    refused(
        lambda: billing.post_refund(
            account, actor=operator, amount=HUGE, reference="r2", allow_over_refund=True
        ),
        "amount",
    )


def test_a_posting_that_would_take_a_balance_out_of_range_is_refused_before_writing(cast):
    account = cast.a.customer.account
    full = [Posting(account.pk, "payment", MAX_AMOUNT, reference=f"p{n}") for n in range(1000)]
    billing.post(full)
    assert balance_of(account) == MAX_BALANCE  # the bound itself is in range
    written = entries_of(account)
    error = refused(
        lambda: billing.post([Posting(account.pk, "adjustment", MICRO, reference="one")]), "amount"
    )
    assert "1,000,000,000,000" in error.message
    assert (entries_of(account), balance_of(account)) == (written, MAX_BALANCE)
    # A batch is refused whole: the other account's posting is not written either.
    other = cast.b.customer.account
    refused(
        lambda: billing.post(
            [Posting(other.pk, "payment", D("1"), reference="b"), Posting(account.pk, "payment", D("1"))]
        ),
        "amount",
    )
    assert entries_of(other) == 0
    # Debits still bring it down.
    billing.post([Posting(account.pk, "adjustment", -MAX_AMOUNT, reference="down")])
    assert balance_of(account) == MAX_BALANCE - MAX_AMOUNT


def test_a_credit_limit_and_a_threshold_are_bounded(cast, system):
    account = cast.operator_customer.account
    billing.update_account(account, actor=system, changes={"credit_limit": MAX_AMOUNT})
    refused(
        lambda: billing.update_account(account, actor=system, changes={"credit_limit": MAX_AMOUNT + MICRO}),
        "credit_limit",
    )
    refused(
        lambda: billing.update_account(account, actor=system, changes={"low_balance_threshold": HUGE}),
        "low_balance_threshold",
    )
    assert Account.objects.get(pk=account.pk).credit_limit == MAX_AMOUNT


def test_a_recurring_fee_is_bounded_when_added_and_when_changed(cast, system):
    account = cast.a.customer.account
    today = timezone.localdate()
    refused(
        lambda: fees.add_fee(
            account, actor=system, name="DID", amount=HUGE, period="monthly", starts_on=today
        ),
        "amount",
    )
    assert not RecurringFee.objects.exists()
    fee = fees.add_fee(account, actor=system, name="DID", amount=D("5"), period="monthly", starts_on=today)
    refused(lambda: fees.change_fee(fee, actor=system, changes={"amount": MAX_AMOUNT + 1}), "amount")
    assert RecurringFee.objects.get(pk=fee.pk).amount == D("5")


def test_a_price_past_the_largest_is_refused_and_the_largest_is_taken(cast, system):
    table = cast.a.sell_table
    start = timezone.now() - timedelta(days=1)
    with pytest.raises(ValidationError) as caught:
        rate_services.add_rates(
            table,
            [Rate(prefix="99", destination="Dear", price=MAX_PRICE + 1, effective_from=start)],
            actor=system,
        )
    assert "10,000,000" in str(caught.value)
    rate_services.add_rates(
        table, [Rate(prefix="99", destination="Dear", price=MAX_PRICE, effective_from=start)], actor=system
    )
    assert Rate.objects.get(table=table, prefix="99").price == MAX_PRICE


def test_an_imported_row_past_the_largest_price_is_a_row_error():
    report = ImportReport()
    rows = list(Validator(report).rate_rows([RateRow(prefix="44", price=HUGE, destination="UK")]))
    assert rows == []
    assert report.rows_rejected == 1


@pytest.fixture
def dear(world):
    """A customer of a price list at the largest price a minute, with no supplier to pay."""
    table = price_list("Dear", [rate("99", str(MAX_PRICE), "Premium")])
    customer = make_peer("Dear Customer", sell_rate_table_id=table.pk)
    return customer


def _call(world, customer, minutes: int) -> Cdr:
    start = timezone.now() - timedelta(minutes=minutes + 1)
    return Cdr.objects.create(
        call_id=f"dear-{minutes}@test",
        node=world.node,
        customer=customer,
        callee="99123",
        created_at=start,
        answered_at=start,
        ended_at=start + timedelta(minutes=minutes),
        duration_ms=minutes * 60_000,
        sip_code=200,
    )


def test_a_call_whose_charge_passes_the_largest_amount_is_a_rating_error(world, dear):
    fine, too_long = _call(world, dear, 100), _call(world, dear, 101)
    result = rating.rate_batch()
    assert (result.rated, result.errors) == (1, 1)
    fine.refresh_from_db()
    too_long.refresh_from_db()
    assert (fine.rating_state, fine.sell_cost) == (Cdr.RatingState.RATED, MAX_AMOUNT)
    assert too_long.rating_state == Cdr.RatingState.ERROR
    assert "1,000,000,000" in too_long.rating_error
    assert balance_of(dear.account) == -MAX_AMOUNT


def test_the_rater_leaves_a_call_that_would_take_a_balance_out_of_range_and_goes_on(world, dear):
    # A balance already near the floor (as only raw SQL or the old bug could leave it).
    write_raw(Account, dear.account.pk, balance=-MAX_BALANCE + MAX_AMOUNT / 2)
    stuck = _call(world, dear, 100)
    ordinary = Cdr.objects.create(
        call_id="ordinary@test",
        node=world.node,
        customer=world.customer,
        callee="4930123456",
        created_at=timezone.now() - timedelta(minutes=2),
        answered_at=timezone.now() - timedelta(minutes=2),
        ended_at=timezone.now() - timedelta(minutes=1),
        duration_ms=60_000,
        sip_code=200,
    )
    result = rating.rate_batch()
    stuck.refresh_from_db()
    ordinary.refresh_from_db()
    assert (result.rated, result.errors) == (1, 1)
    assert stuck.rating_state == Cdr.RatingState.ERROR
    assert "out of range" in stuck.rating_error
    assert ordinary.rating_state == Cdr.RatingState.RATED
    # The refused round left nothing behind: the ordinary call is charged once, the stuck one never.
    assert LedgerEntry.objects.filter(cdr=ordinary).count() == 1
    assert not LedgerEntry.objects.filter(cdr=stuck).exists()


# --- exact storage -----------------------------------------------------------------------------

accepted_amounts = st.decimals(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT, places=6)
accepted_balances = st.decimals(min_value=-MAX_BALANCE, max_value=MAX_BALANCE, places=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=accepted_amounts, balance=accepted_balances)
def test_any_accepted_amount_and_balance_round_trips_exactly(cast, amount, balance):
    account = cast.a.customer.account
    Account.objects.filter(pk=account.pk).update(balance=balance, credit_limit=abs(amount))
    stored = Account.objects.filter(pk=account.pk).values_list("balance", "credit_limit").get()
    assert stored == (balance, abs(amount))
    assert Account.objects.filter(pk=account.pk, balance=balance).exists()  # compared exactly in SQL
    if amount:
        Account.objects.filter(pk=account.pk).update(balance=0)
        ((entry, _),) = billing.post([Posting(account.pk, "adjustment", amount)])
        assert LedgerEntry.objects.get(pk=entry.pk).amount == amount


def test_sums_over_money_are_exact_in_sql(cast, system):
    account = cast.a.customer.account
    amounts = [D("999999999.999999")] * 100 + [D("0.000001"), D("0.1"), D("0.2")]
    billing.post([Posting(account.pk, "payment", amount) for amount in amounts])
    exact = sum(amounts)
    assert exact == D("100000000000.299901")
    assert LedgerEntry.objects.filter(account=account).total() == exact
    assert balance_of(account) == exact
    assert billing.ledger_differences() == []


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's column types only")
def test_sqlite_money_columns_hold_integer_micro_units(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=D("12.345678"), reference="p")
    with connection.cursor() as cursor:
        cursor.execute("SELECT balance, typeof(balance) FROM billing_account WHERE id = %s", [account.pk])
        assert cursor.fetchone() == (12345678, "integer")
        cursor.execute("PRAGMA table_info(billing_ledgerentry)")
        assert {name: kind.lower() for _, name, kind, *_ in cursor.fetchall()}["amount"] == "integer"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="converts SQLite databases only")
def test_an_sqlite_database_from_before_micro_units_is_converted(transactional_db):
    # The schema and values as the DECIMAL MoneyField left them: columns declared `decimal`,
    # whole amounts stored as INTEGER, fractions as REAL, the old bug's 10^14 as a REAL too.
    # Made with today's models (they write columns 0007 lacks), then taken back to 0007.
    peer = make_peer("Legacy", currency="USD")  # its account's amounts are all zero
    call_command("migrate", "billing", "0007", verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA table_info(billing_ledgerentry)")
            assert {name: kind.lower() for _, name, kind, *_ in cursor.fetchall()}["amount"] == "decimal"
            for reference, amount in (
                ("a", "12.5"),
                ("b", "0.00045"),
                ("c", "7"),
                ("d", "99999999999999.99"),
            ):
                cursor.execute(
                    "INSERT INTO billing_ledgerentry (account_id, kind, amount, reference, description,"
                    " actor_label, occurred_at, created_at) VALUES (%s, 'payment', %s, %s, '', 'old',"
                    " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                    [peer.account.pk, amount, reference],
                )
            cursor.execute("UPDATE billing_account SET balance = 19.50045 WHERE id = %s", [peer.account.pk])
    finally:
        # Every app: going back to billing 0007 also unapplied the migrations of the apps that
        # depend on a later billing one (DIDs' fees), whose tables the next tests need.
        call_command("migrate", verbosity=0)
    amounts = dict(LedgerEntry.objects.filter(account__peer=peer).values_list("reference", "amount"))
    assert (amounts["a"], amounts["b"], amounts["c"]) == (D("12.5"), D("0.00045"), D("7"))
    assert abs(amounts["d"] - HUGE) < D("0.1")  # a REAL before, a REAL still: read, not exact
    assert balance_of(peer.account) == D("19.50045")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA table_info(billing_account)")
        declared = {name: kind.lower() for _, name, kind, *_ in cursor.fetchall()}
    assert [declared[name] for name in ("balance", "credit_limit", "reserved")] == ["integer"] * 3


# --- reading never fails on what is stored ---------------------------------------------------


def test_an_out_of_range_balance_written_by_raw_sql_is_readable_and_reported(cast, system):
    account = cast.a.customer.account
    billing.post_payment(account, actor=system, amount=D("10"), reference="p")
    write_raw(Account, account.pk, balance=OUT_OF_RANGE)
    assert balance_of(account) == OUT_OF_RANGE
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("check_ledger", stdout=StringIO(), stderr=err)
    assert "9000000000000.990000 != ledger 10.000000" in err.getvalue()
    assert "out of range" in err.getvalue()


def test_a_ledger_whose_sum_overflows_sqlite_integers_is_still_summed(cast, system):
    account = cast.a.customer.account
    for reference in ("a", "b"):
        entry, _ = billing.post_payment(account, actor=system, amount=D("1"), reference=reference)
        write_raw(LedgerEntry, entry.pk, amount=OUT_OF_RANGE)
    # 2 * 9 * 10^18 micro-units: past int64, where SQLite's SUM() raises instead of rounding.
    assert ledger_total(LedgerEntry.objects.filter(account=account)) == 2 * OUT_OF_RANGE
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("check_ledger", stdout=StringIO(), stderr=err)
    assert "balance 2.000000 != ledger 18000000000001.980000" in err.getvalue()


def test_an_out_of_range_balance_can_be_brought_back_by_the_operator(cast):
    account = cast.a.customer.account
    operator, staff = Scope.of_user(cast.operator), Scope.of_user(cast.a.staff)
    write_raw(Account, account.pk, balance=OUT_OF_RANGE)
    # Moving it further out is refused, for everyone.
    refused(lambda: billing.post_payment(account, actor=operator, amount=D("1"), reference="p"), "amount")
    # The operator's adjustment that brings it back into range is taken, however large.
    refused(
        lambda: billing.post_adjustment(account, actor=staff, amount=-OUT_OF_RANGE, reason="repair"), "amount"
    )
    # Not one that overshoots the other way.
    refused(
        lambda: billing.post_adjustment(account, actor=operator, amount=-2 * OUT_OF_RANGE, reason="x"),
        "amount",
    )
    billing.post_adjustment(account, actor=operator, amount=-OUT_OF_RANGE, reason="repair")
    assert balance_of(account) == 0
    billing.post_payment(account, actor=staff, amount=D("1"), reference="p")
    assert balance_of(account) == 1


def test_the_portal_shows_an_out_of_range_balance_and_says_so(cast, client):
    account = cast.a.customer.account
    write_raw(Account, account.pk, balance=OUT_OF_RANGE, credit_limit=OUT_OF_RANGE)
    client.force_login(cast.a.customer_user)
    response = client.get("/portal/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "9,000,000,000,000.99" in page
    assert "out of range" in page
