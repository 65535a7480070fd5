"""Online billing: live calls that their account can no longer pay for are ended through
their node's OpenSIPS, newest first and only as many as needed; the rest are left alone.

The nodes' MI is a server on loopback answering with OpenSIPS's recorded replies
(tests/engines); the engine tests check those replies against a real OpenSIPS.
"""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.billing.services import online, reservations
from apps.billing.services.online import CutReport, calls_to_cut, choose_cuts, cut_overruns, used_so_far
from apps.billing.services.reservations import Hold
from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from tests.engines import DIALOG_NOT_FOUND, OK, OPERATION_FAILED, RecordedMI
from tests.factories import NodeFactory, make_peer

SYSTEM = Scope.system()
PER_SECOND = Tariff(Decimal("0.60"))  # 0.01 a second


@pytest.fixture
def mi(settings):
    with RecordedMI() as server:
        settings.OPENSIPS_MI_URL = server.template
        settings.OPENSIPS_MI_TIMEOUT = 0.5
        yield server


@pytest.fixture
def node(db) -> Node:
    return NodeFactory(name="node1", management_address="127.0.0.1")


@pytest.fixture
def now():
    return timezone.now()


def customer(name: str, balance: str, **kwargs) -> Peer:
    peer = make_peer(name, **kwargs)
    if Decimal(balance) > 0:
        billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal(balance))
    return peer


def call(peer: Peer, call_id: str, *, node: Node, started, seconds: int = 200) -> Reservation:
    """A live call of `peer` granted `seconds` (0.01 a second) from `started`."""
    grant = reservations.reserve(
        Hold(
            account_id=peer.account.pk,
            customer_id=peer.pk,
            call_id=call_id,
            tariff=PER_SECOND,
            ceiling=seconds,
            grace=120,
            node_id=node.pk,
        ),
        now=started,
    )
    return Reservation.objects.get(pk=grant.reservation_id)


def refund(peer: Peer, amount: str) -> None:
    # A debit of money never paid in: past the refund cap, which the operator may lift.
    account = Account.objects.get(peer=peer)
    billing.post_refund(account, actor=SYSTEM, amount=Decimal(amount), allow_over_refund=True)


def four_calls(peer: Peer, node: Node, now) -> None:
    """c1..c4 of 2.00 each (200 s), started 40, 30, 20 and 10 seconds ago: 8.00 held."""
    for n, age in enumerate((40, 30, 20, 10), start=1):
        call(peer, f"c{n}@pbx", node=node, started=now - timedelta(seconds=age))


def cuts() -> dict[str, tuple[bool, str]]:
    """Call-ID: (cut, result) of every reservation."""
    return {
        row.call_id: (row.cut_at is not None, row.cut_result)
        for row in Reservation.objects.order_by("call_id")
    }


def ended(mi: RecordedMI) -> list[str]:
    return [params["dialog_id"] for params in mi.calls("dlg_end_dlg")]


# --- Which calls ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refunded", "cut"),
    [
        ("2.00", []),  # available exactly zero: every call is paid for
        ("2.50", ["c4@pbx"]),  # -0.50: ending c4 (0.10 used) frees 1.90
        ("5.00", ["c4@pbx", "c3@pbx"]),  # -3.00: c4 frees 1.90, c3 another 1.80
        ("9.00", ["c4@pbx", "c3@pbx", "c2@pbx", "c1@pbx"]),  # 1.00 left: only what was used fits
        ("10.00", ["c4@pbx", "c3@pbx", "c2@pbx", "c1@pbx"]),  # nothing left: every call
    ],
)
def test_after_a_refund_the_newest_calls_are_cut_until_the_rest_fit(node, mi, now, refunded, cut):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, refunded)

    assert [row.call_id for row in calls_to_cut(now)] == cut
    report = cut_overruns(now)

    assert report == CutReport(accounts_over=1 if cut else 0, cut=len(cut))
    assert ended(mi) == cut
    assert cuts() == {
        f"c{n}@pbx": (f"c{n}@pbx" in cut, "ended" if f"c{n}@pbx" in cut else "") for n in range(1, 5)
    }
    # A cut call's money stays held until its CDR is rated.
    assert Reservation.objects.active().count() == 4
    assert Account.objects.get(peer=peer).reserved == Decimal("8.00")


