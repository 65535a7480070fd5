"""Recurring fees: the periods due (pure), each posted once, and who may manage them."""

import itertools
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from apps.audit.models import AuditEntry
from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry, RecurringFee
from apps.billing.services import fees
from apps.billing.services.fees import periods_due, post_due_fees
from apps.core.errors import DomainError, NotAllowed
from apps.peers import services as peer_services
from apps.tenancy.scope import Scope

D = Decimal
MONTHLY, DAILY = RecurringFee.Period.MONTHLY, RecurringFee.Period.DAILY


def unsaved_fee(amount="10", *, starts_on, ends_on=None, period=MONTHLY, prorate=True) -> RecurringFee:
    return RecurringFee(
        amount=D(amount), period=period, starts_on=starts_on, ends_on=ends_on, prorate=prorate
    )


def add(account, *, actor=None, amount="10", name="DID +44 20 7946 0000", period=MONTHLY, **kwargs):
    return fees.add_fee(
        account, actor=actor or Scope.system(), name=name, amount=D(amount), period=period, **kwargs
    )


def ledger_of(fee) -> list[tuple[str, Decimal]]:
    return list(
        LedgerEntry.objects.filter(kind="fee", reference__startswith=f"fee:{fee.pk}:")
        .order_by("reference")
        .values_list("reference", "amount")
    )


def balance_of(account) -> Decimal:
    return Account.objects.get(pk=account.pk).balance


# --- the periods due: a pure function of the fee and the day --------------------------------


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2023, 2, 1), date(2023, 2, 28)),
        (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 4, 1), date(2024, 4, 30)),
        (date(2024, 1, 1), date(2024, 1, 31)),
    ],
    ids=["28 days", "29 days", "30 days", "31 days"],
)
def test_a_whole_month_costs_the_amount_whatever_its_length(first, last):
    assert periods_due(unsaved_fee(starts_on=first), last) == [(first, last, D("10"))]


@pytest.mark.parametrize(
    ("starts_on", "last_day", "amount"),
    [
        (date(2023, 2, 11), date(2023, 2, 28), D("6.428571")),  # 18 of 28 days
        (date(2024, 2, 11), date(2024, 2, 29), D("6.551724")),  # 19 of 29
        (date(2024, 4, 11), date(2024, 4, 30), D("6.666667")),  # 20 of 30
        (date(2024, 1, 11), date(2024, 1, 31), D("6.774194")),  # 21 of 31
    ],
)
def test_a_fee_starting_mid_month_is_prorated_by_the_days_of_that_month(starts_on, last_day, amount):
    assert periods_due(unsaved_fee(starts_on=starts_on), last_day) == [(starts_on, last_day, amount)]


def test_a_fee_ending_mid_month_is_prorated_and_then_stops():
    fee = unsaved_fee("31", starts_on=date(2024, 1, 1), ends_on=date(2024, 3, 10))
    assert periods_due(fee, date(2024, 6, 1)) == [
        (date(2024, 1, 1), date(2024, 1, 31), D("31")),
        (date(2024, 2, 1), date(2024, 2, 29), D("31")),
        (date(2024, 3, 1), date(2024, 3, 10), D("10")),
    ]


def test_a_fee_starting_and_ending_in_one_month_is_charged_once_for_its_days():
    fee = unsaved_fee("10", starts_on=date(2024, 4, 10), ends_on=date(2024, 4, 19))
    assert periods_due(fee, date(2024, 12, 31)) == [(date(2024, 4, 10), date(2024, 4, 19), D("3.333333"))]


def test_without_proration_a_cut_month_is_charged_in_full():
    fee = unsaved_fee("10", starts_on=date(2024, 1, 20), ends_on=date(2024, 2, 5), prorate=False)
    assert periods_due(fee, date(2024, 3, 1)) == [
        (date(2024, 1, 20), date(2024, 1, 31), D("10")),
        (date(2024, 2, 1), date(2024, 2, 5), D("10")),
    ]


def test_a_daily_fee_is_charged_every_day_across_a_leap_day():
    fee = unsaved_fee("0.5", starts_on=date(2024, 2, 27), period=DAILY)
    days = [date(2024, 2, 27), date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 2)]
    assert periods_due(fee, date(2024, 3, 2)) == [(day, day, D("0.5")) for day in days]
    fee.ends_on = date(2024, 2, 29)
    assert [period.first_day for period in periods_due(fee, date(2024, 3, 2))] == days[:3]


