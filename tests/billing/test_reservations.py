"""Money held by live calls: reserve, estimate, release, expire; `Account.reserved` is always
the sum of the account's active reservations."""

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.billing.services import rating, reservations
from apps.billing.services.reservations import Hold, InsufficientFunds, TooManyCalls
from apps.peers.models import Peer
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer

SYSTEM = Scope.system()
PER_SECOND = Tariff(Decimal("0.60"))  # 0.01 a second
PER_MINUTE = Tariff(Decimal("0.60"), min_seconds=60, increment_seconds=60)
FAILED = Reservation.Outcome.FAILED


def customer(name: str = "Caller", *, balance: str = "1.00", **kwargs) -> Peer:
    peer = make_peer(name, **kwargs)
    if Decimal(balance) > 0:
        billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal(balance))
    return peer


def hold(peer: Peer, call_id: str, tariff: Tariff = PER_SECOND, **fields) -> Hold:
    values = {"ceiling": 7200, "grace": 120, "prefix": "49", "destination": "Germany"}
    values.update(fields)
    return Hold(account_id=peer.account.pk, customer_id=peer.pk, call_id=call_id, tariff=tariff, **values)


def account_of(peer: Peer) -> Account:
    return Account.objects.get(peer=peer)


def assert_reserved_is_the_sum_of_active_reservations(peer: Peer) -> Decimal:
    account = account_of(peer)
    active = Reservation.objects.active().filter(account=account).aggregate(total=Sum("amount"))["total"]
    assert account.reserved == (active or 0)
    return account.reserved


@pytest.fixture
def caller(db) -> Peer:
    return customer()


def test_a_reservation_holds_the_longest_affordable_call_and_records_where_it_goes(caller):
    node = NodeFactory(name="node1")
    supplier = make_peer("Carrier", role=Peer.Role.SUPPLIER)
    now = timezone.now()
    grant = reservations.reserve(
        hold(caller, "c1@pbx", tariff=PER_MINUTE, node_id=node.pk, supplier_id=supplier.pk, grace=90), now=now
    )

    assert (grant.seconds, grant.amount, grant.available, grant.live_calls) == (
        60,
        Decimal("0.60"),
        Decimal(1),
        0,
    )
    row = Reservation.objects.get(pk=grant.reservation_id)
    assert (row.account_id, row.customer_id, row.node_id, row.supplier_id, row.route_id) == (
        caller.account.pk,
        caller.pk,
        node.pk,
        supplier.pk,
        None,
    )
    assert (row.call_id, row.amount, row.max_duration, row.prefix, row.destination) == (
        "c1@pbx",
        Decimal("0.60"),
        60,
        "49",
        "Germany",
    )
    assert (row.created_at, row.expires_at) == (now, now + timedelta(seconds=60 + 90))
    assert (row.released_at, row.outcome, row.is_active) == (None, "", True)
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.60")
    assert account_of(caller).available == Decimal("0.40")
    assert account_of(caller).balance == Decimal("1.00")  # held, not spent


def test_each_reservation_leaves_less_for_the_next_call_until_none_is_left(caller):
    first = reservations.reserve(hold(caller, "a", ceiling=30))
    second = reservations.reserve(hold(caller, "b", ceiling=50))
    third = reservations.reserve(hold(caller, "c"))
    # The first two are paid in full (the short way: the account is not read), the third
    # gets what is left (the long way, which reports what it read).
    assert [(g.seconds, g.amount, g.available, g.live_calls) for g in (first, second, third)] == [
        (30, Decimal("0.30"), None, None),
        (50, Decimal("0.50"), None, None),
        (20, Decimal("0.20"), Decimal("0.20"), 2),
    ]
    assert_reserved_is_the_sum_of_active_reservations(caller)
    with pytest.raises(InsufficientFunds, match=r"Available 0\.000000 does not pay"):
        reservations.reserve(hold(caller, "d"))
    assert Reservation.objects.count() == 3
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("1.00")


