"""The periodic controllers: one round judges every enabled controller over its window.

Run as a cluster singleton every two minutes (apps.fraud.tasks). Termination control
(termination.py) excludes bad suppliers' routes; origination control (origination.py)
warns about or suspends customers whose traffic looks like fraud, and ends the live calls
of the suspended ones. The edge controllers (SIP brute force, logins, repeated numbers)
act per call and are not run here.
"""

import logging
from datetime import datetime

from django.utils import timezone

from apps.fraud.controllers import origination, termination
from apps.fraud.models import Controller, Kind

logger = logging.getLogger(__name__)

RUNNERS = {
    Kind.TERMINATION: termination.run,
    Kind.BURST: origination.run,
    Kind.NEW_DESTINATION: origination.run,
    Kind.SEQUENTIAL: origination.run,
}


def run_all(*, now: datetime | None = None) -> dict:
    """Run every enabled periodic controller once, then end suspended customers' live calls.

    One controller that fails (a bad row, a database hiccup) is logged and the others still
    run: a broken quality rule must not stop fraud control.
    """
    now = now or timezone.now()
    result = {"controllers": 0, "judged": 0, "raised": [], "refreshed": [], "failed": [], "calls_ended": 0}
    controllers = Controller.objects.enabled().filter(kind__in=RUNNERS).order_by("pk")
    for controller in controllers:
        result["controllers"] += 1
        try:
            tally = RUNNERS[controller.kind](controller, now=now)
        except Exception:
            logger.exception("controller %s (%s) failed", controller.pk, controller.name)
            result["failed"].append(controller.pk)
            continue
        result["judged"] += tally.judged
        result["raised"] += tally.raised
        result["refreshed"] += tally.refreshed
    for report in origination.end_suspended_calls(now=now).values():
        result["calls_ended"] += report.ended
    if result["raised"]:
        logger.info("controllers raised alerts %s", result["raised"])
    return result
