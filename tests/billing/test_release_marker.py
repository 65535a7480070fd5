"""Issue 13: no orphan money. A release that overtakes its reservation, and calls never answered."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, ReleaseMarker, Reservation
from apps.billing.services import reservations
from apps.billing.services.reservations import CallReleased, Hold
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer

FAILED = Reservation.Outcome.FAILED
PER_SECOND = Tariff(Decimal("0.60"))  # 0.01 a second


@pytest.fixture
def caller(db):
    peer = make_peer("Caller")
    billing.post_payment(peer.account, actor=Scope.system(), amount=Decimal("100.00"))
    return peer


@pytest.fixture
def node(db):
    return NodeFactory(name="node1")


def hold(peer, call_id: str, node, **fields) -> Hold:
    values = {"ceiling": 7200, "grace": 120, "node_id": node.pk}
    values.update(fields)
    return Hold(account_id=peer.account.pk, customer_id=peer.pk, call_id=call_id, tariff=PER_SECOND, **values)


def held(peer) -> tuple[Decimal, int]:
    return Account.objects.get(pk=peer.account.pk).reserved, Reservation.objects.active().filter(
        customer=peer
    ).count()


def test_a_release_that_finds_nothing_refuses_the_reservation_that_was_already_asked_for(caller, node):
    asked = timezone.now()
    before = held(caller)

    assert reservations.release_or_mark("late@pbx", node_id=node.pk, outcome=FAILED) == 0
    with pytest.raises(CallReleased):
        reservations.reserve(hold(caller, "late@pbx", node), now=asked)

    assert held(caller) == before
    assert not Reservation.objects.filter(call_id="late@pbx").exists()


def test_a_marker_is_per_node_and_only_about_requests_made_before_it(caller, node):
    other = NodeFactory(name="node2")
    asked = timezone.now()
    reservations.release_or_mark("c@pbx", node_id=node.pk, outcome=FAILED)

    # The same Call-ID through another node is another call.
    elsewhere = reservations.reserve(hold(caller, "c@pbx", other), now=asked)
    assert held(caller)[1] == 1
    reservations.release(elsewhere.reservation_id, outcome=FAILED)
    # A request made after the release (the caller retried) is not refused.
    later = reservations.reserve(hold(caller, "c@pbx", node), now=timezone.now() + timedelta(seconds=1))
    assert later.reservation_id != elsewhere.reservation_id
    assert held(caller)[1] == 1


def test_a_release_that_finds_the_reservation_leaves_no_marker(caller, node):
    reservations.reserve(hold(caller, "c@pbx", node))
    assert reservations.release_or_mark("c@pbx", node_id=node.pk, outcome=FAILED) == 1
    assert not ReleaseMarker.objects.exists()
    assert held(caller) == (0, 0)


def test_markers_are_swept_after_their_life(caller, node):
    now = timezone.now()
    reservations.release_or_mark(
        "old@pbx", node_id=node.pk, outcome=FAILED, now=now - reservations.MARKER_LIFE
    )
    reservations.release_or_mark("new@pbx", node_id=node.pk, outcome=FAILED, now=now)
    reservations.expire_reservations(now=now + timedelta(seconds=1))
    assert list(ReleaseMarker.objects.values_list("call_id", flat=True)) == ["new@pbx"]


def test_an_unanswered_call_expires_after_its_setup_time_plus_margin_not_its_maximum_duration(caller, node):
    start = timezone.now()
    within = reservations.answer_within([8, None], ringing=60, margin=30)
    assert within == 60 + 60 + 30  # each attempt may ring for the ringing limit
    grant = reservations.reserve(hold(caller, "ringing@pbx", node, answer_within=within), now=start)
    assert grant.seconds == 7200

    assert reservations.expire_reservations(now=start + timedelta(seconds=within)) == 0
    assert reservations.expire_reservations(now=start + timedelta(seconds=within + 1)) == 1
    row = Reservation.objects.get(pk=grant.reservation_id)
    assert (row.outcome, row.answered_at) == (Reservation.Outcome.EXPIRED, None)
    assert held(caller) == (0, 0)


def test_an_answered_call_keeps_its_money_for_its_maximum_duration(caller, node):
    start = timezone.now()
    grant = reservations.reserve(hold(caller, "talking@pbx", node, answer_within=150), now=start)
    answered_at = start + timedelta(seconds=20)
    assert reservations.mark_answered(grant.reservation_id, call_id="talking@pbx", grace=120, now=answered_at)
    assert not reservations.mark_answered(
        grant.reservation_id, call_id="talking@pbx", grace=120, now=answered_at
    )

    assert reservations.expire_reservations(now=start + timedelta(hours=1)) == 0
    assert reservations.expire_reservations(now=answered_at + timedelta(seconds=7200 + 120 + 1)) == 1


def test_without_an_answer_deadline_a_reservation_expires_after_its_maximum_duration(caller, node):
    # Until OpenSIPS sends "answered" (docs/CALL_CONTROL.md), call control asks for no deadline.
    start = timezone.now()
    grant = reservations.reserve(hold(caller, "today@pbx", node), now=start)
    assert reservations.expire_reservations(now=start + timedelta(seconds=7200 + 120)) == 0
    assert reservations.expire_reservations(now=start + timedelta(seconds=7200 + 121)) == 1
    assert Reservation.objects.get(pk=grant.reservation_id).outcome == Reservation.Outcome.EXPIRED
