"""An alert's e-mail: once per episode, to the subject's reseller and the rule's owner, saying
what was measured against what, what was done, until when, and where to undo it."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.fraud import notify, rules, services
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.tenancy.models import Reseller
from apps.tenancy.scope import Scope

SYSTEM = Scope.system()


def burst(*, reseller=None, **values) -> Controller:
    return rules.create_controller(
        actor=SYSTEM,
        name=f"Bursts {Controller.objects.count()}",
        kind=Kind.BURST,
        metric=Metric.CALLS,
        threshold=10,
        reseller_id=reseller.pk if reseller else None,
        action=Action.BLOCK,
        **values,
    )


def suspend(rule, customer, *, now=None):
    return services.raise_alert(
        rule,
        services.Subject(
            text=f"{customer.name}: calls", peer_id=customer.pk, reseller_id=customer.reseller_id
        ),
        effect=Alert.Effect.SUSPEND_PEER,
        measured=120,
        threshold=10,
        attempts=130,
        detail="120 calls in 5 minutes against a baseline of 12.",
        now=now,
    )


@pytest.fixture
def emails(cast):
    Reseller.objects.filter(pk=cast.a.reseller.pk).update(email="noc@reseller-a.example")
    Reseller.objects.filter(pk=cast.b.reseller.pk).update(email="noc@reseller-b.example")


def test_an_episode_is_emailed_once_however_often_it_is_sent(
    cast, emails, django_capture_on_commit_callbacks
):
    now = timezone.now()
    rule = burst(reseller=cast.a.reseller)
    with django_capture_on_commit_callbacks() as queued:
        alert, created = suspend(rule, cast.a.customer, now=now)
        # The next round sees the same customer: the open episode is refreshed, nothing queued.
        again, created_again = suspend(rule, cast.a.customer, now=now + timedelta(minutes=1))
    assert (created, created_again, again.pk) == (True, False, alert.pk)
    # Besides the change-event batch, one e-mail is queued for the episode.
    emails_queued = [
        callback for callback in queued if "raise_alert" in getattr(callback, "__qualname__", "")
    ]
    assert len(emails_queued) == 1
    assert notify.send_alert_email(alert.pk) is True
    assert notify.send_alert_email(alert.pk) is False  # a second worker, or a retried task
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["noc@reseller-a.example"]  # the reseller's own rule: its own address
    assert Alert.objects.get(pk=alert.pk).emailed_at is not None


def test_the_operators_rule_tells_the_operator_and_the_customers_reseller(cast, emails, settings):
    alert, _ = suspend(burst(), cast.b.customer)
    assert notify.send_alert_email(alert.pk)
    assert mail.outbox[0].to == ["noc@reseller-b.example", "op@example.com"]  # the superuser's address
    settings.ADMINS = [("NOC", "noc@operator.example")]
    other, _ = suspend(burst(), cast.operator_customer)
    assert notify.send_alert_email(other.pk)
    assert mail.outbox[1].to == ["noc@operator.example"]


def test_nobody_to_tell_sends_nothing_and_leaves_the_episode_unmailed(cast):
    get_user = type(cast.operator)
    get_user.objects.filter(pk=cast.operator.pk).update(email="")
    alert, _ = suspend(burst(), cast.operator_customer)
    assert notify.send_alert_email(alert.pk) is False
    assert (len(mail.outbox), Alert.objects.get(pk=alert.pk).emailed_at) == (0, None)


def test_a_rule_that_does_not_notify_sends_nothing(cast, emails):
    alert, _ = suspend(burst(reseller=cast.a.reseller, notify=False), cast.a.customer)
    assert notify.send_alert_email(alert.pk) is False
    assert mail.outbox == []


def test_the_message_says_what_was_measured_done_until_when_and_where_to_undo(cast, emails, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://switch.example.com"]
    alert, _ = suspend(burst(reseller=cast.a.reseller, window_minutes=5, block_minutes=30), cast.a.customer)
    notify.send_alert_email(alert.pk)
    message = mail.outbox[0]
    assert message.subject == "[Smartswitch] Customer suspended: Customer A: calls"
    body = message.body
    ends = f"{timezone.localtime(alert.ends_at):%Y-%m-%d %H:%M}"
    for expected in (
        "Measured:  120 against a threshold of 10",
        "Window:    5 minutes, 130 attempts",
        "Action:    Customer suspended",
        f"Until:     {ends}",
        "120 calls in 5 minutes against a baseline of 12.",
        f"https://switch.example.com/admin/fraud/alert/{alert.pk}/do/undo/",
    ):
        assert expected in body, expected


def test_an_action_without_an_end_says_a_person_ends_it(cast, emails):
    alert, _ = suspend(burst(reseller=cast.a.reseller, block_minutes=0), cast.a.customer)
    notify.send_alert_email(alert.pk)
    assert "Until:     a person undoes it" in mail.outbox[0].body


def test_a_failed_send_leaves_the_episode_to_be_sent_again(cast, emails, monkeypatch):
    alert, _ = suspend(burst(reseller=cast.a.reseller), cast.a.customer)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(notify, "send_mail", refuse)
    with pytest.raises(ConnectionRefusedError):
        notify.send_alert_email(alert.pk)
    assert Alert.objects.get(pk=alert.pk).emailed_at is None
    monkeypatch.undo()
    assert notify.send_alert_email(alert.pk) is True
    assert len(mail.outbox) == 1
