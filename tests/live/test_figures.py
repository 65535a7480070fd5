"""The live figures: pure views over rows keyed by customer, and the scoping matrix over the cast."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.fraud.models import Alert
from apps.live import figures
from apps.live.figures import AlertRow, Audience, CallRow, Quality, Snapshot
from apps.tenancy.scope import Kind, Scope
from tests.factories import CdrFactory

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def call(pk, customer, *, node=1, answered=None, created=None):
    return CallRow(
        pk,
        f"cid-{pk}",
        customer,
        node,
        f"caller-{customer}",
        f"callee-{pk}",
        "Dest",
        created or NOW,
        answered,
    )


CALLS = [
    call(1, 10, answered=NOW - timedelta(seconds=65)),
    call(2, 10),
    call(3, 20, node=2, answered=NOW),
    call(4, 30, node=None),
]


def snapshot():
    return Snapshot(
        at=NOW,
        active=figures.active_of(CALLS),
        calls=CALLS,
        recent={10: 12, 20: 5, 30: 1},
        quality={
            10: {5: Quality(4, 2, 90_000), 15: Quality(10, 5, 300_000), 60: Quality(10, 5, 300_000)},
            20: {5: Quality(6, 6, 60_000), 15: Quality(6, 6, 60_000), 60: Quality(20, 6, 60_000)},
        },
        alerts=[
            AlertRow(1, 100, 10, "about 10", "warning", NOW),
            AlertRow(2, 200, 20, "about 20", "warning", NOW),
            AlertRow(3, None, None, "the operator's", "ban_address", NOW),
            AlertRow(4, 100, None, "reseller 100's address", "ban_address", NOW - timedelta(minutes=1)),
        ],
        nodes={1: "node1", 2: "node2"},
    )


RESELLER_100 = Audience(Kind.RESELLER, reseller_id=100, customers=frozenset({10, 11}))
RESELLER_200 = Audience(Kind.RESELLER, reseller_id=200, customers=frozenset({20}))
CUSTOMER_10 = Audience(Kind.CUSTOMER, reseller_id=100, peer_id=10, customers=frozenset({10}))
OPERATOR = Audience(Kind.OPERATOR, customers=None)


def test_operator_view_sums_every_customer():
    view = figures.view(snapshot(), OPERATOR)
    assert (view["concurrent"], view["answered"], view["ringing"]) == (4, 2, 2)
    assert view["cps"] == "1.8"
    assert view["nodes"] == [
        {"name": "-", "calls": 1},
        {"name": "node1", "calls": 2},
        {"name": "node2", "calls": 1},
    ]
    assert view["quality"]["5"] == {"attempts": 10, "answered": 8, "asr": "80.0", "acd": "19"}
    assert view["quality"]["60"] == {"attempts": 30, "answered": 11, "asr": "36.7", "acd": "33"}
    assert view["alerts"]["count"] == 4
    assert "calls" not in view


def test_reseller_view_holds_only_its_customers_and_its_alerts():
    view = figures.view(snapshot(), RESELLER_100)
    assert (view["concurrent"], view["answered"], view["ringing"]) == (2, 1, 1)
    assert view["cps"] == "1.2"
    assert view["nodes"] == [{"name": "node1", "calls": 2}]
    assert view["quality"]["15"] == {"attempts": 10, "answered": 5, "asr": "50.0", "acd": "60"}
    assert [a["subject"] for a in view["alerts"]["latest"]] == ["about 10", "reseller 100's address"]
    text = json.dumps(view)
    for foreign in ("about 20", "the operator's", "node2", "caller-20", "callee-3", "cid-"):
        assert foreign not in text


def test_customer_view_lists_its_calls_without_supplier_or_call_id():
    view = figures.view(snapshot(), CUSTOMER_10)
    assert view["concurrent"] == 2
    assert [c["id"] for c in view["calls"]] == [2, 1]  # newest first
    answered = next(c for c in view["calls"] if c["id"] == 1)
    assert answered["duration"] == 65
    assert next(c for c in view["calls"] if c["id"] == 2)["duration"] == 0
    assert set(answered) == {"id", "caller", "callee", "destination", "started_at", "answered_at", "duration"}
    assert [a["subject"] for a in view["alerts"]["latest"]] == ["about 10"]
    assert "cid-" not in json.dumps(view)


def test_a_view_of_nobody_and_of_no_customers_is_empty():
    for audience in (Audience(Kind.NOBODY), Audience(Kind.RESELLER, reseller_id=999, customers=frozenset())):
        view = figures.view(snapshot(), audience)
        assert (view["concurrent"], view["cps"], view["alerts"]["count"]) == (0, "0.0", 0)
        assert view["quality"]["5"] == {"attempts": 0, "answered": 0, "asr": None, "acd": None}


@pytest.mark.usefixtures("traffic")
def test_alert_visibility_is_the_querysets(cast):
    """Audience.sees_alert follows AlertQuerySet.visible_to for every member of the cast."""
    rows = figures.read_alerts(timezone.now())
    for scope in scopes(cast).values():
        audience = figures.audience_for(scope)
        expected = set(Alert.objects.visible_to(scope).values_list("pk", flat=True))
        assert {row.id for row in rows if audience.sees_alert(row)} == expected


def scopes(cast):
    return {
        "operator": Scope.of_user(cast.operator),
        "reseller_a": Scope.of_user(cast.a.staff),
        "reseller_b": Scope.of_user(cast.b.staff),
        "customer_a": Scope.of_user(cast.a.customer_user),
        "customer_b": Scope.of_user(cast.b.customer_user),
    }


@pytest.mark.parametrize(
    "who, calls, alerts, absent",
    [
        ("operator", 4, 3, []),
        ("reseller_a", 2, 1, ["221B", "4479000000009", "331O", "Customer B", "brute force"]),
        ("reseller_b", 1, 1, ["111A", "112A", "4915100000001", "331O", "Customer A", "brute force"]),
        ("customer_a", 2, 1, ["221B", "4479000000009", "331O", "Customer B", "brute force"]),
        ("customer_b", 1, 1, ["111A", "112A", "4915100000001", "331O", "Customer A", "brute force"]),
    ],
)
def test_scoping_matrix_over_the_database(traffic, cast, who, calls, alerts, absent):
    calls_by_name, _ = traffic
    scope = scopes(cast)[who]
    view = figures.figures_for(scope, timezone.now())
    assert view["concurrent"] == calls
    assert view["alerts"]["count"] == alerts
    text = json.dumps(view)
    for value in absent:
        assert value not in text
    for reservation in calls_by_name.values():
        assert reservation.call_id not in text
    if who.startswith("customer"):
        assert len(view["calls"]) == calls
        assert str(cast.supplier.pk) not in {str(c.get("supplier")) for c in view["calls"]}
    else:
        assert "calls" not in view


def test_quality_windows_come_from_one_grouped_query(cast, django_assert_num_queries):
    now = timezone.now()
    customer = cast.a.customer
    # 3 min ago: answered 60 s and failed; 10 min ago: answered 120 s; 30 min ago: failed; 2 h ago: ignored.
    CdrFactory(customer=customer, node=cast.node, created_at=now - timedelta(minutes=3), duration_ms=60_000)
    CdrFactory(
        customer=customer,
        node=cast.node,
        created_at=now - timedelta(minutes=3),
        answered_at=None,
        ended_at=None,
        duration_ms=0,
        sip_code=486,
    )
    CdrFactory(customer=customer, node=cast.node, created_at=now - timedelta(minutes=10), duration_ms=120_000)
    CdrFactory(
        customer=customer,
        node=cast.node,
        created_at=now - timedelta(minutes=30),
        answered_at=None,
        ended_at=None,
        duration_ms=0,
        sip_code=503,
    )
    CdrFactory(customer=customer, node=cast.node, created_at=now - timedelta(hours=2), duration_ms=60_000)
    CdrFactory(
        customer=cast.b.customer, node=cast.node, created_at=now - timedelta(minutes=1), duration_ms=5_000
    )
    with django_assert_num_queries(1):
        quality = figures.read_quality(now)
    assert quality[customer.pk] == {
        5: Quality(2, 1, 60_000),
        15: Quality(3, 2, 180_000),
        60: Quality(4, 2, 180_000),
    }
    view = figures.view(
        figures.Snapshot(at=now, quality=quality), figures.audience_for(Scope.of_user(cast.a.staff))
    )
    assert view["quality"]["5"] == {"attempts": 2, "answered": 1, "asr": "50.0", "acd": "60"}
    assert view["quality"]["60"] == {"attempts": 4, "answered": 2, "asr": "50.0", "acd": "90"}


def test_calls_per_second_counts_open_and_closed_reservations_of_the_last_ten_seconds(cast):
    from tests.live.conftest import reserve

    now = timezone.now()
    for seconds in (1, 2, 9):
        reserve(cast.a.customer, at=now - timedelta(seconds=seconds))
    closed = reserve(cast.a.customer, at=now - timedelta(seconds=4))
    closed.released_at = now
    closed.save(update_fields=["released_at"])
    reserve(cast.a.customer, at=now - timedelta(seconds=11))
    view = figures.view(figures.read(now), figures.audience_for(Scope.of_user(cast.a.customer_user)))
    assert view["cps"] == "0.4"
    assert view["concurrent"] == 4  # the closed one is over; the old one still open


def test_call_rows_are_read_only_for_customers_watching_their_own(traffic, cast):
    now = timezone.now()
    assert figures.read(now).calls == []  # counts only, for operator and reseller views
    rows = figures.read(now, watching=[cast.a.customer.pk]).calls
    assert {row.customer_id for row in rows} == {cast.a.customer.pk} and len(rows) == 2
    counts = {(row.customer_id, row.calls, row.answered) for row in figures.read_active()}
    assert counts == {
        (cast.a.customer.pk, 2, 1),
        (cast.b.customer.pk, 1, 1),
        (cast.operator_customer.pk, 1, 0),
    }
