"""The one statement that writes the accounts of a posting (apps.billing.services.ledger
`_write_accounts`): balances, spending counters and released money, on every backend, as
the rules say call by call."""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.billing.models import Account, LedgerEntry
from apps.billing.services import ledger
from apps.core.money import MAX_BALANCE

BERLIN = ZoneInfo("Europe/Berlin")
BASE = date(2030, 3, 30)  # the counters' days are data here, not today: no clock is read

days = st.integers(min_value=-40, max_value=3).map(lambda offset: BASE + timedelta(days=offset))
amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("99.999999"), places=6)
counters = st.one_of(st.none(), st.tuples(days, amounts))


def counted(counter, charges, period) -> tuple:
    """The rule, charge by charge in call order: a charge of a later period than the
    counter's starts it again, one of the same period adds, one of an earlier period
    (rated after midnight) is left out."""
    total, of = counter if counter else (Decimal(0), None)
    for day, amount in charges:
        when = period(day)
        if of is None or when > of:
            total, of = amount, when
        elif when == of:
            total += amount
    return (total, of) if of is not None else (Decimal(0), None)


@pytest.fixture
def account(cast):
    return cast.a.customer.account


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    day_counter=counters,
    month_counter=counters,
    charges=st.lists(st.tuples(days, amounts), min_size=1, max_size=6),
    held=amounts,
)
def test_one_statement_counts_spending_as_the_rule_does_call_by_call(
    account, day_counter, month_counter, charges, held
):
    charges.sort()
    month = lambda day: day.replace(day=1)  # noqa: E731
    if month_counter:
        month_counter = (month_counter[1], month(month_counter[0]))
    if day_counter:
        day_counter = (day_counter[1], day_counter[0])
    Account.objects.filter(pk=account.pk).update(
        balance=Decimal("10"),
        reserved=held,
        spent_day=day_counter[0] if day_counter else 0,
        spent_day_of=day_counter[1] if day_counter else None,
        spent_month=month_counter[0] if month_counter else 0,
        spent_month_of=month_counter[1] if month_counter else None,
    )
    entries = [
        LedgerEntry(
            account_id=account.pk,
            kind=LedgerEntry.Kind.CHARGE,
            amount=-amount,
            cdr_id=n + 1,
            occurred_at=datetime.combine(day, time(12), tzinfo=BERLIN),
        )
        for n, (day, amount) in enumerate(charges)
    ]
    total = sum((entry.amount for entry in entries), Decimal(0))
    spending = ledger._spending(entries, {account.pk: "Europe/Berlin"})

    assert ledger._write_accounts({account.pk: total}, spending, {account.pk: held}) == 1

    after = Account.objects.get(pk=account.pk)
    assert (after.balance, after.reserved) == (Decimal("10") + total, 0)
    assert (after.spent_day, after.spent_day_of) == counted(
        (day_counter[0], day_counter[1]) if day_counter else None, charges, lambda day: day
    )
    assert (after.spent_month, after.spent_month_of) == counted(month_counter, charges, month)


def test_an_account_whose_balance_would_leave_its_range_is_not_written(cast):
    near, ordinary = cast.a.customer.account, cast.b.customer.account
    Account.objects.filter(pk=near.pk).update(balance=-MAX_BALANCE + 1)
    Account.objects.filter(pk=ordinary.pk).update(balance=5)

    written = ledger._write_accounts({near.pk: Decimal("-2"), ordinary.pk: Decimal("-2")}, {}, {})

    assert written == 1
    balances = dict(Account.objects.filter(pk__in=[near.pk, ordinary.pk]).values_list("pk", "balance"))
    assert balances == {near.pk: -MAX_BALANCE + 1, ordinary.pk: Decimal("3")}


def test_a_balance_out_of_range_may_move_back_toward_it(cast):
    account = cast.a.customer.account
    Account.objects.filter(pk=account.pk).update(balance=-MAX_BALANCE - 10)

    assert ledger._write_accounts({account.pk: Decimal("4")}, {}, {}) == 1
    assert ledger._write_accounts({account.pk: Decimal("-1")}, {}, {}) == 0
    assert Account.objects.get(pk=account.pk).balance == -MAX_BALANCE - 6
