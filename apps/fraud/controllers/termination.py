"""Termination control: suppliers (or supplier + destination) whose ASR, ACD or FAS is bad.

Over the controller's window, each supplier's attempts are counted from the CDRs in one
grouped query (a range of the created_at index, never the whole table); a subject with at
least `min_count` attempts is judged, and a bad one gets an EXCLUDE_ROUTE alert. Call
control reads the open alerts into its snapshot and leaves the supplier's routes out (for
that destination, or all of them) until the alert's end, then gives them `trial_share` %
of the calls until `trial_until`. A subject still bad round after round keeps its one
alert (its block runs on); a healthy one is left alone and its alert runs out
(services.end_expired).

The counts are the routing quality statistics' (apps.routing.quality.window_quality), with
the short answered calls that FAS needs.
"""

from datetime import datetime
from decimal import Decimal

from apps.fraud.controllers.common import Tally, undone_since, window
from apps.fraud.models import Alert, Controller, Metric
from apps.fraud.services import Subject, raise_alert
from apps.peers.models import Peer
from apps.routing.quality import Quality, window_quality

HUNDRED = Decimal(100)
PLACES = Decimal("0.01")


def judge(controller: Controller, quality: Quality) -> Decimal | None:
    """The measured value when `quality` offends the controller; None when it is fine or
    has too few attempts to judge."""
    if quality.attempts < controller.min_count:
        return None
    threshold = controller.threshold
    if controller.metric == Metric.ASR:
        return quality.asr if quality.asr < threshold else None
    if controller.metric == Metric.ACD:
        return quality.acd if quality.acd < threshold else None
    if controller.metric == Metric.FAS:
        return quality.fas if quality.fas > threshold else None
    raise ValueError(f"termination control watches ASR, ACD or FAS, not {controller.metric!r}")


def describe(controller: Controller, quality: Quality, measured: Decimal) -> str:
    unit = "s" if controller.metric == Metric.ACD else " %"
    side = "above" if controller.metric == Metric.FAS else "below"
    return (
        f"{Metric(controller.metric).name} {measured}{unit} ({side} {controller.threshold}{unit}) over "
        f"{quality.attempts} attempts, {quality.answered} answered, {quality.short} answered "
        f"under {controller.short_seconds} s, in the last {controller.window_minutes} minutes"
    )


def run(controller: Controller, *, now: datetime) -> Tally:
    """Judge every supplier in the window; exclude (or warn about) the bad ones."""
    start, end = window(controller, now)
    options = {"per_destination": controller.per_destination, "short_seconds": controller.short_seconds}
    counted = window_quality(start, end, supplier_id=controller.peer_id, **options)
    undone = undone_since(controller, start)
    tally = Tally(judged=len(counted))
    offending = []
    for quality in counted:
        since = undone.get((quality.supplier_id, quality.destination))
        if since is not None:
            # A person re-admitted it inside the window: only what came after counts.
            quality = next(
                (
                    later
                    for later in window_quality(since, end, supplier_id=quality.supplier_id, **options)
                    if later.destination == quality.destination
                ),
                None,
            )
            if quality is None:
                continue
        measured = judge(controller, quality)
        if measured is not None:
            offending.append((quality, measured))
    names = dict(
        Peer.objects.filter(pk__in={quality.supplier_id for quality, _ in offending}).values_list(
            "pk", "name"
        )
    )
    for quality, measured in offending:
        name = names.get(quality.supplier_id, f"supplier {quality.supplier_id}")
        text = f"{name} to {quality.destination}" if quality.destination else f"{name} (every destination)"
        alert, created = raise_alert(
            controller,
            Subject(text=text, peer_id=quality.supplier_id, destination=quality.destination),
            effect=Alert.Effect.EXCLUDE_ROUTE,
            measured=measured,
            threshold=controller.threshold,
            attempts=quality.attempts,
            detail=describe(controller, quality, measured),
            now=now,
        )
        tally.add(alert, created)
    return tally
