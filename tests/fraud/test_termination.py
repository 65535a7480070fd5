"""Termination control: a supplier whose ASR, ACD or FAS is bad over the window has its
route excluded (an EXCLUDE_ROUTE alert, which call control reads) until the block and
trial are over; a healthy supplier, or one with too few attempts, is left alone.

CDRs are written as OpenSIPS's accounting makes them (rows, not services); the clock is
injected everywhere.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django_q.models import OrmQ, Schedule

from apps.cdr.models import Cdr
from apps.cluster import schedules
from apps.fraud import services
from apps.fraud.controllers import run_all, termination
from apps.fraud.models import Action, Alert, AuthFailure, Controller, Kind, Metric
from apps.fraud.tasks import SCHEDULES, purge_auth_failures
from apps.peers.models import Peer
from apps.routing.quality import window_quality
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer

SEQUENCE = itertools.count(1)


@pytest.fixture
def customer(db) -> Peer:
    return make_peer("Acme")


def supplier(name: str) -> Peer:
    return make_peer(name, role=Peer.Role.SUPPLIER)


def calls(
    supplier: Peer,
    customer: Peer,
    *,
    at,
    attempts: int,
    answered: int,
    seconds: int = 60,
    destination: str = "France Mobile",
) -> None:
    """`attempts` CDRs through `supplier` a second apart, the first `answered` answered."""
    rows = []
    for n in range(attempts):
        start = at + timedelta(seconds=n)
        ok = n < answered
        rows.append(
            Cdr(
                call_id=f"t{next(SEQUENCE)}@pbx",
                customer=customer,
                supplier=supplier,
                destination=destination,
                callee="33612345678",
                created_at=start,
                answered_at=start if ok else None,
                ended_at=start + timedelta(seconds=seconds if ok else 0),
                duration_ms=seconds * 1000 if ok else 0,
                sip_code=200 if ok else 503,
            )
        )
    Cdr.objects.bulk_create(rows)


def controller(**fields) -> Controller:
    values = {
        "name": "ASR under 40 %",
        "kind": Kind.TERMINATION,
        "metric": Metric.ASR,
        "threshold": Decimal(40),
        "min_count": 50,
        "window_minutes": 15,
        "action": Action.BLOCK,
        "block_minutes": 30,
    }
    values.update(fields)
    rule = Controller(**values)
    rule.full_clean()
    rule.save()
    return rule


def queued_emails() -> list:
    return [row for row in OrmQ.objects.all() if row.task["func"] == "apps.fraud.notify.send_alert_email"]


def test_a_supplier_whose_asr_falls_to_10_percent_is_excluded_until_its_block_ends(
    customer, now, django_capture_on_commit_callbacks
):
    bad, good, quiet = supplier("Bad Carrier"), supplier("Good Carrier"), supplier("Quiet Carrier")
    controller()
    calls(bad, customer, at=now - timedelta(minutes=5), attempts=50, answered=5)
    calls(good, customer, at=now - timedelta(minutes=5), attempts=50, answered=40)
    calls(quiet, customer, at=now - timedelta(minutes=5), attempts=49, answered=0)  # too few to judge
    calls(bad, customer, at=now - timedelta(minutes=40), attempts=50, answered=50)  # before the window

    with django_capture_on_commit_callbacks(execute=True):
        result = run_all(now=now)

    alert = Alert.objects.get()
    assert result["raised"] == [alert.pk]
    assert (alert.effect, alert.peer, alert.destination, alert.reseller) == (
        Alert.Effect.EXCLUDE_ROUTE,
        bad,
        "France Mobile",
        None,
    )
    assert (alert.measured, alert.threshold, alert.attempts) == (Decimal(10), Decimal(40), 50)
    assert alert.ends_at == now + timedelta(minutes=30)
    assert "ASR 10.00 %" in alert.detail and "50 attempts, 5 answered" in alert.detail
    assert list(Alert.objects.in_force(now + timedelta(minutes=29))) == [alert]
    assert len(queued_emails()) == 1

    # A round two minutes later sees it again: the same episode, its block running on.
    later = now + timedelta(minutes=2)
    with django_capture_on_commit_callbacks(execute=True):
        result = run_all(now=later)
    assert result["raised"] == [] and result["refreshed"] == [alert.pk]
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and len(queued_emails()) == 1
    assert (alert.started_at, alert.last_seen_at, alert.ends_at) == (
        now,
        later,
        later + timedelta(minutes=30),
    )

    # Healthy again (no new calls): the episode runs out at its end, and the route is back.
    assert services.end_expired(now=later + timedelta(minutes=29)) == 0
    assert services.end_expired(now=later + timedelta(minutes=30)) == 1
    alert.refresh_from_db()
    assert alert.ended_at == later + timedelta(minutes=30) and alert.open_key is None
    assert not Alert.objects.in_force(later + timedelta(minutes=30)).exists()


def test_after_the_block_the_route_is_on_trial_before_the_episode_ends(customer, now):
    bad = supplier("Bad Carrier")
    controller(trial_share=20, trial_minutes=10)
    calls(bad, customer, at=now - timedelta(minutes=5), attempts=50, answered=5)

    run_all(now=now)

    alert = Alert.objects.get()
    assert alert.trial_until == now + timedelta(minutes=40) and alert.trial_share == 20
    blocked_over = now + timedelta(minutes=31)
    assert alert.in_trial(blocked_over) and Alert.objects.in_force(blocked_over).exists()
    assert services.end_expired(now=blocked_over) == 0
    assert services.end_expired(now=now + timedelta(minutes=40)) == 1


@pytest.mark.parametrize(
    ("metric", "threshold", "seconds", "offends", "measured"),
    [
        (Metric.ACD, 30, 10, True, Decimal(10)),  # 10 s answered calls: ACD 10 s under 30 s
        (Metric.ACD, 30, 60, False, None),
        (Metric.FAS, 20, 2, True, Decimal(100)),  # every answered call under 6 s: FAS 100 %
        (Metric.FAS, 20, 60, False, None),
    ],
)
def test_acd_and_fas_judge_the_answered_calls(customer, now, metric, threshold, seconds, offends, measured):
    carrier = supplier("Carrier")
    controller(metric=metric, threshold=Decimal(threshold), min_count=20)
    calls(carrier, customer, at=now - timedelta(minutes=3), attempts=20, answered=20, seconds=seconds)

    run_all(now=now)

    alert = Alert.objects.first()
    assert (alert is not None) is offends
    if offends:
        assert alert.measured == measured and alert.peer == carrier


def test_a_supplier_judged_as_a_whole_is_excluded_for_every_destination(customer, now):
    carrier = supplier("Carrier")
    controller(per_destination=False)
    # 25 + 25 attempts: neither destination alone reaches the minimum, the supplier does.
    calls(carrier, customer, at=now - timedelta(minutes=5), attempts=25, answered=2, destination="France")
    calls(carrier, customer, at=now - timedelta(minutes=4), attempts=25, answered=3, destination="Spain")

    run_all(now=now)

    alert = Alert.objects.get()
    assert (alert.peer, alert.destination, alert.measured) == (carrier, "", Decimal(10))
    assert alert.subject == "Carrier (every destination)"


def test_a_warn_only_controller_raises_a_warning_that_excludes_nothing(customer, now):
    carrier = supplier("Carrier")
    controller(action=Action.WARN)
    calls(carrier, customer, at=now - timedelta(minutes=5), attempts=50, answered=5)

    run_all(now=now)

    assert Alert.objects.get().effect == Alert.Effect.WARNING


def test_a_route_a_person_readmitted_is_judged_only_on_the_calls_after(customer, now, django_user_model):
    operator = Scope.of_user(django_user_model.objects.create_superuser("op", "op@example.com", "x"))
    carrier = supplier("Carrier")
    controller()
    calls(carrier, customer, at=now - timedelta(minutes=5), attempts=50, answered=5)
    run_all(now=now)
    alert = Alert.objects.get()

    services.undo_alert(alert, actor=operator, reason="supplier fixed it", now=now)
    run_all(now=now + timedelta(minutes=2))
    assert Alert.objects.count() == 1  # the same calls do not exclude it again

    calls(carrier, customer, at=now + timedelta(minutes=3), attempts=50, answered=4)
    run_all(now=now + timedelta(minutes=6))
    assert Alert.objects.open().get().measured == Decimal(8)


def test_one_round_reads_the_window_in_one_grouped_query(customer, now, django_assert_num_queries):
    for name in ("A", "B", "C"):
        calls(supplier(name), customer, at=now - timedelta(minutes=5), attempts=50, answered=45)
    rule = controller()
    with django_assert_num_queries(2):  # the window, and the undone alerts
        tally = termination.run(rule, now=now)
    assert tally.judged == 3 and not tally.raised


def test_the_window_counts_attempts_answers_and_short_answers(customer, now):
    carrier = supplier("Carrier")
    calls(carrier, customer, at=now - timedelta(minutes=5), attempts=10, answered=4, seconds=3)
    calls(carrier, customer, at=now - timedelta(minutes=4), attempts=10, answered=6, seconds=30)

    (quality,) = window_quality(now - timedelta(minutes=15), now, per_destination=True, short_seconds=6)

    assert (quality.attempts, quality.answered, quality.short) == (20, 10, 4)
    assert (quality.asr, quality.acd, quality.fas) == (Decimal(50), Decimal("19.20"), Decimal(40))


def test_a_failing_controller_is_logged_and_the_others_still_run(customer, now, monkeypatch, caplog):
    carrier = supplier("Carrier")
    broken = controller(name="Broken")
    controller(name="Working")
    calls(carrier, customer, at=now - timedelta(minutes=5), attempts=50, answered=5)
    judge = termination.judge

    def fails_for_broken(rule, quality):
        if rule.pk == broken.pk:
            raise RuntimeError("a bad row")
        return judge(rule, quality)

    monkeypatch.setattr(termination, "judge", fails_for_broken)
    result = run_all(now=now)

    assert result["failed"] == [broken.pk] and len(result["raised"]) == 1
    assert f"controller {broken.pk} (Broken) failed" in caplog.text


# --- The schedules and the sweep ------------------------------------------------------------


def test_the_controllers_are_cluster_singletons_on_every_node(db):
    NodeFactory(name="node1")
    NodeFactory(name="node2")

    schedules.ensure_all()

    for label, task in SCHEDULES.items():
        assert task.kind is schedules.Kind.SINGLETON
        rows = Schedule.objects.filter(name__startswith=f"{label} [")
        assert sorted(rows.values_list("cluster", flat=True)) == ["node1", "node2"]
        assert {row.func for row in rows} == {schedules.RUN_SINGLETON}
    assert SCHEDULES["Run the fraud and quality controllers"].minutes == 2
    assert SCHEDULES["End fraud alerts whose time is up"].minutes == 1


def test_old_authentication_failures_are_deleted_after_the_longest_window(db, now):
    Controller.objects.create(name="SIP", kind=Kind.SIP_AUTH, window_minutes=3 * 24 * 60)
    for age in (timedelta(days=4), timedelta(days=2), timedelta(hours=1)):
        AuthFailure.objects.create(realm="sip", source_ip="192.0.2.9", username="1001", created_at=now - age)

    assert purge_auth_failures(now=now) == 1
    assert AuthFailure.objects.count() == 2
    Controller.objects.all().delete()
    assert purge_auth_failures(now=now) == 1  # a day at least
    assert AuthFailure.objects.count() == 1
