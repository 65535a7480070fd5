"""Origination control: a customer whose calls burst far above its own baseline, who calls
high-cost destinations it never called, or who scans sequential numbers is suspended and
its live calls are ended on their nodes; a customer behaving as usual is left alone.

The nodes' MI is a server on loopback answering with OpenSIPS's recorded replies
(tests/engines); the live calls are reservations as call control writes them.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django_q.models import OrmQ

from apps.billing.models import Reservation
from apps.cdr.models import Cdr
from apps.fraud import services
from apps.fraud.controllers import origination, run_all
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.factories import make_peer, make_reseller

SEQUENCE = itertools.count(1)


def cdr(customer: Peer, at, *, callee="33612345678", seconds=60, destination="France", cost="0.0120") -> Cdr:
    answered = seconds > 0
    return Cdr(
        call_id=f"o{next(SEQUENCE)}@pbx",
        customer=customer,
        destination=destination,
        callee=callee,
        created_at=at,
        answered_at=at if answered else None,
        ended_at=at + timedelta(seconds=seconds),
        duration_ms=seconds * 1000,
        billable_seconds=seconds,
        sip_code=200 if answered else 486,
        sell_cost=Decimal(cost) if answered else None,
        rating_state=Cdr.RatingState.RATED,
    )


def live_call(customer: Peer, call_id: str, *, node, at, destination="France", price="0.01") -> Reservation:
    """A call up now, as call control reserved it."""
    return Reservation.objects.create(
        account=customer.account,
        customer=customer,
        node=node,
        call_id=call_id,
        amount=Decimal("3.60"),
        max_duration=3600,
        destination=destination,
        sell_tariff={"prefix": "33", "price": price, "fee": "0", "min": 1, "inc": 1, "free": 0},
        created_at=at,
        expires_at=at + timedelta(hours=2),
        answered_at=at,
    )


def usual_traffic(customer: Peer, now, per_day: int, days: int = 7) -> None:
    """`per_day` calls in the minute before this time of day, on each of the previous days."""
    Cdr.objects.bulk_create(
        cdr(customer, now - timedelta(days=day, seconds=50 - n))
        for day in range(1, days + 1)
        for n in range(per_day)
    )


def controller(**fields) -> Controller:
    values = {
        "name": "Calls burst",
        "kind": Kind.BURST,
        "metric": Metric.CALLS,
        "threshold": Decimal(10),
        "window_minutes": 1,
        "baseline_days": 7,
        "action": Action.BLOCK,
        "block_minutes": 60,
    }
    values.update(fields)
    rule = Controller(**values)
    rule.full_clean()
    rule.save()
    return rule


def suspended(peer: Peer) -> bool:
    return Peer.objects.get(pk=peer.pk).suspended_at is not None


def emails() -> list:
    return [row for row in OrmQ.objects.all() if row.task["func"] == "apps.fraud.notify.send_alert_email"]


# --- Burst ----------------------------------------------------------------------------------


def test_a_customer_sending_ten_times_its_baseline_is_suspended_and_its_live_calls_ended(
    node, mi, now, django_capture_on_commit_callbacks
):
    reseller = make_reseller("Reseller A")
    hacked, steady = make_peer("Hacked PBX", reseller=reseller), make_peer("Steady")
    usual_traffic(hacked, now, per_day=2)
    usual_traffic(steady, now, per_day=2)
    # The last minute: 17 calls over and 3 up now, 20 in all against a baseline of 2.
    Cdr.objects.bulk_create(cdr(hacked, now - timedelta(seconds=55 - n)) for n in range(17))
    for n in range(3):
        live_call(hacked, f"live{n}@pbx", node=node, at=now - timedelta(seconds=5 - n))
    live_call(steady, "steady@pbx", node=node, at=now - timedelta(seconds=3))
    Cdr.objects.bulk_create(cdr(steady, now - timedelta(seconds=20)) for _ in range(2))
    controller()

    with django_capture_on_commit_callbacks(execute=True):
        result = run_all(now=now)

    alert = Alert.objects.get()
    assert result["raised"] == [alert.pk] and result["calls_ended"] == 3
    assert (alert.kind, alert.effect, alert.peer, alert.reseller) == (
        Kind.BURST,
        Alert.Effect.SUSPEND_PEER,
        hacked,
        reseller,
    )
    assert (alert.measured, alert.threshold, alert.attempts) == (Decimal(20), Decimal(20), 20)
    assert suspended(hacked) and not suspended(steady)
    assert Peer.objects.get(pk=hacked.pk).suspended_reason.startswith("Fraud control:")
    assert [params["dialog_id"] for params in mi.calls("dlg_end_dlg")] == [
        "live0@pbx",
        "live1@pbx",
        "live2@pbx",
    ]
    assert set(Reservation.objects.filter(customer=hacked).values_list("cut_result", flat=True)) == {"ended"}
    assert Reservation.objects.get(customer=steady).cut_at is None
    assert "Calls 20 in the last 1 minutes (10.0 times) against a baseline of 2" in alert.detail
    assert "Live calls: 3 ended, 0 already over, 0 refused, 0 left" in alert.detail
    assert len(emails()) == 1

    # The next round: the same episode, no second e-mail, no call asked to end twice.
    with django_capture_on_commit_callbacks(execute=True):
        result = run_all(now=now + timedelta(seconds=5))
    assert result["raised"] == [] and result["refreshed"] == [alert.pk]
    assert Alert.objects.count() == 1 and len(emails()) == 1
    assert len(mi.calls("dlg_end_dlg")) == 3
    alert.refresh_from_db()
    assert "Live calls: 3 ended" in alert.detail  # what the hang-up did stays on the alert


def test_a_call_that_slipped_in_after_the_suspension_is_ended_by_the_next_round(node, mi, now):
    pbx = make_peer("PBX")
    Cdr.objects.bulk_create(cdr(pbx, now - timedelta(seconds=40)) for _ in range(30))
    controller(floor=Decimal(25))
    run_all(now=now)
    assert suspended(pbx) and not mi.calls("dlg_end_dlg")

    live_call(pbx, "late@pbx", node=node, at=now + timedelta(seconds=10))
    later = now + timedelta(minutes=2)
    result = run_all(now=later)

    assert result["calls_ended"] == 1
    assert [params["dialog_id"] for params in mi.calls("dlg_end_dlg")] == ["late@pbx"]


@pytest.mark.parametrize(
    ("floor", "calls", "caught"),
    [
        (None, 40, False),  # no history and no floor: nothing to judge against
        (Decimal(50), 40, False),  # under the floor
        (Decimal(30), 40, True),
    ],
)
def test_a_customer_with_no_history_is_judged_against_the_floor(db, now, floor, calls, caught):
    fresh = make_peer("Fresh")
    Cdr.objects.bulk_create(cdr(fresh, now - timedelta(seconds=30)) for _ in range(calls))
    controller(floor=floor)

    run_all(now=now)

    assert suspended(fresh) is caught


def test_a_spend_burst_counts_rated_calls_and_what_live_calls_used_so_far(node, mi, now):
    pbx = make_peer("PBX")
    usual_traffic(pbx, now, per_day=1)  # 0.0120 a day
    Cdr.objects.bulk_create(cdr(pbx, now - timedelta(seconds=50), cost="0.05") for _ in range(2))
    # 3.60 reserved for an hour, 10 s of it used: 0.01.
    live_call(pbx, "up@pbx", node=node, at=now - timedelta(seconds=10))
    controller(metric=Metric.SPEND, threshold=Decimal(5))

    run_all(now=now)

    alert = Alert.objects.get()
    assert alert.measured == Decimal("0.11") and alert.threshold == Decimal("0.06")
    assert suspended(pbx)


def test_a_warning_suspends_nobody_and_ends_no_call(node, mi, now):
    pbx = make_peer("PBX")
    Cdr.objects.bulk_create(cdr(pbx, now - timedelta(seconds=40)) for _ in range(30))
    live_call(pbx, "up@pbx", node=node, at=now - timedelta(seconds=5))
    controller(floor=Decimal(25), action=Action.WARN)

    run_all(now=now)

    assert Alert.objects.get().effect == Alert.Effect.WARNING
    assert not suspended(pbx) and not mi.requests


def test_a_resellers_controller_watches_only_its_own_customers(db, now):
    mine, other = make_reseller("Reseller A"), make_reseller("Reseller B")
    ours, theirs = make_peer("Ours", reseller=mine), make_peer("Theirs", reseller=other)
    for peer in (ours, theirs):
        Cdr.objects.bulk_create(cdr(peer, now - timedelta(seconds=40)) for _ in range(30))
    controller(reseller=mine, floor=Decimal(25))

    run_all(now=now)

    assert suspended(ours) and not suspended(theirs)


def test_a_customer_a_person_resumed_is_judged_only_on_the_calls_after(db, now, django_user_model):
    operator = Scope.of_user(django_user_model.objects.create_superuser("op", "op@example.com", "x"))
    pbx = make_peer("PBX")
    Cdr.objects.bulk_create(cdr(pbx, now - timedelta(seconds=40)) for _ in range(30))
    controller(floor=Decimal(25), window_minutes=10)
    run_all(now=now)

    services.undo_alert(Alert.objects.get(), actor=operator, reason="their own test calls", now=now)
    assert not suspended(pbx)
    run_all(now=now + timedelta(minutes=2))
    assert not suspended(pbx) and Alert.objects.count() == 1


# --- New high-cost destination --------------------------------------------------------------


def new_destination_controller(**fields) -> Controller:
    return controller(
        name="New premium destination",
        kind=Kind.NEW_DESTINATION,
        metric="",
        threshold=Decimal("1.00"),
        min_count=3,
        window_minutes=30,
        baseline_days=7,
        **fields,
    )


def test_calls_to_a_high_cost_destination_never_called_before_suspend_the_customer(node, mi, now):
    hacked, regular = make_peer("Hacked PBX"), make_peer("Regular")
    usual_traffic(hacked, now, per_day=2)  # France only
    # Regular called the satellite service three days ago: not new for it.
    Cdr.objects.bulk_create([cdr(regular, now - timedelta(days=3), destination="Satellite", cost="5.00")])
    for peer in (hacked, regular):
        # 5.00 a minute: two rated calls and one up now.
        Cdr.objects.bulk_create(
            cdr(peer, now - timedelta(minutes=10 - n), destination="Satellite", cost="5.00") for n in range(2)
        )
        live_call(
            peer,
            f"sat-{peer.pk}@pbx",
            node=node,
            at=now - timedelta(minutes=1),
            destination="Satellite",
            price="5.00",
        )
    new_destination_controller()

    run_all(now=now)

    alert = Alert.objects.get()
    assert (alert.kind, alert.peer, alert.measured, alert.attempts) == (
        Kind.NEW_DESTINATION,
        hacked,
        Decimal(3),
        3,
    )
    assert "Satellite (3 calls at 5/min)" in alert.detail
    assert suspended(hacked) and not suspended(regular)
    assert [params["dialog_id"] for params in mi.calls("dlg_end_dlg")] == [f"sat-{hacked.pk}@pbx"]


def test_a_cheap_new_destination_or_too_few_calls_raise_nothing(node, now):
    pbx = make_peer("PBX")
    Cdr.objects.bulk_create(
        cdr(pbx, now - timedelta(minutes=5 - n), destination="Spain", cost="0.02") for n in range(5)
    )
    Cdr.objects.bulk_create(
        cdr(pbx, now - timedelta(minutes=5 - n), destination="Satellite", cost="5.00") for n in range(2)
    )
    new_destination_controller()

    run_all(now=now)

    assert not Alert.objects.exists()


def test_the_price_of_unanswered_calls_comes_from_the_tariff_their_reservation_carried(node, now):
    pbx = make_peer("PBX")
    rows = [cdr(pbx, now - timedelta(minutes=5 - n), destination="Satellite", seconds=0) for n in range(3)]
    Cdr.objects.bulk_create(rows)
    last = max(row.call_id for row in rows)
    Reservation.objects.create(
        account=pbx.account,
        customer=pbx,
        node=node,
        call_id=last,
        amount=Decimal("5.00"),
        max_duration=60,
        destination="Satellite",
        sell_tariff={"prefix": "8816", "price": "4.50", "fee": "0", "min": 1, "inc": 1, "free": 0},
        created_at=now - timedelta(minutes=3),
        expires_at=now - timedelta(minutes=2),
        released_at=now - timedelta(minutes=2),
    )
    new_destination_controller(action=Action.WARN)

    run_all(now=now)

    assert "Satellite (3 calls at 4.5/min)" in Alert.objects.get().detail


# --- Sequential numbers ---------------------------------------------------------------------


def sequential_controller(**fields) -> Controller:
    return controller(
        name="Number scan",
        kind=Kind.SEQUENTIAL,
        metric="",
        threshold=None,
        min_count=5,
        window_minutes=10,
        **fields,
    )


def test_short_calls_to_consecutive_numbers_suspend_the_scanner(db, now):
    scanner, busy, chatty = make_peer("Scanner"), make_peer("Busy"), make_peer("Chatty")
    rows = [
        cdr(scanner, now - timedelta(seconds=60 - n), callee=f"+44207123450{n:02d}", seconds=n % 2)
        for n in range(1, 7)
    ]
    # Busy makes as many short calls, to numbers that are not a run; Chatty calls a run, at length.
    rows += [
        cdr(busy, now - timedelta(seconds=60 - n), callee=f"4420712{n}5001", seconds=0) for n in range(1, 7)
    ]
    rows += [
        cdr(chatty, now - timedelta(seconds=60 - n), callee=f"44207123450{n:02d}", seconds=120)
        for n in range(1, 7)
    ]
    Cdr.objects.bulk_create(rows)
    sequential_controller()

    run_all(now=now)

    alert = Alert.objects.get()
    assert (alert.kind, alert.peer, alert.measured) == (Kind.SEQUENTIAL, scanner, Decimal(6))
    assert "6 consecutive numbers, 4420712345001 to 4420712345006" in alert.detail
    assert suspended(scanner) and not suspended(busy) and not suspended(chatty)


@pytest.mark.parametrize(
    ("numbers", "run"),
    [
        (["1001", "1003", "1002", "1002"], ["1001", "1002", "1003"]),
        (
            ["+44 20 7000 0009", "442070000010", "442070000011"],
            ["442070000009", "442070000010", "442070000011"],
        ),
        (["999", "1000", "1001"], ["1000", "1001"]),  # a different length is another number plan
        (["", "abc"], []),
    ],
)
def test_the_longest_run_of_consecutive_numbers(numbers, run):
    assert origination.longest_run(numbers) == run


def test_the_live_calls_cdrs_are_read_by_fewer_call_ids_than_mariadb_guesses_at(node, now):
    """Past eq_range_index_dive_limit (200) values MariaDB sizes an IN list from index
    statistics and may scan the whole table instead of the Call-ID index (issue 13): the
    CDRs of a window's live calls are asked for fewer Call-IDs at a time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    customer = make_peer("Busy PBX")
    at = now - timedelta(seconds=30)
    for n in range(450):
        live_call(customer, f"many{n}@pbx", node=node, at=at)
    rated = cdr(customer, at)
    rated.call_id = "many7@pbx"  # its CDR is rated: counted with the CDRs, not as live
    rated.save()

    with CaptureQueriesContext(connection) as queries:
        live = origination._live(controller(), now - timedelta(minutes=1), now, None)

    sizes = [query["sql"].count("@pbx") for query in queries.captured_queries]
    assert sum(sizes) == 450 and max(sizes) < 200
    assert len(live) == 449 and "many7@pbx" not in {row["call_id"] for row in live}