def test_a_month_is_due_on_its_first_day_and_not_before():
    fee = unsaved_fee(starts_on=date(2024, 1, 1))
    assert [p.first_day for p in periods_due(fee, date(2024, 2, 29))] == [date(2024, 1, 1), date(2024, 2, 1)]
    assert periods_due(fee, date(2024, 3, 1))[-1] == (date(2024, 3, 1), date(2024, 3, 31), D("10"))
    assert periods_due(fee, date(2023, 12, 31)) == []


def test_a_prorated_share_is_rounded_once_half_up_like_money():
    # 0.000001 * 15 / 30 is exactly half a micro-unit: half up gives 1, half even would give 0.
    fee = unsaved_fee("0.000001", starts_on=date(2024, 4, 16))
    assert periods_due(fee, date(2024, 4, 30)) == [(date(2024, 4, 16), date(2024, 4, 30), D("0.000001"))]


def test_two_exact_halves_of_a_month_may_cost_one_micro_unit_more_than_the_month():
    # The consequence of rounding each part half up: both halves of an odd amount round up.
    first = unsaved_fee("10.000001", starts_on=date(2024, 4, 1), ends_on=date(2024, 4, 15))
    second = unsaved_fee("10.000001", starts_on=date(2024, 4, 16))
    parts = periods_due(first, date(2024, 4, 30)) + periods_due(second, date(2024, 4, 30))
    assert [part.amount for part in parts] == [D("5.000001"), D("5.000001")]


amounts = st.decimals(min_value=D("0.000001"), max_value=D("100000"), places=6)
months = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 1)).map(lambda d: d.replace(day=1))


def _last_of(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)


@given(amount=amounts, month=months, prorate=st.booleans())
def test_property_a_month_without_cut_costs_exactly_the_amount(amount, month, prorate):
    fee = unsaved_fee(amount, starts_on=month, prorate=prorate)
    assert periods_due(fee, _last_of(month)) == [(month, _last_of(month), amount)]


@given(amount=amounts, month=months, data=st.data())
def test_property_the_parts_of_a_split_month_add_up_to_the_amount_within_one_micro_unit(amount, month, data):
    last = _last_of(month)
    split = data.draw(st.integers(min_value=1, max_value=last.day - 1))
    before = unsaved_fee(amount, starts_on=month, ends_on=month.replace(day=split))
    after = unsaved_fee(amount, starts_on=month.replace(day=split + 1))
    (head,) = periods_due(before, last)
    (tail,) = periods_due(after, last)
    for part, days in ((head, split), (tail, last.day - split)):
        exact = amount * days / last.day
        assert part.amount <= amount
        assert abs(part.amount - exact) <= D("0.0000005")
    # Each part rounds half up on its own, so only two exact halves both round up.
    assert head.amount + tail.amount - amount in (0, D("0.000001"))


@given(
    starts_on=st.dates(min_value=date(2020, 1, 1), max_value=date(2026, 12, 31)),
    length=st.none() | st.integers(min_value=0, max_value=800),
    later=st.integers(min_value=-40, max_value=900),
    period=st.sampled_from([MONTHLY, DAILY]),
    prorate=st.booleans(),
)
def test_property_periods_tile_the_charged_days_without_gap_or_overlap(
    starts_on, length, later, period, prorate
):
    ends_on = None if length is None else starts_on + timedelta(days=length)
    today = starts_on + timedelta(days=later)
    fee = unsaved_fee("30", starts_on=starts_on, ends_on=ends_on, period=period, prorate=prorate)
    periods = periods_due(fee, today)
    if today < starts_on:
        assert periods == []
        return
    assert periods[0].first_day == starts_on
    for previous, current in itertools.pairwise(periods):
        assert current.first_day == previous.last_day + timedelta(days=1)
    for period_ in periods:
        assert period_.first_day <= today
        assert (period_.first_day.year, period_.first_day.month) == (
            period_.last_day.year,
            period_.last_day.month,
        )
        assert D(0) <= period_.amount <= D(30)
        if period == DAILY:
            assert period_.first_day == period_.last_day
    last = periods[-1]
    if ends_on is not None and ends_on <= today:
        assert last.last_day == ends_on  # ended: charged through its last day
    else:
        assert last.first_day <= today <= last.last_day  # running: charged through today's period


