"""Alert episodes: which changes make call control rebuild its snapshot
(apps.callcontrol.generation), and two processes opening one episode at once.

A new, ended or extended episode changes what call control applies; a controller round that
only sees the same subject again (its `last_seen_at`) does not, and must not cost every node a
rebuild every two minutes.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.callcontrol.generation import current_generation
from apps.fraud import services
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.fraud.services import Subject
from tests.factories import make_peer


@pytest.mark.django_db(transaction=True)
def test_only_changes_call_control_reads_bump_the_generation():
    supplier = make_peer("Carrier", role="supplier")
    controller = Controller.objects.create(
        name="ASR", kind=Kind.TERMINATION, metric=Metric.ASR, threshold=Decimal(30), action=Action.BLOCK
    )
    subject = Subject("Carrier Germany", peer_id=supplier.pk, destination="Germany")
    now = timezone.now()

    def raised(at, **fields):
        before = current_generation()
        alert, _created = services.raise_alert(
            controller,
            subject,
            effect=Alert.Effect.EXCLUDE_ROUTE,
            measured=10,
            threshold=30,
            now=at,
            **fields,
        )
        return alert, current_generation() - before

    alert, bumps = raised(now)
    assert bumps == 1  # a new episode
    # Seen again while blocked: the block runs on (its end moved), call control must know.
    alert, bumps = raised(now + timedelta(minutes=2))
    assert bumps == 1 and alert.ends_at == now + timedelta(minutes=32)
    # Seen again after its block (in no trial): only `last_seen_at` moves, no rebuild.
    alert, bumps = raised(now + timedelta(minutes=40))
    assert bumps == 0 and alert.last_seen_at == now + timedelta(minutes=40)
    before = current_generation()
    services.end_alert(alert, now=now + timedelta(minutes=41))
    assert current_generation() == before + 1


@pytest.mark.django_db
def test_an_episode_opened_by_another_process_meanwhile_is_the_one(monkeypatch):
    # Two nodes cross one threshold together: both look, find no open episode, and insert;
    # the second insert meets the first's open key and takes its alert, not an error.
    controller = Controller.objects.create(name="SIP", kind=Kind.SIP_AUTH, min_count=5, action=Action.BLOCK)
    subject = Subject("198.51.100.7", source_ip="198.51.100.7")
    first, created = services.raise_alert(
        controller, subject, effect=Alert.Effect.BAN_ADDRESS, measured=5, threshold=5
    )
    assert created
    looks = iter([None])  # the second process's look came before the first one's commit
    real = services._open_episode
    monkeypatch.setattr(services, "_open_episode", lambda key: next(looks, None) or real(key))

    second, created = services.raise_alert(
        controller, subject, effect=Alert.Effect.BAN_ADDRESS, measured=6, threshold=5
    )

    assert (second.pk, created) == (first.pk, False)
    assert Alert.objects.count() == 1
