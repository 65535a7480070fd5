"""E-mail about alerts: one message per episode, to the subject's reseller and the rule's owner.

`raise_alert` queues `send_alert_email` after commit when it opens an episode; a controller
round that sees the same subject again refreshes the open alert and queues nothing, so an
episode is one e-mail however long it lasts. Two workers given the same alert (a retried
task, a duplicate in the queue) still send one: the message goes only to the worker whose
conditional update set `emailed_at`.

Who is told: the reseller whose customer the alert is about (its e-mail address), and the
operator when the controller is the operator's (settings.ADMINS, else the e-mail addresses
of the active superusers). Settings has no operator address of its own.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from apps.fraud.models import Alert

logger = logging.getLogger(__name__)


def send_alert_email(alert_id: int) -> bool:
    """Send the alert's e-mail once (sets `emailed_at`); False when nobody is to be told."""
    alert = Alert.objects.select_related("controller", "reseller").filter(pk=alert_id).first()
    if alert is None or (alert.controller_id and not alert.controller.notify):
        return False
    to = recipients(alert)
    if not to:
        logger.warning("alert %s: nobody to e-mail (no reseller or operator address)", alert_id)
        return False
    # The claim is the send: whichever worker sets emailed_at sends, any other stops here.
    if not Alert.objects.filter(pk=alert.pk, emailed_at__isnull=True).update(emailed_at=timezone.now()):
        return False
    subject, body = message(alert)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
    except Exception:
        # Not sent: let the task's retry (or a person re-queuing it) send it after all.
        Alert.objects.filter(pk=alert.pk).update(emailed_at=None)
        raise
    logger.info("alert %s e-mailed to %s", alert_id, ", ".join(to))
    return True


def recipients(alert: Alert) -> list[str]:
    """The subject's reseller, and the operator for the operator's own controllers."""
    to = []
    if alert.reseller_id and alert.reseller.email:
        to.append(alert.reseller.email)
    operators_rule = alert.controller_id is None or alert.controller.reseller_id is None
    if operators_rule or not to:
        to.extend(address for address in operator_addresses() if address not in to)
    return to


def operator_addresses() -> list[str]:
    """settings.ADMINS (as mail_admins reads it), else the active superusers' addresses."""
    admins = [entry[1] if isinstance(entry, list | tuple) else entry for entry in settings.ADMINS]
    if admins:
        return admins
    users = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def message(alert: Alert) -> tuple[str, str]:
    """The subject line and plain-text body of an alert's e-mail."""
    subject = f"[Smartswitch] {alert.get_effect_display()}: {alert.subject}"[:200]
    lines = [
        f"{alert.get_kind_display()}: {alert.subject}",
        "",
        f"Measured:  {_number(alert.measured)}"
        + (f" against a threshold of {_number(alert.threshold)}" if alert.threshold is not None else ""),
        f"Window:    {alert.window_minutes} minutes"
        + (f", {alert.attempts} attempts" if alert.attempts is not None else ""),
        f"Action:    {alert.get_effect_display()}",
        f"Since:     {_moment(alert.started_at)}",
        f"Until:     {_until(alert)}",
    ]
    if alert.controller_id:
        lines.append(f"Rule:      {alert.controller.name}")
    if alert.detail:
        lines += ["", alert.detail]
    lines += [
        "",
        "To undo it now (resume, unblock, unlock), open:",
        site_url(reverse("admin:fraud_alert_tool", args=[alert.pk, "undo"])),
        "",
        f"The alert: {site_url(reverse('admin:fraud_alert_change', args=[alert.pk]))}",
        "",
        "This is the only e-mail about this episode; a new one comes if it ends and starts again.",
    ]
    return subject, "\n".join(lines) + "\n"


def site_url(path: str) -> str:
    """`path` on the admin's public address: the first CSRF_TRUSTED_ORIGINS entry, else the
    first named ALLOWED_HOSTS entry over https, else the path alone."""
    origins = [origin for origin in settings.CSRF_TRUSTED_ORIGINS if "*" not in origin]
    if origins:
        return origins[0].rstrip("/") + path
    hosts = [host for host in settings.ALLOWED_HOSTS if host and "*" not in host and not host.startswith(".")]
    return f"https://{hosts[0]}{path}" if hosts else path


def _until(alert: Alert) -> str:
    if alert.ends_at is None:
        return "a person undoes it"
    until = _moment(alert.ends_at)
    if alert.trial_until is not None:
        until += f", then {alert.trial_share} % of calls until {_moment(alert.trial_until)}"
    return until


def _moment(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"


def _number(value) -> str:
    return f"{value.normalize():f}"
