"""ASR and ACD per supplier and destination over a sliding window of CDRs.

Computed by a periodic task into QualityStat rows (one per supplier and destination seen
in the window); call control reads them into memory and sorts quality rules by them.
"""

from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.cdr.models import Cdr
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.nodes.models import ClusterSettings
from apps.routing.models import QualityStat


@retry_on_conflict
def refresh_quality_stats(*, now: datetime | None = None) -> int:
    """Recount every supplier's attempts, answers and answered time in the window; rows kept."""
    now = now or timezone.now()
    start = now - timedelta(minutes=ClusterSettings.load().quality_window)
    counted = (
        Cdr.objects.filter(created_at__gte=start, created_at__lt=now, supplier__isnull=False)
        .exclude(destination="")
        .values("supplier_id", "destination")
        .annotate(
            attempts=Count("id"),
            answered=Count("id", filter=Q(answered_at__isnull=False)),
            answered_ms=Sum("duration_ms"),
        )
        .order_by()
    )
    existing = {(row.supplier_id, row.destination): row for row in QualityStat.objects.all()}
    seen = set()
    for row in counted:
        key = (row["supplier_id"], row["destination"])
        seen.add(key)
        values = {
            "attempts": row["attempts"],
            "answered": row["answered"],
            "answered_seconds": (row["answered_ms"] or 0) // 1000,
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