# --- posting: each period once, however often and wherever the task runs ------------------


def test_due_periods_are_posted_with_exact_amounts_references_and_dates(cast):
    account = cast.a.customer.account
    fee = add(account, amount="30", starts_on=date(2024, 1, 15))

    assert post_due_fees(today=date(2024, 3, 1)) == 3

    entries = LedgerEntry.objects.filter(account=account).order_by("reference")
    assert [(e.kind, e.reference, e.amount, e.description, e.occurred_at) for e in entries] == [
        (
            "fee",
            f"fee:{fee.pk}:2024-01-15",
            D("-16.451613"),  # 17 of 31 days
            "DID +44 20 7946 0000, 2024-01-15 to 2024-01-31",
            datetime(2024, 1, 15, tzinfo=timezone.get_current_timezone()),
        ),
        (
            "fee",
            f"fee:{fee.pk}:2024-02-01",
            D("-30"),
            "DID +44 20 7946 0000, 2024-02-01 to 2024-02-29",
            datetime(2024, 2, 1, tzinfo=timezone.get_current_timezone()),
        ),
        (
            "fee",
            f"fee:{fee.pk}:2024-03-01",
            D("-30"),
            "DID +44 20 7946 0000, 2024-03-01 to 2024-03-31",
            datetime(2024, 3, 1, tzinfo=timezone.get_current_timezone()),
        ),
    ]
    assert {e.actor_label for e in entries} == {"system"}
    assert balance_of(account) == D("-76.451613")
    assert billing.ledger_differences() == []


def test_a_period_is_dated_at_midnight_of_its_first_day_in_the_current_timezone(cast):
    fee = add(cast.a.customer.account, starts_on=date(2024, 3, 1))
    with timezone.override("America/New_York"):
        post_due_fees(today=date(2024, 3, 1))
    entry = LedgerEntry.objects.get(reference=f"fee:{fee.pk}:2024-03-01")
    assert entry.occurred_at == datetime(2024, 3, 1, tzinfo=ZoneInfo("America/New_York"))


def test_running_the_task_twice_posts_each_period_once(cast):
    account = cast.a.customer.account
    fee = add(account, amount="12", starts_on=date(2024, 1, 1))
    assert post_due_fees(today=date(2024, 2, 10)) == 2
    assert post_due_fees(today=date(2024, 2, 10)) == 0
    assert post_due_fees(today=date(2024, 2, 29)) == 0  # later in the same period
    assert ledger_of(fee) == [(f"fee:{fee.pk}:2024-01-01", D("-12")), (f"fee:{fee.pk}:2024-02-01", D("-12"))]
    assert balance_of(account) == D("-24")
    assert billing.ledger_differences() == []


def test_missed_days_are_caught_up_on_the_next_run(cast):
    account = cast.a.customer.account
    fee = add(account, amount="1.25", period=DAILY, starts_on=date(2024, 5, 1))
    assert post_due_fees(today=date(2024, 5, 1)) == 1
    # The node was down on the 2nd and the 3rd.
    assert post_due_fees(today=date(2024, 5, 4)) == 3
    assert [reference for reference, _ in ledger_of(fee)] == [
        f"fee:{fee.pk}:2024-05-0{day}" for day in (1, 2, 3, 4)
    ]
    assert balance_of(account) == D("-5")
    assert billing.ledger_differences() == []


def test_fees_of_every_account_are_posted_in_one_run(cast):
    accounts = [cast.a.customer.account, cast.b.customer.account, cast.operator_customer.account]
    for account in accounts:
        add(account, amount="5", starts_on=date(2024, 1, 1))
        add(account, name="Support", amount="2", period=DAILY, starts_on=date(2024, 1, 30))
    assert post_due_fees(today=date(2024, 2, 1)) == 3 * (2 + 3)
    assert [balance_of(account) for account in accounts] == [D("-16")] * 3
    assert billing.ledger_differences() == []