def test_a_second_run_cuts_nothing_new_however_late_it_comes(node, mi, now):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, "5.00")
    assert cut_overruns(now) == CutReport(accounts_over=1, cut=2)

    # c1 and c2 (4.00) plus what c3 and c4 used before they were cut (0.30) fit in 5.00,
    # and stay fitting: a cut call's use is counted up to its cut, not up to now.
    for later in (timedelta(seconds=5), timedelta(minutes=1), timedelta(minutes=3)):
        assert calls_to_cut(now + later) == []
        assert cut_overruns(now + later) == CutReport()
    assert ended(mi) == ["c4@pbx", "c3@pbx"]


def test_a_cut_is_recorded_with_its_time_and_audited(node, mi, now):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, "2.50")
    cut_overruns(now)

    c4 = Reservation.objects.get(call_id="c4@pbx")
    assert (c4.cut_at, c4.cut_result, c4.released_at) == (now, "ended", None)
    entry = AuditEntry.objects.get(action="reservation.cut")
    assert (entry.object_id, entry.data) == (
        str(c4.pk),
        {"call_id": "c4@pbx", "node": "node1", "result": "ended"},
    )


def test_an_account_in_good_standing_is_never_touched(node, mi, now):
    good = customer("Good", "10.00")
    four_calls(good, node, now)  # 2.00 still available
    postpaid = customer("On credit", "0", account_mode="postpaid", credit_limit=Decimal("10"))
    call(postpaid, "credit@pbx", node=node, started=now - timedelta(seconds=10))
    refund(postpaid, "3.00")  # balance -3.00, credit 10.00, 2.00 held: 5.00 available
    customer("In debt, no calls", "0.00")
    refund(Peer.objects.get(name="In debt, no calls"), "1.00")
    bad = customer("Bad", "1.00")
    call(bad, "bad@pbx", node=node, started=now - timedelta(seconds=10), seconds=100)
    refund(bad, "0.50")

    assert cut_overruns(now) == CutReport(accounts_over=1, cut=1)
    assert ended(mi) == ["bad@pbx"]
    assert not Reservation.objects.exclude(call_id="bad@pbx").filter(cut_at__isnull=False).exists()


def test_finding_no_overrun_is_one_query_and_finding_some_is_two(node, mi, now, django_assert_num_queries):
    for n in range(5):
        peer = customer(f"Customer {n}", "10.00")
        four_calls(peer, node, now)
    with django_assert_num_queries(1):
        assert calls_to_cut(now) == []
    with django_assert_num_queries(1):
        assert cut_overruns(now) == CutReport()

    for peer in Peer.objects.filter(name__in=["Customer 1", "Customer 3"]):
        refund(peer, "5.00")
    with django_assert_num_queries(2):
        chosen = calls_to_cut(now)
        assert [(row.customer.name, row.call_id, row.node.name) for row in chosen] == [
            ("Customer 1", "c4@pbx", "node1"),
            ("Customer 1", "c3@pbx", "node1"),
            ("Customer 3", "c4@pbx", "node1"),
            ("Customer 3", "c3@pbx", "node1"),
        ]


# --- What the engine says ---------------------------------------------------------------------


def test_a_call_the_engine_no_longer_knows_is_recorded_gone(node, mi, now):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, "5.00")
    mi.replies["dlg_end_dlg"] = lambda params: DIALOG_NOT_FOUND if params["dialog_id"] == "c4@pbx" else OK

    assert cut_overruns(now) == CutReport(accounts_over=1, cut=1, gone=1)
    assert cuts()["c4@pbx"] == (True, "gone")
    assert cuts()["c3@pbx"] == (True, "ended")
    assert cut_overruns(now + timedelta(seconds=5)) == CutReport()


def test_a_call_the_engine_refuses_to_end_is_recorded_and_the_next_newest_goes_next_run(node, mi, now):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, "2.50")
    mi.replies["dlg_end_dlg"] = lambda params: OPERATION_FAILED if params["dialog_id"] == "c4@pbx" else OK

    assert cut_overruns(now) == CutReport(accounts_over=1, failed=1)
    assert cuts()["c4@pbx"] == (True, "error: MI dlg_end_dlg: 500 Operation failed")

    # c4 may still be up: it counts for all its money, and is not asked again.
    later = now + timedelta(seconds=5)
    assert cut_overruns(later) == CutReport(accounts_over=1, cut=1)
    assert ended(mi) == ["c4@pbx", "c3@pbx"]
    assert cuts()["c3@pbx"] == (True, "ended")