def test_the_same_call_id_asked_again_gets_the_first_reservation_back(caller):
    first = reservations.reserve(hold(caller, "retry@pbx", max_calls=1))
    again = reservations.reserve(hold(caller, "retry@pbx", max_calls=1))
    assert again == first  # same id, time, money, and the same view of the account before it
    assert Reservation.objects.count() == 1
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == first.amount

    # Once released, the Call-ID is a new call.
    reservations.release(first.reservation_id, outcome=FAILED)
    fresh = reservations.reserve(hold(caller, "retry@pbx", max_calls=1))
    assert fresh.reservation_id != first.reservation_id
    assert_reserved_is_the_sum_of_active_reservations(caller)


def test_a_call_the_account_pays_in_full_takes_the_short_way_with_the_same_grant(caller):
    # 1.00 at 0.01 a second pays 100 s: a ceiling of 60 s is paid in full (the short way,
    # which does not read the account), 100 s is not (the long way reads it).
    whole = reservations.reserve(hold(caller, "whole@pbx", ceiling=60))
    assert (whole.seconds, whole.amount, whole.available, whole.live_calls) == (
        60,
        Decimal("0.60"),
        None,
        None,
    )
    rest = reservations.reserve(hold(caller, "rest@pbx", ceiling=60))
    assert (rest.seconds, rest.amount, rest.available, rest.live_calls) == (
        40,
        Decimal("0.40"),
        Decimal("0.40"),
        1,
    )
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("1.00")
    with pytest.raises(InsufficientFunds):
        reservations.reserve(hold(caller, "none@pbx", ceiling=60))


def test_a_retried_call_id_without_a_call_limit_gets_its_reservation_back(caller):
    first = reservations.reserve(hold(caller, "again@pbx", ceiling=60))
    again = reservations.reserve(hold(caller, "again@pbx", ceiling=60))
    assert (again.reservation_id, again.seconds, again.amount) == (first.reservation_id, 60, Decimal("0.60"))
    assert Reservation.objects.count() == 1
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.60")


def test_the_call_id_is_matched_within_one_account(caller):
    other = customer("Other caller")
    mine = reservations.reserve(hold(caller, "same@pbx", ceiling=10))
    theirs = reservations.reserve(hold(other, "same@pbx", ceiling=10))
    assert mine.reservation_id != theirs.reservation_id
    assert_reserved_is_the_sum_of_active_reservations(caller)
    assert_reserved_is_the_sum_of_active_reservations(other)


def test_a_call_over_the_live_call_limit_is_refused_and_holds_nothing(caller):
    reservations.reserve(hold(caller, "a", ceiling=10, max_calls=2))
    b = reservations.reserve(hold(caller, "b", ceiling=10, max_calls=2))
    with pytest.raises(TooManyCalls, match=r"2 live calls, the limit is 2\."):
        reservations.reserve(hold(caller, "c", ceiling=10, max_calls=2))
    assert Reservation.objects.count() == 2
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.20")

    reservations.release(b.reservation_id, outcome=FAILED)
    assert reservations.reserve(hold(caller, "c", ceiling=10, max_calls=2)).live_calls == 1
    # No limit, no refusal.
    assert reservations.reserve(hold(caller, "d", ceiling=10)).reservation_id is not None
    assert Reservation.objects.active().count() == 3


def test_too_many_calls_is_checked_before_money(db):
    broke = customer("Broke", balance="0")
    reservations.reserve(hold(broke, "free", tariff=Tariff(Decimal(0)), ceiling=10, max_calls=1))
    with pytest.raises(TooManyCalls):
        reservations.reserve(hold(broke, "paid", max_calls=1))


