"""Supplier quality (ASR/ACD) is recounted from the CDRs of the sliding window."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.callcontrol.tasks import SCHEDULES, ensure_schedules
from apps.nodes.models import ClusterSettings
from apps.routing.models import QualityStat
from apps.routing.quality import refresh_quality_stats
from tests.factories import CdrFactory

pytestmark = pytest.mark.django_db


def _calls(supplier, destination, *, answered, failed, seconds=60, at=None):
    at = at or timezone.now() - timedelta(minutes=5)
    for _ in range(answered):
        CdrFactory(supplier=supplier, destination=destination, created_at=at, duration_ms=seconds * 1000)
    for _ in range(failed):
        CdrFactory(
            supplier=supplier,
            destination=destination,
            created_at=at,
            answered_at=None,
            duration_ms=0,
            sip_code=503,
        )


def test_asr_and_acd_are_counted_per_supplier_and_destination(cast):
    _calls(cast.supplier, "Germany - Mobile", answered=3, failed=1, seconds=90)
    _calls(cast.supplier, "France", answered=1, failed=3, seconds=30)

    assert refresh_quality_stats() == 2

    germany = QualityStat.objects.get(supplier=cast.supplier, destination="Germany - Mobile")
    assert (germany.attempts, germany.answered, germany.answered_seconds) == (4, 3, 270)
    assert germany.asr == 75.0
    assert germany.acd == 90.0
    france = QualityStat.objects.get(supplier=cast.supplier, destination="France")
    assert (france.asr, france.acd) == (25.0, 30.0)


def test_calls_older_than_the_window_are_left_out_and_stale_rows_removed(cast):
    settings = ClusterSettings.load()
    settings.quality_window = 30
    settings.save()
    _calls(cast.supplier, "Spain", answered=2, failed=0, at=timezone.now() - timedelta(minutes=45))
    _calls(cast.supplier, "Italy", answered=1, failed=1)
    QualityStat.objects.create(
        supplier=cast.supplier,
        destination="Gone",
        attempts=9,
        answered=9,
        answered_seconds=9,
        window_start=timezone.now(),
        window_end=timezone.now(),
    )

    refresh_quality_stats()

    assert list(QualityStat.objects.values_list("destination", "attempts")) == [("Italy", 2)]


def test_a_second_refresh_updates_in_place(cast):
    _calls(cast.supplier, "Italy", answered=1, failed=0)
    refresh_quality_stats()
    first = QualityStat.objects.get()
    _calls(cast.supplier, "Italy", answered=0, failed=3)

    refresh_quality_stats()

    again = QualityStat.objects.get()
    assert again.pk == first.pk
    assert (again.attempts, again.answered) == (4, 1)


def test_periodic_tasks_are_scheduled_once(db, settings):
    from django_q.models import Schedule

    settings.NODE_NAME = "node1"
    ensure_schedules()
    ensure_schedules()
    assert sorted(
        Schedule.objects.filter(name__in=[f"{name} [node1]" for name in SCHEDULES]).values_list(
            "name", "func", "args"
        )
    ) == sorted(
        (f"{name} [node1]", "apps.cluster.tasks.run_singleton", repr((task.func, task.func)))
        for name, task in SCHEDULES.items()
    )