def test_a_disabled_fee_or_a_disabled_peer_is_not_charged(cast, system):
    disabled_fee = add(cast.a.customer.account, starts_on=date(2024, 1, 1))
    fees.change_fee(disabled_fee, actor=system, changes={"enabled": False})
    of_disabled_peer = add(cast.b.customer.account, starts_on=date(2024, 1, 1))
    peer_services.update_peer(cast.b.customer, actor=system, changes={"enabled": False})
    charged = add(cast.operator_customer.account, starts_on=date(2024, 1, 1))

    assert post_due_fees(today=date(2024, 1, 1)) == 1

    assert ledger_of(disabled_fee) == ledger_of(of_disabled_peer) == []
    assert ledger_of(charged) == [(f"fee:{charged.pk}:2024-01-01", D("-10"))]
    assert balance_of(cast.a.customer.account) == balance_of(cast.b.customer.account) == 0


def test_a_fee_enabled_again_is_caught_up_to_its_start(cast, system):
    # Disabling holds postings back; ending the fee is what stops charging.
    fee = add(cast.a.customer.account, starts_on=date(2024, 1, 1))
    fees.change_fee(fee, actor=system, changes={"enabled": False})
    assert post_due_fees(today=date(2024, 2, 1)) == 0
    fees.change_fee(fee, actor=system, changes={"enabled": True})
    assert post_due_fees(today=date(2024, 2, 1)) == 2


def test_a_fee_starting_later_posts_nothing_yet_and_today_is_the_local_date(cast):
    tomorrow = timezone.localdate() + timedelta(days=1)
    later = add(cast.a.customer.account, period=DAILY, starts_on=tomorrow)
    today = add(cast.b.customer.account, period=DAILY, starts_on=timezone.localdate())
    assert post_due_fees() == 1
    assert ledger_of(later) == []
    assert [reference for reference, _ in ledger_of(today)] == [
        f"fee:{today.pk}:{timezone.localdate().isoformat()}"
    ]


@pytest.mark.django_db(transaction=True)
def test_two_nodes_running_the_task_at_once_post_each_period_once(cast):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; run with a mysql:// or postgres:// DATABASE_URL for the race")
    accounts = [cast.a.customer.account, cast.b.customer.account, cast.operator_customer.account]
    for account in accounts:
        add(account, amount="1", period=DAILY, starts_on=date(2024, 1, 1))
        add(account, amount="30", starts_on=date(2024, 1, 1))
    barrier = threading.Barrier(2, timeout=20)
    written, errors = [], []

    def node():
        try:
            barrier.wait()
            written.append(post_due_fees(today=date(2024, 3, 31)))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=node) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    per_account = 91 + 3  # every day of January to March 2024, and three months
    assert sum(written) == 3 * per_account
    assert LedgerEntry.objects.filter(kind="fee").count() == 3 * per_account
    assert [balance_of(account) for account in accounts] == [D("-181")] * 3
    assert billing.ledger_differences() == []


# --- the services: who may manage fees, and what may change once charged --------------------


def test_adding_a_fee_is_audited_for_the_owner(cast):
    staff_a = Scope.of_user(cast.a.staff)
    fee = add(cast.a.customer.account, actor=staff_a, amount="4.5", starts_on=date(2024, 1, 1))
    assert (fee.amount, fee.period, fee.prorate, fee.enabled) == (D("4.5"), MONTHLY, True, True)
    entry = AuditEntry.objects.get(action="fee.added", object_id=str(fee.pk))
    assert (entry.actor, entry.reseller_id) == (cast.a.staff, cast.a.reseller.pk)


def test_a_reseller_cannot_add_a_fee_to_another_resellers_customer(cast):
    staff_b = Scope.of_user(cast.b.staff)
    with pytest.raises(NotAllowed):
        add(cast.a.customer.account, actor=staff_b, starts_on=date(2024, 1, 1))
    with pytest.raises(NotAllowed):
        add(cast.operator_customer.account, actor=staff_b, starts_on=date(2024, 1, 1))
    assert not RecurringFee.objects.exists()


def test_a_customer_cannot_add_a_fee_even_to_its_own_account(cast):
    customer = Scope.of_user(cast.a.customer_user)
    assert customer.is_customer
    with pytest.raises(NotAllowed):
        add(cast.a.customer.account, actor=customer, starts_on=date(2024, 1, 1))
    assert not RecurringFee.objects.exists()


