"""End a suspended customer's live calls through the OpenSIPS of the node each call is on.

Suspending a customer stops its new calls; the calls already up (a hacked PBX's dozens of
calls to a premium number) would run on for their whole granted time. So origination
control ends them: each live reservation of the customer names its node and Call-ID, and
that node's OpenSIPS is asked over MI to end the dialog (BYE both ways).

Each call is claimed, asked for and recorded as online billing does it
(apps.billing.services.online): the reservation's `cut_at` and `cut_result` say it was
ended, so online billing counts it only for what it used, and of two runs (this one and
online billing, or two rounds) only one asks the engine. An engine that cannot be reached
is asked again a few times, then left: its calls are given back and the next round tries
again. Nothing is silent: every outcome is logged, and the caller writes the summary into
the alert.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from apps.billing.models import Reservation
from apps.billing.services.online import ERROR_PREFIX, claim_cut, record_cut, unclaim_cut
from engines import EngineError
from engines.opensips.mi import DialogEnd, MIClient, MIUnavailable, url_for

logger = logging.getLogger(__name__)

# An unreachable engine (refused, timed out) is asked this many times per call, with these
# pauses in between, before its calls are left for the next round.
ATTEMPTS = 3
PAUSES = (0.2, 1.0)


@dataclass
class HangupReport:
    """What became of a customer's live calls: ended, already over (gone), refused by the
    engine (failed), or left for the next round (engine unreachable, or no node known)."""

    ended: int = 0
    gone: int = 0
    failed: int = 0
    left: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ended + self.gone + self.failed + self.left

    def summary(self) -> str:
        if not self.total:
            return "No live calls to end."
        words = (
            f"Live calls: {self.ended} ended, {self.gone} already over, "
            f"{self.failed} refused, {self.left} left"
        )
        return "; ".join([words, *self.notes])


def live_calls(peer_ids) -> list[Reservation]:
    """The customers' live calls not yet asked to end, through each account's live index."""
    return list(
        Reservation.objects.filter(
            account__peer_id__in=list(peer_ids), released_at__isnull=True, cut_at__isnull=True
        )
        .select_related("node", "customer")
        .order_by("created_at", "pk")
    )


def end_live_calls(
    peer_id: int, *, now: datetime | None = None, calls: list[Reservation] | None = None
) -> HangupReport:
    """Ask each live call's node to end it; report what happened to every one."""
    now = now or timezone.now()
    report = HangupReport()
    unreachable: dict[int, str] = {}
    for call in live_calls([peer_id]) if calls is None else calls:
        node = call.node
        if node is None:
            report.left += 1
            report.notes.append(f"{call.call_id}: no node recorded for it")
            logger.warning("fraud hang-up: call %s of customer %s has no node", call.call_id, peer_id)
            continue
        if node.pk in unreachable:
            report.left += 1
            continue
        if not claim_cut(call.pk, now):
            continue  # released, or being cut by another run, since it was read
        client = MIClient(
            url_for(settings.OPENSIPS_MI_URL, node.management_address), settings.OPENSIPS_MI_TIMEOUT
        )
        try:
            outcome = _end(client, call.call_id)
        except MIUnavailable as exc:
            unclaim_cut(call.pk)
            unreachable[node.pk] = str(exc)
            report.left += 1
            report.notes.append(f"node {node.name} unreachable ({exc}): its calls are tried again next round")
            logger.warning(
                "fraud hang-up: node %s unreachable, call %s left: %s", node.name, call.call_id, exc
            )
            continue
        except EngineError as exc:
            record_cut(call, f"{ERROR_PREFIX}{exc}")
            report.failed += 1
            report.notes.append(f"{call.call_id} on {node.name}: {exc}")
            logger.warning("fraud hang-up: node %s refused to end call %s: %s", node.name, call.call_id, exc)
            continue
        except Exception:
            unclaim_cut(call.pk)
            raise
        record_cut(call, outcome.value)
        if outcome is DialogEnd.ENDED:
            report.ended += 1
        else:
            report.gone += 1
        logger.info(
            "fraud hang-up: call %s of customer %s on %s %s", call.call_id, peer_id, node.name, outcome
        )
    return report


def _end(client: MIClient, call_id: str) -> DialogEnd:
    """end_dialog, asked again after a pause while the engine cannot be reached."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return client.end_dialog(call_id)
        except MIUnavailable:
            if attempt == ATTEMPTS:
                raise
            time.sleep(PAUSES[min(attempt, len(PAUSES)) - 1])
    raise AssertionError("unreachable")