def test_an_engine_that_is_down_leaves_its_calls_for_the_next_run(node, mi, now, caplog):
    # Nothing listens on the MI port at node2's address.
    node2 = NodeFactory(name="node2", management_address="127.0.0.2")
    peer = customer("Harbor", "10.00")
    four_calls(peer, node2, now)
    refund(peer, "5.00")

    with caplog.at_level(logging.WARNING, logger="apps.billing.services.online"):
        report = cut_overruns(now)

    # The first call found the node down; the second was not tried against it in this run.
    assert report == CutReport(accounts_over=1, failed=2)
    assert all(not was_cut for was_cut, _result in cuts().values())
    [warning] = caplog.records
    assert "node node2 unreachable" in warning.getMessage()
    assert "c4@pbx" in warning.getMessage()
    assert ended(mi) == []

    Node.objects.filter(pk=node2.pk).update(management_address="127.0.0.1")  # back up
    later = now + timedelta(seconds=5)
    assert cut_overruns(later) == CutReport(accounts_over=1, cut=2)
    assert ended(mi) == ["c4@pbx", "c3@pbx"]


def test_one_node_down_does_not_stop_the_calls_on_the_others(node, mi, now):
    node2 = NodeFactory(name="node2", management_address="127.0.0.2")
    up = customer("On node1", "1.00")
    call(up, "up@pbx", node=node, started=now - timedelta(seconds=10), seconds=100)
    refund(up, "0.50")
    down = customer("On node2", "1.00")
    call(down, "down@pbx", node=node2, started=now - timedelta(seconds=10), seconds=100)
    refund(down, "0.50")

    assert cut_overruns(now) == CutReport(accounts_over=2, cut=1, failed=1)
    assert ended(mi) == ["up@pbx"]
    assert cuts() == {"down@pbx": (False, ""), "up@pbx": (True, "ended")}


# --- Runs that race -------------------------------------------------------------------------


def test_a_call_claimed_by_another_run_is_neither_asked_again_nor_replaced(node, mi, now):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, "2.50")
    # Another run has claimed c4 and is waiting for the engine's answer.
    Reservation.objects.filter(call_id="c4@pbx").update(cut_at=now, cut_result="")

    assert cut_overruns(now + timedelta(seconds=1)) == CutReport()
    assert ended(mi) == []

    # That run died before recording the answer: c4 may still be up, so after a while it
    # counts for all its money again and the next newest call is cut (c4 is not re-sent).
    stale = now + online.STALE_CLAIM + timedelta(seconds=1)
    assert cut_overruns(stale) == CutReport(accounts_over=1, cut=1)
    assert ended(mi) == ["c3@pbx"]


def test_a_call_released_after_it_was_chosen_is_not_cut(node, mi, now):
    peer = customer("Harbor", "10.00")
    four_calls(peer, node, now)
    refund(peer, "2.50")
    [chosen] = calls_to_cut(now)
    reservations.release(chosen.pk, outcome=Reservation.Outcome.RATED)  # its CDR was rated meanwhile

    assert online.claim_cut(chosen.pk, now) is False


# --- The arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "max_duration", "elapsed", "used"),
    [
        ("2.00", 200, 10, "0.100000"),
        ("2.00", 200, 10.2, "0.110000"),  # a started second counts
        ("1.00", 3, 1, "0.333334"),  # rounded up, never down
        ("2.00", 200, 0, "0"),
        ("2.00", 200, -5, "0"),  # another node's clock ahead of ours
        ("2.00", 200, 250, "2.00"),  # never more than was held
        ("0.50", 0, 10, "0.50"),
    ],
)
def test_a_calls_use_so_far_is_its_share_of_the_granted_seconds_rounded_up(
    amount, max_duration, elapsed, used
):
    assert used_so_far(Decimal(amount), max_duration, timedelta(seconds=elapsed)) == Decimal(used)


def test_calls_without_a_node_count_but_are_never_chosen(now):
    def live(pk, age, node_id=1):
        return Reservation(
            pk=pk,
            amount=Decimal("2.00"),
            max_duration=200,
            created_at=now - timedelta(seconds=age),
            node_id=node_id,
        )

    over, chosen = choose_cuts(Decimal("3.00"), [live(1, 40), live(2, 10, node_id=None)], now)
    assert over is True
    assert [row.pk for row in chosen] == [1]
