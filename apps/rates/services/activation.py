"""The write path that makes a staged price import live: claim, activate, switch, confirm.

Activation writes the table's next version beside the live one and switches to it
(apps/rates/services/versions.py); a crashed activation is resumed. import_rows and
import_price_file stage and activate in one call (generated prices, the CLI).
"""

import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.core.db import retry_on_conflict
from apps.core.services import ensure_manages
from apps.rates.importing.report import ImportRefused, ImportReport
from apps.rates.models import PriceImport, RateTable
from apps.rates.rows import RateRow
from apps.rates.services.imports import (
    IMPORT_CHUNK_ROWS,
    _preview,
    _progress,
    _save_import,
    stage_price_file,
    stage_price_rows,
)
from apps.rates.services.pipeline import (
    Clock,
    _db_time,
    discard_staged,
    has_live_rows,
    has_undated_rows,
    margin_check,
    periods_change_between,
    staged_count,
)
from apps.rates.services.versions import discard_version, switch, write_version
from apps.tenancy.scope import Scope

STALE_ACTIVATION = timedelta(minutes=10)  # an activation silent this long has crashed


@retry_on_conflict
def _claim(price_import: PriceImport, *, resume: bool) -> int:
    current = PriceImport.objects.select_for_update().get(pk=price_import.pk)
    table = RateTable.objects.select_for_update().get(pk=current.table_id)
    allowed = {PriceImport.State.STAGED, PriceImport.State.QUEUED}
    if resume:
        allowed |= {PriceImport.State.ACTIVATING, PriceImport.State.FAILED}
    if current.state not in allowed:
        raise ImportRefused(f"This import is {current.get_state_display().lower()}; it cannot be activated.")
    busy = (
        PriceImport.objects.filter(table=table, state=PriceImport.State.ACTIVATING)
        .filter(updated_at__gte=timezone.now() - STALE_ACTIVATION)
        .exclude(pk=current.pk)
    )
    if busy.exists():
        raise ImportRefused(
            f"Another import into {table.name} is being activated; try again when it is done."
        )
    PriceImport.objects.filter(pk=current.pk).update(
        state=PriceImport.State.ACTIVATING,
        base_version=table.live_version,
        phase="clean",
        rows_done=0,
        started_at=timezone.now(),
        updated_at=timezone.now(),
    )
    return table.live_version


def _preview_holds(price_import: PriceImport, report: ImportReport, version: int, now) -> tuple[bool, bool]:
    """(the comparison holds, the whole diff report holds) at `now`, for an undated import.

    The comparison depends on the clock only for rows without a date, and then only if a
    live period starts or ends between the preview and now. The report also counts closed
    codes (live periods ending after now) and flags dated rows starting before now plus
    the notice days: both stay the same unless something starts or ends in between.
    """
    if report.preview_version != version or not report.effective_from:
        return False, False
    since = datetime.fromisoformat(report.effective_from)
    starts = report.starts or {}
    undated = starts["undated"] if "undated" in starts else has_undated_rows(price_import)
    table = price_import.table
    moved = periods_change_between(table, version, since, now)
    if undated:
        return not moved, False
    days = timedelta(days=table.price_increase_notice_days)
    first, last = starts.get("first"), starts.get("last")
    drifts = first is None or (
        datetime.fromisoformat(first) < now + days and datetime.fromisoformat(last) >= since + days
    )
    return True, not moved and not drifts


def activate_price_import(
    price_import: PriceImport, *, actor: Scope, chunk_size: int = IMPORT_CHUNK_ROWS, resume: bool = False
) -> PriceImport:
    """Write the staged rows as the table's next version in chunks, then switch to it.

    Safe to run again after a crash (`resume=True`): whatever a broken run wrote is still
    invisible and is removed first.
    """
    ensure_manages(actor, price_import.table.reseller_id)
    version = _claim(price_import, resume=resume)
    report = ImportReport.from_dict(price_import.report)
    clock = Clock()
    clock.timings.update(report.timings)  # parse and stage times of the preview
    table = price_import.table
    try:
        clock.phase("clean")
        if discard_version(table, version, chunk_size=chunk_size):
            report.warn(f"removed what an interrupted activation of version {version + 1} had written")
        if staged_count(price_import) != report.rows_valid:
            raise ImportRefused("The staged rows of this import are incomplete; upload the file again.")
        # The preview's comparison still holds if the table has not moved since and the
        # rows' start did not depend on the clock (a fixed date, or nothing live to compare).
        if report.preview_version == version and (
            price_import.effective_from is not None or not has_live_rows(table, version)
        ):
            clock.phase("activate")
            report.effective_from = (price_import.effective_from or timezone.now()).isoformat()
        else:
            # Rows start at the activation time. The per-row comparison (the costly part)
            # still holds if the version is the one compared and the clock cannot change
            # it; the report too if nothing in it depends on the time that passed.
            now = timezone.now()
            compared, reported = _preview_holds(price_import, report, version, now)
            if reported:
                clock.phase("diff")
                report.effective_from = now.isoformat()
                report.margin = margin_check(
                    price_import,
                    {"t": table.pk, "v": version, "e": _db_time(now), "i": price_import.pk},
                )
            else:
                _preview(price_import, report, clock, chunk_size=chunk_size, compared=compared, now=now)
        start = datetime.fromisoformat(report.effective_from)
        clock.phase("activate")
        progress = _progress(price_import, "activate", time.perf_counter())
        write_version(price_import, version=version, start=start, chunk_size=chunk_size, on_progress=progress)
        clock.phase("switch")
        _switch(price_import, report, clock, actor=actor, version=version)
    except Exception as exc:
        report.error(None, f"activation failed: {exc}")
        _save_import(price_import, report, clock, state=PriceImport.State.FAILED, finished_at=timezone.now())
        raise
    clock.phase("cleanup")
    discard_staged(price_import, chunk_size=chunk_size)
    report.timings = clock.stop()
    PriceImport.objects.filter(pk=price_import.pk).update(report=report.as_dict())
    price_import.refresh_from_db()
    return price_import


