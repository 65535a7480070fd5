"""The billing loop and its schedules, and the low-balance warning it can set off."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from apps.billing import notify, tasks
from apps.billing import services as billing
from apps.billing.models import Account
from apps.cdr.models import Cdr
from tests.switching import BERLIN, SYSTEM


def unrated_call(world, seconds: int = 60) -> Cdr:
    start = timezone.now() - timedelta(minutes=5)
    return Cdr.objects.create(
        call_id=f"loop-{Cdr.objects.count()}@test",
        node=world.node,
        customer=world.customer,
        supplier=world.suppliers["Bravo"],
        callee=BERLIN,
        created_at=start,
        answered_at=start,
        ended_at=start + timedelta(seconds=seconds),
        duration_ms=seconds * 1000,
        sip_code=200,
    )


def test_schedules_are_ensured_once(db, settings):
    settings.NODE_NAME = "node1"  # no Node rows: a fresh install schedules for this node
    tasks.ensure_schedules()
    tasks.ensure_schedules()
    assert sorted(
        Schedule.objects.filter(name__in=[f"{label} [node1]" for label in tasks.SCHEDULES]).values_list(
            "cluster", "func", "args", "minutes"
        )
    ) == [
        ("node1", "apps.billing.tasks.billing_loop", None, 1),
        ("node1", "apps.billing.tasks.release_without_dialog", None, 5),
        ("node1", "apps.cluster.tasks.run_singleton", repr(("apps.billing.tasks.post_fees",) * 2), 60),
    ]


def test_the_billing_loop_rates_calls_and_runs_online_billing(world, settings, monkeypatch):
    settings.NODE_NAME = world.node.name
    calls = [unrated_call(world) for _ in range(3)]
    cuts = []
    monkeypatch.setattr("apps.billing.services.online.cut_overruns", lambda: cuts.append(1))

    summary = tasks.billing_loop(seconds=0.2)

    assert summary == {"imported": 0, "rated": 3, "errors": 0, "charges": 6}
    assert set(Cdr.objects.filter(pk__in=[c.pk for c in calls]).values_list("rating_state", flat=True)) == {
        "rated"
    }
    assert cuts == [1]  # once at the start; the next round is ONLINE_BILLING_INTERVAL later


def test_the_billing_loop_goes_on_rating_when_online_billing_fails(world, settings, monkeypatch):
    settings.NODE_NAME = world.node.name
    unrated_call(world)

    def broken():
        raise RuntimeError("MI down")

    monkeypatch.setattr("apps.billing.services.online.cut_overruns", broken)

    assert tasks.billing_loop(seconds=0.2)["rated"] == 1


class LoopClock:
    """time.monotonic and time.sleep of the billing loop: a sleep moves the clock on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_busy_billing_loop_takes_calls_in_small_batches_and_an_idle_one_rests(db, settings, monkeypatch):
    # Issue 13: a loop that slept a whole second after every round that was not a full batch
    # took a busy node's calls in one burst a second (600 calls' import and rating at once at
    # 600 calls/s, and the database's work for them); the calls being set up queued behind it.
    from apps.billing.services import rating
    from apps.cdr import ingest

    clock = LoopClock()
    rounds = iter(
        [
            (ingest.IngestResult(calls=120), rating.BatchResult(selected=120)),  # calls arriving
            (ingest.IngestResult(), rating.BatchResult(selected=80)),  # still rating
            (ingest.IngestResult(calls=ingest.BATCH_SIZE, full=True), rating.BatchResult()),  # a backlog
            (ingest.IngestResult(), rating.BatchResult()),  # nothing left
        ]
    )
    current = {}

    def next_round(**kwargs):
        current["round"] = next(rounds, (ingest.IngestResult(), rating.BatchResult()))
        return current["round"][0]

    monkeypatch.setattr(tasks, "time", clock)
    monkeypatch.setattr("apps.billing.services.online.cut_overruns", lambda: None)
    monkeypatch.setattr(ingest, "ingest_batch", next_round)
    monkeypatch.setattr(rating, "rate_batch", lambda **kwargs: current["round"][1])

    tasks.billing_loop(seconds=5.0)

    # Two short pauses while calls arrive, none after the whole batch, then an idle one.
    busy, idle = clock.sleeps[:2], clock.sleeps[2]
    assert max(busy) <= 0.25
    assert idle >= 1.0
    assert set(clock.sleeps[2:]) == {idle}


@pytest.fixture
def watched(world):
    account = Account.objects.get(peer=world.customer)  # 10.00 USD
    Account.objects.filter(pk=account.pk).update(
        low_balance_threshold=Decimal("5.00"), notification_email="billing@acme.example"
    )
    return Account.objects.get(pk=account.pk)


def queued_warnings() -> int:
    return sum("send_low_balance_warning" in str(task.task) for task in OrmQ.objects.all())


def test_a_balance_falling_below_its_threshold_warns_once_per_crossing(
    watched, django_capture_on_commit_callbacks
):
    def move(amount: str) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            if Decimal(amount) > 0:
                billing.post_payment(watched, actor=SYSTEM, amount=Decimal(amount))
            else:
                billing.post_adjustment(watched, actor=SYSTEM, amount=Decimal(amount), reason="test")

    move("-4.00")  # 6.00
    assert queued_warnings() == 0
    move("-2.00")  # 4.00: crossed
    move("-1.00")  # 3.00: still below
    assert queued_warnings() == 1
    assert Account.objects.get(pk=watched.pk).low_balance_warned

    move("10.00")  # 13.00: back above
    assert not Account.objects.get(pk=watched.pk).low_balance_warned
    move("-9.00")  # 4.00: crossed again
    assert queued_warnings() == 2


def test_the_warning_goes_to_the_accounts_address(watched):
    billing.post_adjustment(watched, actor=SYSTEM, amount=Decimal("-6.00"), reason="test")

    assert notify.send_low_balance_warning(watched.pk) is True

    [message] = mail.outbox
    assert message.to == ["billing@acme.example"]
    assert message.subject == "Low balance: Acme has 4.00 USD left"
    assert "below the warning threshold of 5.000000 USD" in message.body


def test_no_address_means_no_mail_and_a_log_line(watched, caplog):
    Account.objects.filter(pk=watched.pk).update(notification_email="")

    assert notify.send_low_balance_warning(watched.pk) is False
    assert mail.outbox == []
    assert "has no e-mail address" in caplog.text
