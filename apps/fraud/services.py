"""Open, end and undo alerts: the one way a controller acts and a person reverts it.

Every controller goes through `raise_alert`: it opens the episode (or refreshes the open
one of the same key, so a subject caught round after round is one alert and one e-mail),
writes what the action changes elsewhere (a suspended peer, a locked SIP account), audits
it and announces it on the change-event path (`fraud.Alert`: call control's snapshot, the
OpenSIPS ban table and live views follow it). `end_alert` closes an episode whose time is
up; `undo_alert` is a person's click, audited with who and why. Both lift the action.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.core.services import ensure_manages
from apps.fraud.models import Action, Alert, Controller
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)

ALERT = "fraud.Alert"


@dataclass(frozen=True)
class Subject:
    """What an alert is about: the fields that apply, and the words shown for it."""

    text: str
    peer_id: int | None = None
    reseller_id: int | None = None
    destination: str = ""
    number: str = ""
    source_ip: str | None = None
    username: str = ""
    sip_account_id: int | None = None

    def key(self, controller: Controller) -> str:
        parts = (
            self.peer_id or "",
            self.destination.lower(),
            self.number,
            self.source_ip or "",
            self.username,
            self.sip_account_id or "",
        )
        return f"{controller.pk}:" + "|".join(str(part) for part in parts)


@retry_on_conflict
def raise_alert(
    controller: Controller,
    subject: Subject,
    *,
    effect: str,
    measured: Decimal | float | int,
    threshold: Decimal | float | int | None,
    attempts: int | None = None,
    detail: str = "",
    now: datetime | None = None,
) -> tuple[Alert, bool]:
    """Open the episode of `subject` under `controller`, or refresh the open one: (alert, new).

    `effect` is Alert.Effect.WARNING when the controller only warns, whatever it would do.
    A new episode's action ends `block_minutes` from now (never, for 0); a refreshed one
    keeps its start and moves `last_seen_at` (and its end, while the subject still offends).
    """
    now = now or timezone.now()
    if controller.action == Action.WARN:
        effect = Alert.Effect.WARNING
    key = subject.key(controller)[:255]
    # A locked SIP account stays locked until a person unlocks it (its owner must hear of
    # it and change the password); every other action lasts `block_minutes` (0: until undone).
    lasts = controller.block_minutes if effect != Alert.Effect.LOCK_ACCOUNT else 0
    ends_at = now + timedelta(minutes=lasts) if lasts else None
    trial_until = (
        ends_at + timedelta(minutes=controller.trial_minutes)
        if ends_at is not None and controller.trial_minutes and controller.trial_share < 100
        else None
    )
    values = {
        "measured": Decimal(str(measured)).quantize(Decimal("0.0001")),
        "threshold": None if threshold is None else Decimal(str(threshold)).quantize(Decimal("0.0001")),
        "attempts": attempts,
        "window_minutes": controller.window_minutes,
        "detail": detail,
        "last_seen_at": now,
    }
    alert = _open_episode(key)
    if alert is not None:
        changed = ["last_seen_at"]
        if alert.ends_at is not None and ends_at is not None and alert.ends_at > now:
            # Still offending while blocked: the block runs on from now.
            values["ends_at"], values["trial_until"] = ends_at, trial_until
            changed += ["ends_at", "trial_until"]
        Alert.objects.filter(pk=alert.pk).update(**values)
        alert.refresh_from_db()
        announce(ALERT, [alert.pk], fields=changed)
        return alert, False
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                controller=controller,
                kind=controller.kind,
                effect=effect,
                reseller_id=subject.reseller_id,
                peer_id=subject.peer_id,
                destination=subject.destination[:100],
                number=subject.number[:64],
                source_ip=subject.source_ip,
                username=subject.username[:150],
                sip_account_id=subject.sip_account_id,
                subject=subject.text[:200],
                open_key=key,
                started_at=now,
                ends_at=ends_at,
                trial_until=trial_until,
                trial_share=controller.trial_share,
                **values,
            )
    except IntegrityError:
        # Another process (another node's call control, a concurrent login) opened this
        # episode between the look above and this insert: its alert is the one.
        alert = _open_episode(key)
        if alert is None:
            raise
        return alert, False
    _apply(alert, now)
    audit.record(Scope.system(), "alert.raised", alert, effect=effect, measured=alert.measured)
    announce(ALERT, [alert.pk])
    if controller.notify:
        transaction.on_commit(lambda: _queue_email(alert.pk))
    logger.warning("alert %s: %s (%s)", alert.pk, alert, alert.get_effect_display())
    return alert, True


@retry_on_conflict
def end_alert(alert: Alert, *, now: datetime | None = None) -> bool:
    """Close an episode whose action is over (by the sweep); False if it was already closed."""
    now = now or timezone.now()
    if not Alert.objects.filter(pk=alert.pk, ended_at__isnull=True).update(ended_at=now, open_key=None):
        return False
    alert.refresh_from_db()
    _lift(alert, now)
    announce(ALERT, [alert.pk], fields=["ended_at"])
    return True


@retry_on_conflict
def undo_alert(alert: Alert, *, actor: Scope, reason: str = "", now: datetime | None = None) -> Alert:
    """A person ends the episode and lifts its action (unblock, resume, unlock, unban)."""
    ensure_manages(actor, alert.reseller_id)
    now = now or timezone.now()
    if not Alert.objects.filter(pk=alert.pk, ended_at__isnull=True).update(
        ended_at=now, open_key=None, undone_at=now, undone_by=actor.user, undone_reason=reason[:200]
    ):
        raise DomainError("This alert is already over.")
    alert.refresh_from_db()
    _lift(alert, now)
    audit.record(actor, "alert.undone", alert, effect=alert.effect, reason=reason)
    announce(ALERT, [alert.pk], fields=["ended_at"])
    return alert


def _open_episode(key: str) -> Alert | None:
    return Alert.objects.select_for_update().filter(open_key=key).first()


def end_expired(*, now: datetime | None = None) -> int:
    """End every open episode past its block and trial; how many (a singleton, every minute)."""
    now = now or timezone.now()
    expired = Alert.objects.open().filter(ends_at__lte=now).exclude(trial_until__gt=now)
    return sum(end_alert(alert, now=now) for alert in expired)


def _apply(alert: Alert, now: datetime) -> None:
    """What the action writes beside the alert (in its transaction)."""
    from apps.peers.models import Peer, SipAccount

    if alert.effect == Alert.Effect.SUSPEND_PEER and alert.peer_id:
        Peer.objects.filter(pk=alert.peer_id, suspended_at__isnull=True).update(
            suspended_at=now, suspended_reason=f"Fraud control: {alert.subject}"[:200], updated_at=now
        )
        announce("peers.Peer", [alert.peer_id], fields=["suspended_at", "suspended_reason"])
    elif alert.effect == Alert.Effect.LOCK_ACCOUNT and alert.sip_account_id:
        SipAccount.objects.filter(pk=alert.sip_account_id).update(locked_at=now, updated_at=now)
        announce("peers.SipAccount", [alert.sip_account_id], fields=["locked_at"])


def _lift(alert: Alert, now: datetime) -> None:
    """Revert what `_apply` wrote; effects read from open alerts lift by the alert's end."""
    from apps.peers.models import Peer, SipAccount

    if alert.effect == Alert.Effect.SUSPEND_PEER and alert.peer_id:
        # Only a suspension this controller made: a person's own suspension stays.
        if Peer.objects.filter(pk=alert.peer_id, suspended_reason__startswith="Fraud control:").update(
            suspended_at=None, suspended_reason="", updated_at=now
        ):
            announce("peers.Peer", [alert.peer_id], fields=["suspended_at", "suspended_reason"])
    elif alert.effect == Alert.Effect.LOCK_ACCOUNT and alert.sip_account_id:
        SipAccount.objects.filter(pk=alert.sip_account_id).update(locked_at=None, updated_at=now)
        announce("peers.SipAccount", [alert.sip_account_id], fields=["locked_at"])


def _queue_email(alert_id: int) -> None:
    from django.conf import settings
    from django_q.tasks import async_task

    async_task("apps.fraud.notify.send_alert_email", alert_id, cluster=settings.NODE_NAME)