def test_only_the_owner_may_change_or_end_a_fee(cast):
    fee = add(cast.a.customer.account, starts_on=date(2024, 1, 1))
    for actor in (Scope.of_user(cast.b.staff), Scope.of_user(cast.a.customer_user)):
        with pytest.raises(NotAllowed):
            fees.change_fee(fee, actor=actor, changes={"amount": D("1")})
        with pytest.raises(NotAllowed):
            fees.end_fee(fee, actor=actor, ends_on=date(2024, 6, 30))
    fees.change_fee(fee, actor=Scope.of_user(cast.a.staff), changes={"amount": D("11")})
    fee.refresh_from_db()
    assert (fee.amount, fee.ends_on) == (D("11"), None)


def test_a_fee_cannot_move_to_another_account(cast, system):
    fee = add(cast.a.customer.account, starts_on=date(2024, 1, 1))
    with pytest.raises(NotAllowed):
        fees.change_fee(fee, actor=system, changes={"account_id": cast.b.customer.account.pk})


@pytest.mark.parametrize(
    ("amount", "ends_on", "field"),
    [("0", None, "amount"), ("-3", None, "amount"), ("10", date(2023, 12, 31), "ends_on")],
)
def test_fee_settings_are_validated_by_the_model(cast, amount, ends_on, field):
    with pytest.raises(ValidationError) as error:
        add(cast.a.customer.account, amount=amount, starts_on=date(2024, 1, 1), ends_on=ends_on)
    assert field in error.value.message_dict
    assert not RecurringFee.objects.exists()


def test_a_new_amount_applies_to_the_periods_not_yet_charged(cast, system):
    fee = add(cast.a.customer.account, amount="10", starts_on=date(2024, 1, 1))
    post_due_fees(today=date(2024, 1, 1))
    fees.change_fee(fee, actor=system, changes={"amount": D("12.5")})
    post_due_fees(today=date(2024, 2, 1))
    assert ledger_of(fee) == [
        (f"fee:{fee.pk}:2024-01-01", D("-10")),
        (f"fee:{fee.pk}:2024-02-01", D("-12.5")),
    ]


def test_ending_a_fee_stops_later_periods(cast, system):
    fee = add(cast.a.customer.account, amount="31", starts_on=date(2024, 1, 1))
    post_due_fees(today=date(2024, 1, 5))
    fees.end_fee(fee, actor=system, ends_on=date(2024, 2, 10))
    assert post_due_fees(today=date(2024, 5, 1)) == 1
    assert ledger_of(fee)[-1] == (f"fee:{fee.pk}:2024-02-01", D("-10.689655"))  # 10 of 29 days
    assert AuditEntry.objects.filter(action="fee.ended", object_id=str(fee.pk)).exists()


def test_a_charged_period_cannot_be_cut_or_moved(cast, system):
    fee = add(cast.a.customer.account, amount="31", starts_on=date(2024, 1, 1))
    post_due_fees(today=date(2024, 2, 1))
    for changes, field in (
        ({"ends_on": date(2024, 2, 10)}, "ends_on"),  # February was charged in full
        ({"ends_on": date(2024, 1, 31)}, "ends_on"),  # and so was February at all
        ({"starts_on": date(2024, 1, 2)}, "starts_on"),
        ({"period": DAILY}, "period"),  # 2024-01-01 daily would look charged, the 2nd not
    ):
        with pytest.raises(DomainError) as error:
            fees.change_fee(fee, actor=system, changes=changes)
        assert error.value.field == field
        assert "charged through 2024-02-29" in error.value.message
    fee.refresh_from_db()
    assert (fee.starts_on, fee.ends_on, fee.period) == (date(2024, 1, 1), None, MONTHLY)
    # Ending on the last day charged, or later, is fine; so is any change before charging.
    fees.end_fee(fee, actor=system, ends_on=date(2024, 2, 29))
    assert post_due_fees(today=date(2024, 6, 1)) == 0
    fresh = add(cast.a.customer.account, amount="31", starts_on=date(2024, 1, 1))
    fees.change_fee(fresh, actor=system, changes={"period": DAILY, "starts_on": date(2024, 1, 2)})


