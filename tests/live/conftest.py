"""Calls in progress, CDRs and alerts of the cast's customers, written as their writers would."""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import Reservation
from apps.fraud.models import Alert

_ids = itertools.count(1)


def reserve(
    customer,
    *,
    node=None,
    caller="100",
    callee="200",
    destination="Somewhere",
    answered=False,
    at=None,
    **extra,
):
    """An open reservation of `customer`, as call control leaves one for a call in progress."""
    at = at or timezone.now()
    return Reservation.objects.create(
        account=customer.account,
        customer=customer,
        node=node,
        call_id=f"live-call-{next(_ids)}",
        amount=Decimal("1"),
        max_duration=600,
        caller=caller,
        callee=callee,
        destination=destination,
        created_at=at,
        expires_at=at + timedelta(minutes=15),
        answered_at=at if answered else None,
        **extra,
    )


def alert(*, peer=None, reseller=None, subject="Burst", at=None):
    """An alert in force about `peer` (its reseller's staff see it) or about the operator's own."""
    at = at or timezone.now()
    return Alert.objects.create(
        kind="burst",
        effect="warning",
        peer=peer,
        reseller=reseller if reseller is not None else (peer.reseller if peer is not None else None),
        subject=subject,
        measured=Decimal(10),
        window_minutes=5,
        started_at=at,
        last_seen_at=at,
    )


@pytest.fixture
def traffic(cast):
    """Two calls of customer A (one answered), one of B, one of the operator's customer, an alert each."""
    now = timezone.now()
    calls = {
        "a1": reserve(
            cast.a.customer,
            node=cast.node,
            caller="111A",
            callee="4915100000001",
            answered=True,
            at=now - timedelta(seconds=30),
        ),
        "a2": reserve(
            cast.a.customer,
            node=cast.node,
            caller="112A",
            callee="4915100000002",
            at=now - timedelta(seconds=2),
        ),
        "b1": reserve(
            cast.b.customer,
            node=cast.node,
            caller="221B",
            callee="4479000000009",
            answered=True,
            at=now - timedelta(seconds=40),
        ),
        "op": reserve(
            cast.operator_customer,
            node=cast.node,
            caller="331O",
            callee="3312345678",
            at=now - timedelta(seconds=3),
        ),
    }
    alerts = {
        "a": alert(peer=cast.a.customer, subject="Burst of Customer A"),
        "b": alert(peer=cast.b.customer, subject="Burst of Customer B"),
        "op": alert(subject="SIP brute force from 203.0.113.9"),
    }
    return calls, alerts
