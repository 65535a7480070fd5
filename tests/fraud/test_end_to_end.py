"""Test (a) of issue 16 whole: the controller round reads the calls, call control acts on its alert.

A supplier whose ASR towards Germany falls to 10 % over 50 attempts is judged by the
termination controller's round; call control then leaves its route out for Germany (other
destinations keep it), takes it back on trial for a share of calls after the block, and
fully once the episode is over. Nothing here is mocked: CDRs as OpenSIPS's accounting makes
them, `run_all` as the cluster singleton runs it, `decide` as call control runs it.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from apps.callcontrol.decision import decide
from apps.cdr.models import Cdr
from apps.fraud import services
from apps.fraud.controllers import run_all
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from tests.switching import BERLIN, LCR_BERLIN, UK, excluded, suppliers_of

SEQUENCE = itertools.count(1)


def cdrs(world, supplier: str, *, at, attempts: int, answered: int, destination: str = "Germany") -> None:
    Cdr.objects.bulk_create(
        Cdr(
            call_id=f"e2e-{next(SEQUENCE)}@pbx",
            customer=world.customer,
            supplier=world.suppliers[supplier],
            destination=destination,
            callee=BERLIN,
            created_at=at + timedelta(seconds=n),
            answered_at=at + timedelta(seconds=n) if n < answered else None,
            ended_at=at + timedelta(seconds=n + (60 if n < answered else 0)),
            duration_ms=60_000 if n < answered else 0,
            sip_code=200 if n < answered else 503,
        )
        for n in range(attempts)
    )


def offered(world, snapshot, at, callee=BERLIN, call_id="call"):
    """The suppliers call control offers a call at `at`, and why the others were left out."""
    decision = decide(snapshot, world.request(callee, call_id=call_id), at=at)
    return suppliers_of(decision), excluded(decision)


def test_a_supplier_at_10_percent_asr_is_excluded_by_call_control_then_tried_then_back(world):
    now = timezone.now().replace(microsecond=0)
    Controller.objects.create(
        name="ASR under 30 %",
        kind=Kind.TERMINATION,
        metric=Metric.ASR,
        threshold=Decimal(30),
        min_count=50,
        window_minutes=15,
        action=Action.BLOCK,
        block_minutes=30,
        trial_share=25,
        trial_minutes=10,
    )
    cdrs(world, "Bravo", at=now - timedelta(minutes=10), attempts=50, answered=5)
    cdrs(world, "Alpha", at=now - timedelta(minutes=10), attempts=50, answered=30)
    assert offered(world, world.snapshot(), now)[0] == LCR_BERLIN

    result = run_all(now=now)

    alert = Alert.objects.get()
    assert result["raised"] == [alert.pk]
    assert (alert.effect, alert.peer_id, alert.destination) == (
        Alert.Effect.EXCLUDE_ROUTE,
        world.suppliers["Bravo"].pk,
        "Germany",
    )
    snapshot = world.snapshot()
    chosen, left_out = offered(world, snapshot, now + timedelta(minutes=1))
    assert chosen == [name for name in LCR_BERLIN if name != "Bravo"]
    assert left_out["Bravo"].startswith(f"fraud control: ASR 10 % < 30 % (alert #{alert.pk})")
    # Towards the United Kingdom Bravo is judged on nothing: it stays.
    assert "Bravo" in offered(world, snapshot, now, UK)[0]

    # On trial after the block: about a quarter of the calls, the same ones every time.
    in_trial = alert.ends_at + timedelta(minutes=1)
    tried = ["Bravo" in offered(world, snapshot, in_trial, call_id=f"trial-{n}")[0] for n in range(200)]
    assert 30 <= sum(tried) <= 70

    # The episode over (no new bad calls): every call offers Bravo again.
    assert services.end_expired(now=alert.trial_until) == 1
    assert offered(world, world.snapshot(), alert.trial_until)[0] == LCR_BERLIN
