"""What every periodic controller shares: its round's tally and a person's undo that holds.

A person who undoes an alert (resumes a customer, re-admits a route) overrules the evidence
the alert was raised on. If the next round judged the same window again it would raise the
alert at once, two minutes after the click; so a subject undone inside the window is judged
only on what happened after the undo.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apps.fraud.models import Alert, Controller


@dataclass
class Tally:
    """What one controller's round did: subjects judged (termination: every supplier with
    calls in the window; origination: the customers found offending), alerts opened and
    alerts refreshed."""

    judged: int = 0
    raised: list[int] = field(default_factory=list)
    refreshed: list[int] = field(default_factory=list)

    def add(self, alert: Alert, created: bool) -> None:
        (self.raised if created else self.refreshed).append(alert.pk)


def window(controller: Controller, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the controller's sliding window ending at `now`."""
    return now - timedelta(minutes=controller.window_minutes), now


def undone_since(controller: Controller, start: datetime) -> dict[tuple[int | None, str], datetime]:
    """(peer id, destination) of this controller's alerts a person undid after `start`: the
    latest undo of each, from which its subject is judged again."""
    undone: dict[tuple[int | None, str], datetime] = {}
    rows = Alert.objects.filter(controller=controller, undone_at__gt=start).values_list(
        "peer_id", "destination", "undone_at"
    )
    for peer_id, destination, undone_at in rows:
        key = (peer_id, destination)
        undone[key] = max(undone_at, undone.get(key, undone_at))
    return undone
