"""Retention: recordings are kept as long as their call's customer says (else its reseller,
else the cluster), captures as long as the cluster says. The clock is injected."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.files import services
from apps.files.models import StoredFile
from apps.peers.models import Peer
from apps.tenancy.models import Reseller
from tests.factories import CdrFactory

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def defaults(settings):
    settings.RECORDING_RETENTION_DAYS = 90
    settings.CAPTURE_RETENTION_DAYS = 30


def recorded_call(cast, customer, *, age_days: float, kind: str = "recording", call_id: str | None = None):
    """A call of `customer` that ended `age_days` before NOW, with its file."""
    start = NOW - timedelta(days=age_days, seconds=61)
    call_id = call_id or f"{customer.name if customer else 'nobody'}-{age_days}-{kind}"
    CdrFactory(customer=customer, node=cast.node, call_id=call_id, created_at=start)
    return stored(cast, call_id, start + timedelta(seconds=61), kind=kind)


def stored(cast, call_id: str, at: datetime, *, kind: str = "recording") -> StoredFile:
    return StoredFile.objects.create(
        kind=kind,
        origin=cast.node,
        relative_path=f"{cast.node.name}/{call_id}.{kind}",
        size=10,
        sha256="0" * 64,
        call_id=call_id,
        created_at=at,
    )


def kept(*files) -> list[bool]:
    return [not StoredFile.objects.get(pk=f.pk).is_deleted for f in files]


def set_days(model, obj, days):
    model.objects.filter(pk=obj.pk).update(recording_retention_days=days)


def test_a_customers_own_retention_decides(cast):
    set_days(Peer, cast.a.customer, 10)
    young = recorded_call(cast, cast.a.customer, age_days=9)
    old = recorded_call(cast, cast.a.customer, age_days=11)

    assert services.apply_retention(now=NOW) == 1

    assert kept(young, old) == [True, False]
    assert StoredFile.objects.get(pk=old.pk).deleted_reason == "retention: older than 10 days"


def test_a_customer_without_one_follows_its_reseller(cast):
    set_days(Reseller, cast.b.reseller, 30)
    young = recorded_call(cast, cast.b.customer, age_days=29)
    old = recorded_call(cast, cast.b.customer, age_days=31)

    services.apply_retention(now=NOW)

    assert kept(young, old) == [True, False]


def test_the_customers_retention_beats_its_resellers_both_ways(cast):
    set_days(Reseller, cast.b.reseller, 30)
    set_days(Peer, cast.b.customer, 60)
    set_days(Peer, cast.a.customer, 5)
    set_days(Reseller, cast.a.reseller, 30)
    b_kept_longer = recorded_call(cast, cast.b.customer, age_days=45)
    a_kept_shorter = recorded_call(cast, cast.a.customer, age_days=6)

    services.apply_retention(now=NOW)

    assert kept(b_kept_longer, a_kept_shorter) == [True, False]


def test_without_either_the_cluster_default_applies(cast):
    young = recorded_call(cast, cast.operator_customer, age_days=89)
    old = recorded_call(cast, cast.operator_customer, age_days=91)
    b_young = recorded_call(cast, cast.b.customer, age_days=89)

    services.apply_retention(now=NOW)

    assert kept(young, old, b_young) == [True, False, True]


def test_a_recording_whose_cdr_is_not_in_follows_the_cluster_default(cast):
    set_days(Peer, cast.a.customer, 10)
    young = stored(cast, "no-cdr-yet", NOW - timedelta(days=89))
    old = stored(cast, "no-cdr-ever", NOW - timedelta(days=91))

    services.apply_retention(now=NOW)

    assert kept(young, old) == [True, False]


def test_zero_days_keeps_forever_at_any_level(cast, settings):
    set_days(Peer, cast.a.customer, 0)
    set_days(Reseller, cast.b.reseller, 0)
    forever_a = recorded_call(cast, cast.a.customer, age_days=1000)
    forever_b = recorded_call(cast, cast.b.customer, age_days=1000)
    default = recorded_call(cast, cast.operator_customer, age_days=1000)

    services.apply_retention(now=NOW)

    assert kept(forever_a, forever_b, default) == [True, True, False]


def test_a_cluster_kept_forever_still_deletes_for_a_customer_with_a_retention(cast, settings):
    settings.RECORDING_RETENTION_DAYS = 0
    set_days(Peer, cast.a.customer, 10)
    a_old = recorded_call(cast, cast.a.customer, age_days=11)
    b_old = recorded_call(cast, cast.b.customer, age_days=5000)
    orphan = stored(cast, "orphan", NOW - timedelta(days=5000))

    assert services.apply_retention(now=NOW) == 1

    assert kept(a_old, b_old, orphan) == [False, True, True]


def test_of_two_customers_claiming_one_file_the_longer_retention_wins(cast):
    set_days(Peer, cast.a.customer, 10)
    set_days(Peer, cast.b.customer, 40)
    recording = recorded_call(cast, cast.a.customer, age_days=20, call_id="shared")
    CdrFactory(customer=cast.b.customer, node=cast.node, call_id="shared", created_at=recording.created_at)

    services.apply_retention(now=NOW)

    assert kept(recording) == [True]


def test_captures_follow_the_cluster_not_the_customer(cast):
    set_days(Peer, cast.a.customer, 300)
    young = recorded_call(cast, cast.a.customer, age_days=29, kind="capture")
    old = recorded_call(cast, cast.a.customer, age_days=31, kind="capture")
    recording = recorded_call(cast, cast.a.customer, age_days=31)

    services.apply_retention(now=NOW)

    assert kept(young, old, recording) == [True, False, True]


def test_run_again_it_deletes_nothing_more(cast):
    set_days(Peer, cast.a.customer, 10)
    recorded_call(cast, cast.a.customer, age_days=11)

    assert services.apply_retention(now=NOW) == 1
    assert services.apply_retention(now=NOW) == 0


def test_the_queries_do_not_grow_with_the_files(cast):
    set_days(Peer, cast.a.customer, 10)
    set_days(Reseller, cast.b.reseller, 30)
    recorded_call(cast, cast.a.customer, age_days=9)
    with CaptureQueriesContext(connection) as few:
        services.apply_retention(now=NOW)

    for n in range(20):
        recorded_call(cast, cast.a.customer, age_days=n % 9 + 0.5, call_id=f"a{n}")
        recorded_call(cast, cast.b.customer, age_days=n + 0.5, call_id=f"b{n}")
    with CaptureQueriesContext(connection) as many:
        assert services.apply_retention(now=NOW) == 0

    assert len(many) == len(few), "\n".join(q["sql"] for q in many.captured_queries)
    # peers' and resellers' values, captures, then one per retention (10, 30, 90 days)
    assert len(many) <= 6