@retry_on_conflict
def _switch(price_import, report, clock, *, actor, version) -> None:
    switch(price_import.table, version=version)
    report.version = version + 1
    _save_import(
        price_import,
        report,
        None,
        state=PriceImport.State.DONE,
        version=version + 1,
        finished_at=timezone.now(),
        phase="done",
    )
    audit.record(
        actor, "ratetable.imported", price_import.table, version=version + 1, counts=report.diff.get("counts")
    )
    table_id = price_import.table_id
    transaction.on_commit(lambda: _rebuild_lookup_index(table_id))


def _rebuild_lookup_index(table_id: int) -> None:
    from apps.cluster.topology import try_send_to_node
    from apps.nodes.models import Node

    # Every node keeps its own index file: each enabled node's worker cluster rebuilds its
    # own, this node's included even before it is registered as a Node. A node that cannot
    # be reached now is skipped: its lookups notice the table's new version and build the
    # file themselves after STALE_GRACE_SECONDS (apps.rates.lookup).
    names = {settings.NODE_NAME, *Node.objects.enabled().values_list("name", flat=True)}
    for name in sorted(names):
        try_send_to_node(name, "apps.rates.lookup.rebuild_index", table_id)


@retry_on_conflict
def confirm_price_import(price_import: PriceImport, *, actor: Scope) -> PriceImport:
    """Queue a previewed import for activation by a worker."""
    ensure_manages(actor, price_import.table.reseller_id)
    current = PriceImport.objects.select_for_update().get(pk=price_import.pk)
    if current.state != PriceImport.State.STAGED:
        raise ImportRefused(f"This import is {current.get_state_display().lower()}; it cannot be confirmed.")
    current.state = PriceImport.State.QUEUED
    current.save(update_fields=["state", "updated_at"])
    audit.record(actor, "ratetable.import_confirmed", current.table, price_import=current.pk)
    transaction.on_commit(lambda: _enqueue_activation(current.pk, actor))
    return current


def _enqueue_activation(import_id: int, actor: Scope) -> None:
    from django_q.tasks import async_task

    async_task("apps.rates.tasks.activate_price_import", import_id, actor.user.pk if actor.user else None)


def _finish(price_import: PriceImport, *, actor, dry_run, chunk_size) -> ImportReport:
    if price_import.state != PriceImport.State.STAGED:
        return ImportReport.from_dict(price_import.report)
    if dry_run:
        discard_staged(price_import, chunk_size=chunk_size)
        report = ImportReport.from_dict(price_import.report)
        report.dry_run = True
        report.state = "previewed only (dry run), nothing written"
        _save_import(price_import, report, None, state=PriceImport.State.CANCELLED)
        return report
    activate_price_import(price_import, actor=actor, chunk_size=chunk_size)
    return ImportReport.from_dict(price_import.report)


def import_rows(
    table: RateTable,
    rows: Iterable[RateRow],
    *,
    mode: str,
    effective_from,
    actor: Scope,
    dry_run: bool = False,
    skip_invalid: bool = False,
    chunk_size: int = IMPORT_CHUNK_ROWS,
) -> ImportReport:
    """Validate `rows` and make them the table's next live version; report.ok says if it did.

    On any error nothing is written, unless `skip_invalid` (then the report lists the
    rejected rows). `dry_run` stops after the preview.
    """
    price_import = stage_price_rows(
        table,
        rows,
        actor=actor,
        mode=mode,
        effective_from=effective_from,
        skip_invalid=skip_invalid,
        chunk_size=chunk_size,
    )
    return _finish(price_import, actor=actor, dry_run=dry_run, chunk_size=chunk_size)


def import_price_file(
    table: RateTable, data: bytes, *, actor: Scope, dry_run: bool = False, **options
) -> ImportReport:
    """stage_price_file, then activate at once (the CLI): returns the report."""
    chunk_size = options.get("chunk_size", IMPORT_CHUNK_ROWS)
    price_import = stage_price_file(table, data, actor=actor, **options)
    return _finish(price_import, actor=actor, dry_run=dry_run, chunk_size=chunk_size)