def test_a_postpaid_account_spends_its_credit_limit_and_a_prepaid_one_does_not(db):
    postpaid = customer("Postpaid", balance="0", account_mode="postpaid", credit_limit=Decimal("5.00"))
    grant = reservations.reserve(hold(postpaid, "p1", ceiling=86400))
    assert (grant.seconds, grant.amount, grant.available) == (500, Decimal("5"), Decimal("5"))
    with pytest.raises(InsufficientFunds):
        reservations.reserve(hold(postpaid, "p2"))

    billing.post_payment(postpaid.account, actor=SYSTEM, amount=Decimal("1.00"))
    assert reservations.reserve(hold(postpaid, "p3")).seconds == 100
    billing.post_adjustment(postpaid.account, actor=SYSTEM, amount=Decimal("-2.00"), reason="call charges")
    with pytest.raises(InsufficientFunds):
        reservations.reserve(hold(postpaid, "p4"))  # 5 + 1 - 2 - 6 held: nothing left
    assert_reserved_is_the_sum_of_active_reservations(postpaid)

    prepaid = customer("Prepaid", balance="1.00")
    # A credit limit written on a prepaid account (the form refuses it) is not money.
    Account.objects.filter(peer=prepaid).update(credit_limit=Decimal("100"))
    assert reservations.reserve(hold(prepaid, "q1", ceiling=86400)).seconds == 100


def test_a_customer_without_an_account_has_no_money(caller):
    orphan = Hold(
        account_id=987654, customer_id=caller.pk, call_id="x", tariff=PER_SECOND, ceiling=60, grace=60
    )
    with pytest.raises(InsufficientFunds, match="no account"):
        reservations.reserve(orphan)
    with pytest.raises(InsufficientFunds, match="no account"):
        reservations.estimate(orphan)


def test_an_estimate_is_what_a_reservation_would_grant_and_writes_nothing(caller):
    reservations.reserve(hold(caller, "live", ceiling=40, max_calls=3))
    estimated = reservations.estimate(hold(caller, "next", tariff=PER_MINUTE, max_calls=3))
    assert estimated.reservation_id is None
    assert Reservation.objects.count() == 1
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.40")

    granted = reservations.reserve(hold(caller, "next", tariff=PER_MINUTE, max_calls=3))
    assert (
        (estimated.seconds, estimated.amount, estimated.available, estimated.live_calls)
        == (
            granted.seconds,
            granted.amount,
            granted.available,
            granted.live_calls,
        )
        == (60, Decimal("0.60"), Decimal("0.60"), 1)
    )

    with pytest.raises(InsufficientFunds):
        reservations.estimate(hold(caller, "more"))
    with pytest.raises(TooManyCalls):
        reservations.estimate(hold(caller, "more", max_calls=2))


def test_a_release_gives_the_money_back_once(caller):
    grant = reservations.reserve(hold(caller, "c1"))
    assert account_of(caller).available == Decimal("0")
    at = timezone.now()

    assert reservations.release(grant.reservation_id, outcome=FAILED, now=at) is True
    row = Reservation.objects.get(pk=grant.reservation_id)
    assert (row.released_at, row.outcome, row.is_active) == (at, FAILED, False)
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0")
    assert account_of(caller).available == Decimal("1.00")

    assert reservations.release(grant.reservation_id, outcome=Reservation.Outcome.EXPIRED) is False
    row.refresh_from_db()
    assert (row.released_at, row.outcome) == (at, FAILED)  # the first release stands
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0")
    assert reservations.release(987654, outcome=FAILED) is False


def test_release_call_releases_the_active_reservations_of_a_call_id(caller):
    other = customer("Other caller")
    reservations.reserve(hold(caller, "shared@pbx", ceiling=10))
    reservations.reserve(hold(other, "shared@pbx", ceiling=10))
    kept = reservations.reserve(hold(caller, "kept@pbx", ceiling=10))

    assert reservations.release_call("shared@pbx", customer_id=other.pk, outcome=FAILED) == 1
    assert assert_reserved_is_the_sum_of_active_reservations(other) == 0
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.20")
    assert reservations.release_call("shared@pbx", outcome=FAILED) == 1
    assert reservations.release_call("shared@pbx", outcome=FAILED) == 0
    assert reservations.release_call("unknown@pbx", outcome=FAILED) == 0
    assert list(Reservation.objects.active().values_list("pk", flat=True)) == [kept.reservation_id]
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.10")


