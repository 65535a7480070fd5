"""Close reservations that no dialog owns: ask the node's OpenSIPS which calls it holds.

A reservation can outlive its call without anything telling us: a release lost on the way,
an answer OpenSIPS never received, a dialog lost (an OpenSIPS killed before it wrote it to
its node's table; one whose table shows it answered leaves an estimated CDR).
The expiry task releases such a hold after the call's maximum duration; this sweep, run on
each node against its own OpenSIPS, releases it within minutes.
"""

from datetime import datetime, timedelta

from django.utils import timezone

from apps.billing.models import Reservation
from apps.billing.services import reservations
from apps.cdr import lost
from apps.nodes.models import Node
from engines.opensips import MIClient, MIError
from engines.opensips.mi import DIALOG_NOT_FOUND
from engines.opensips.state import read_dialog

# A reservation younger than this may not have its dialog yet (OpenSIPS creates it once
# call control's answer is read), and clocks of two processes differ a little.
MARGIN = timedelta(minutes=2)


def _holds(client: MIClient, call_id: str) -> bool:
    """Whether OpenSIPS holds a live dialog of `call_id`, asked by Call-ID."""
    try:
        result = client.execute("dlg_list", {"callid": call_id}) or {}
    except MIError as exc:
        if exc.code == DIALOG_NOT_FOUND:
            return False
        raise
    dialog = result.get("Dialog") if isinstance(result, dict) else None
    return dialog is None or read_dialog(dialog).active  # an unreadable answer keeps the money


def release_without_dialog(node: Node, client: MIClient, *, now: datetime | None = None) -> int:
    """Release `node`'s reservations whose call its OpenSIPS no longer holds; how many.

    The full list is read first, then only the reservations made `MARGIN` before it are
    compared; each one missing from the list is asked for again by its Call-ID before its
    money is released, because a call that ends while the list is read page by page shifts
    the later ones down, and one of them can be missed. MI errors propagate: nothing is
    released on a partial answer.
    """
    listed_at = now or timezone.now()
    live = {dialog.call_id for dialog in client.dialogs(context=False) if dialog.active}
    held = (
        Reservation.objects.active()
        .filter(node=node, created_at__lt=listed_at - MARGIN)
        .order_by("pk")
        .values_list("pk", "call_id")
    )
    orphans = [(pk, call_id) for pk, call_id in held if call_id not in live]
    released = 0
    for pk, call_id in orphans:
        if not _holds(client, call_id):
            # Answered as the node's dialog table recorded it: an estimated CDR (apps.cdr.lost).
            lost.estimate(Reservation.objects.get(pk=pk), now=listed_at)
            released += reservations.release(pk, outcome=Reservation.Outcome.EXPIRED)
    return released