def test_without_proration_a_fee_may_end_inside_a_period_charged_in_full(cast, system):
    fee = add(cast.a.customer.account, amount="31", starts_on=date(2024, 1, 1), prorate=False)
    post_due_fees(today=date(2024, 2, 1))
    with pytest.raises(DomainError):
        # The days of the period still change, and with them its description on the ledger.
        fees.end_fee(fee, actor=system, ends_on=date(2024, 2, 10))


# --- the admin: scoped list, writes through the services -----------------------------------


@pytest.fixture
def three_fees(cast):
    return {
        "a": add(cast.a.customer.account, name="DID A", starts_on=date(2024, 1, 1)),
        "b": add(cast.b.customer.account, name="DID B", starts_on=date(2024, 1, 1)),
        "operator": add(cast.operator_customer.account, name="DID O", starts_on=date(2024, 1, 1)),
    }


CHANGELIST = "admin:billing_recurringfee_changelist"


def listed(response) -> set:
    assert response.status_code == 200, response.status_code
    return {fee.pk for fee in response.context["cl"].result_list}


def test_the_fee_list_is_scoped_to_the_resellers_customers(three_fees, cast, login):
    assert listed(login(cast.a.staff).get(reverse(CHANGELIST))) == {three_fees["a"].pk}
    assert listed(login(cast.b.staff).get(reverse(CHANGELIST))) == {three_fees["b"].pk}
    assert listed(login(cast.operator).get(reverse(CHANGELIST))) == {fee.pk for fee in three_fees.values()}
    other = reverse("admin:billing_recurringfee_change", args=[three_fees["b"].pk])
    assert login(cast.a.staff).get(other).status_code == 302  # absent, not forbidden: no leak
    response = login(cast.a.customer_user).get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_the_fee_list_shows_the_last_period_posted_in_fixed_queries(
    three_fees, cast, login, django_assert_max_num_queries
):
    for n in range(20):
        add(cast.a.customer.account, name=f"DID {n:02d}", period=DAILY, starts_on=date(2024, 2, 27))
    post_due_fees(today=date(2024, 3, 1))
    client = login(cast.a.staff)
    with django_assert_max_num_queries(10):
        response = client.get(reverse(CHANGELIST))
    rows = {fee.name: fee for fee in response.context["cl"].result_list}
    assert len(rows) == 21
    assert rows["DID A"].last_posted_reference == f"fee:{three_fees['a'].pk}:2024-03-01"
    assert rows["DID 07"].last_posted_reference.endswith(":2024-03-01")
    admin_ = response.context["cl"].model_admin
    assert admin_.last_posted(rows["DID A"]) == date(2024, 3, 1)


def test_a_reseller_adds_a_fee_for_its_customer_through_the_service(cast, login):
    client = login(cast.a.staff)
    data = {
        "name": "DID +44 20 7946 0001",
        "amount": "3.5",
        "period": MONTHLY,
        "starts_on": "2024-01-01",
        "ends_on": "",
        "prorate": "on",
    }
    refused = client.post(
        reverse("admin:billing_recurringfee_add"), {**data, "account": cast.b.customer.account.pk}
    )
    assert refused.status_code == 200
    assert "account" in refused.context["adminform"].form.errors
    assert not RecurringFee.objects.exists()

    response = client.post(
        reverse("admin:billing_recurringfee_add"), {**data, "account": cast.a.customer.account.pk}
    )
    assert response.status_code == 302
    fee = RecurringFee.objects.get()
    assert (fee.account, fee.amount, fee.enabled) == (cast.a.customer.account, D("3.5"), True)
    assert AuditEntry.objects.get(action="fee.added").actor == cast.a.staff


def test_ending_a_fee_inside_a_charged_period_is_refused_on_the_admin_form(three_fees, cast, login):
    fee = three_fees["a"]
    post_due_fees(today=date(2024, 2, 1))
    url = reverse("admin:billing_recurringfee_tool", args=[fee.pk, "end"])
    client = login(cast.a.staff)
    refused = client.post(url, {"ends_on": "2024-02-10"})
    assert refused.status_code == 200
    assert "charged through 2024-02-29" in refused.context["form"].errors["ends_on"][0]
    assert client.post(url, {"ends_on": "2024-02-29"}).status_code == 302
    fee.refresh_from_db()
    assert fee.ends_on == date(2024, 2, 29)
    assert login(cast.b.staff).post(url, {"ends_on": "2024-03-31"}).status_code == 404