def test_reservations_of_calls_that_outlived_their_grant_and_grace_expire_once(caller):
    start = timezone.now()
    short = reservations.reserve(hold(caller, "short", ceiling=30, grace=60), now=start)  # ends at +90 s
    long = reservations.reserve(hold(caller, "long", ceiling=60, grace=60), now=start)  # ends at +120 s
    failed = reservations.reserve(hold(caller, "failed", ceiling=10, grace=0), now=start)
    reservations.release(failed.reservation_id, outcome=FAILED)

    assert reservations.expire_reservations(now=start + timedelta(seconds=90)) == 0  # not before the end
    assert reservations.expire_reservations(now=start + timedelta(seconds=91)) == 1
    row = Reservation.objects.get(pk=short.reservation_id)
    assert (row.outcome, row.released_at) == (Reservation.Outcome.EXPIRED, start + timedelta(seconds=91))
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.60")

    later = start + timedelta(hours=1)
    assert reservations.expire_reservations(now=later) == 1
    assert reservations.expire_reservations(now=later) == 0
    assert Reservation.objects.get(pk=long.reservation_id).outcome == Reservation.Outcome.EXPIRED
    assert Reservation.objects.get(pk=failed.reservation_id).outcome == FAILED
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == 0


def test_expiry_works_in_batches_oldest_first(caller):
    start = timezone.now()
    grants = [
        reservations.reserve(hold(caller, f"c{n}", ceiling=10 + n, grace=0), now=start) for n in range(5)
    ]
    assert reservations.expire_reservations(now=start + timedelta(hours=1), limit=2) == 2
    expired = set(
        Reservation.objects.filter(outcome=Reservation.Outcome.EXPIRED).values_list("pk", flat=True)
    )
    assert expired == {grants[0].reservation_id, grants[1].reservation_id}
    assert reservations.expire_reservations(now=start + timedelta(hours=1)) == 3
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == 0


def test_charging_a_calls_cdr_releases_its_reservation(caller, unrated_call):
    node = NodeFactory(name="node1")
    grant = reservations.reserve(hold(caller, "rated@pbx"))
    other = reservations.reserve(hold(customer("Other caller"), "rated@pbx", ceiling=10))
    unrated_call(caller, "0.25", node=node, call_id="rated@pbx")

    rating.rate_batch()

    assert Reservation.objects.get(pk=grant.reservation_id).outcome == Reservation.Outcome.RATED
    assert Reservation.objects.get(pk=other.reservation_id).is_active  # another customer's call
    account = account_of(caller)
    assert (account.balance, account.reserved, account.available) == (
        Decimal("0.75"),
        Decimal("0"),
        Decimal("0.75"),
    )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 5), st.integers(10, 400)),
        st.tuples(st.just("release"), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("expire"), st.integers(0, 1000), st.just(0)),
    ),
    max_size=15,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=operations)
def test_reserved_is_the_sum_of_active_reservations_after_every_operation(db, operations):
    # Each example gets its own customer: the test's transaction spans all examples.
    peer = customer(f"Caller {Peer.objects.count()}", balance="2.00")
    start = timezone.now()
    tariff = Tariff(Decimal("0.0137"), Decimal("0.0003"), min_seconds=30, increment_seconds=6)
    for operation, number, value in operations:
        if operation == "reserve":
            with contextlib.suppress(InsufficientFunds, TooManyCalls):
                reservations.reserve(
                    hold(peer, f"call-{number}", tariff=tariff, ceiling=value, grace=30, max_calls=4),
                    now=start,
                )
        elif operation == "release":
            reservations.release_call(f"call-{number}", customer_id=peer.pk, outcome=FAILED)
        else:
            reservations.expire_reservations(now=start + timedelta(seconds=value))
        reserved = assert_reserved_is_the_sum_of_active_reservations(peer)
        account = account_of(peer)
        assert 0 <= reserved <= account.balance
        assert Reservation.objects.active().filter(account=account).count() <= 4
