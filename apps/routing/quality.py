"""ASR and ACD per supplier and destination over a sliding window of CDRs.

Computed by a periodic task into QualityStat rows (one per supplier and destination seen
in the window); call control reads them into memory and sorts quality rules by them. The
same count (`window_quality`, with the short answered calls FAS needs) is what termination
control judges suppliers by (apps.fraud.controllers.termination).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.cdr.models import Cdr
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.nodes.models import ClusterSettings
from apps.routing.models import QualityStat

HUNDRED = Decimal(100)
PLACES = Decimal("0.01")


@dataclass(frozen=True)
class Quality:
    """One supplier's (or supplier and destination's) calls in a window."""

    supplier_id: int
    destination: str  # "": the supplier as a whole
    attempts: int
    answered: int
    answered_ms: int
    short: int  # answered calls shorter than the controller's short-call seconds

    @property
    def asr(self) -> Decimal:
        """Answered attempts, %."""
        return (HUNDRED * self.answered / self.attempts).quantize(PLACES) if self.attempts else Decimal(0)

    @property
    def acd(self) -> Decimal:
        """Average answered call, seconds (0 when nothing was answered: nothing to average)."""
        if not self.answered:
            return Decimal(0)
        return (Decimal(self.answered_ms) / 1000 / self.answered).quantize(PLACES)

    @property
    def fas(self) -> Decimal:
        """Answered calls that were short, % of the answered ones."""
        return (HUNDRED * self.short / self.answered).quantize(PLACES) if self.answered else Decimal(0)


def window_quality(
    start: datetime,
    end: datetime,
    *,
    per_destination: bool,
    short_seconds: int = 0,
    supplier_id: int | None = None,
) -> list[Quality]:
    """Attempts, answers, answered time and short answers per supplier (and destination)."""
    answered = Q(answered_at__isnull=False)
    rows = Cdr.objects.filter(created_at__gte=start, created_at__lt=end, supplier__isnull=False)
    if supplier_id is not None:
        rows = rows.filter(supplier_id=supplier_id)
    keys = ["supplier_id"]
    if per_destination:
        rows = rows.exclude(destination="")
        keys.append("destination")
    counted = (
        rows.values(*keys)
        .annotate(
            attempts=Count("id"),
            answered=Count("id", filter=answered),
            answered_ms=Sum("duration_ms", filter=answered),
            short=Count("id", filter=answered & Q(duration_ms__lt=short_seconds * 1000)),
        )
        .order_by()
    )
    return [
        Quality(
            supplier_id=row["supplier_id"],
            destination=row.get("destination", ""),
            attempts=row["attempts"],
            answered=row["answered"],
            answered_ms=int(row["answered_ms"] or 0),
            short=row["short"],
        )
        for row in counted
    ]


@retry_on_conflict
def refresh_quality_stats(*, now: datetime | None = None) -> int:
    """Recount every supplier's attempts, answers and answered time in the window; rows kept."""
    now = now or timezone.now()
    start = now - timedelta(minutes=ClusterSettings.load().quality_window)
    existing = {(row.supplier_id, row.destination): row for row in QualityStat.objects.all()}
    seen = set()
    for quality in window_quality(start, now, per_destination=True):
        key = (quality.supplier_id, quality.destination)
        seen.add(key)
        values = {
            "attempts": quality.attempts,
            "answered": quality.answered,
            "answered_seconds": quality.answered_ms // 1000,
            "window_start": start,
            "window_end": now,
        }
        stat = existing.get(key)
        if stat is None:
            QualityStat.objects.create(supplier_id=key[0], destination=key[1], **values)
        else:
            QualityStat.objects.filter(pk=stat.pk).update(**values)
    gone = [stat.pk for key, stat in existing.items() if key not in seen]
    QualityStat.objects.filter(pk__in=gone).delete()
    # Call control re-reads these on its own clock (snapshot.QUALITY_SECONDS), so this does
    # not rebuild its snapshot; live views hear of it.
    announce("routing.QualityStat")
    return len(seen)
