"""The write path of price imports, up to the preview: receive, read, stage, compare, cancel.

A staged and previewed import is made live by apps/rates/services/activation.py; tables,
single rates and templates are apps/rates/services/tables.py. The SQL of staging and
comparing lives in apps/rates/services/pipeline.py.
"""

import hashlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.core.services import ensure_manages
from apps.rates.importing.parsing import FileFormat, open_table
from apps.rates.importing.report import FileError, ImportRefused, ImportReport
from apps.rates.importing.validation import Validator
from apps.rates.models import ImportTemplate, PriceImport, RateTable
from apps.rates.rows import RateRow
from apps.rates.services.pipeline import (
    Clock,
    compare,
    diff_report,
    discard_staged,
    mark_schedules,
    stage,
)
from apps.rates.services.time_profiles import known_periods
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)


IMPORT_CHUNK_ROWS = 20_000  # rows per transaction: small enough for a Galera write-set
# A reading job writes its progress (one single-row UPDATE) at most this often: every
# node's jobs write to the same Galera cluster, and a counter row must not become a hot spot.
PROGRESS_EVERY_SECONDS = 1.0


def _new_import(table, *, actor: Scope, mode, effective_from, skip_invalid, **fields) -> PriceImport:
    ensure_manages(actor, table.reseller_id)
    if mode not in PriceImport.Mode.values:
        raise DomainError(f"Unknown import mode {mode!r}: use full or changes.", field="mode")
    return PriceImport.objects.create(
        table=table,
        mode=mode,
        effective_from=effective_from,
        skip_invalid=skip_invalid,
        created_by=actor.user,
        actor_label=actor.label[:100],
        **{"phase": "parse", **fields},
    )


def _progress(price_import: PriceImport, phase: str, started: float):
    def report(done: int) -> None:
        elapsed = max(time.perf_counter() - started, 1e-6)
        PriceImport.objects.filter(pk=price_import.pk).update(
            phase=phase, rows_done=done, rows_per_second=round(done / elapsed, 1), updated_at=timezone.now()
        )

    return report


def _throttled_progress(price_import: PriceImport, phase: str, started: float):
    """_progress, written at most once every PROGRESS_EVERY_SECONDS (the reading job's)."""
    write = _progress(price_import, phase, started)
    every = PROGRESS_EVERY_SECONDS
    last = started

    def report(done: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every:
            last = now
            write(done)

    return report


def _stage(
    price_import, report: ImportReport, validator: Validator, rows, *, chunk_size, clock, on_progress=None
) -> bool:
    """Validate and stage `rows`, then preview the diff; False (nothing kept) on errors."""
    clock.phase("parse+validate+stage")
    starts: dict = {}
    stage(
        price_import,
        rows,
        chunk_size=chunk_size,
        on_progress=on_progress or _progress(price_import, "stage", time.perf_counter()),
        starts=starts,
    )
    report.starts = {
        "undated": starts.get("undated", False),
        "first": starts["first"].isoformat() if starts.get("first") else None,
        "last": starts["last"].isoformat() if starts.get("last") else None,
    }
    if not report.ok and not price_import.skip_invalid:
        report.state = PriceImport.State.INVALID
        discard_staged(price_import, chunk_size=chunk_size)
        _save_import(price_import, report, clock, state=PriceImport.State.INVALID)
        return False
    clock.phase("schedules")
    PriceImport.objects.filter(pk=price_import.pk).update(phase="preview", updated_at=timezone.now())
    mark_schedules(price_import, validator.schedules)
    _preview(price_import, report, clock, chunk_size=chunk_size)
    return True


def _preview(
    price_import: PriceImport, report: ImportReport, clock, *, chunk_size, compared=False, now=None
) -> None:
    """Compare the staged rows with the live version (unless `compared` still holds) and report."""
    clock.phase("diff")
    version = RateTable.objects.get(pk=price_import.table_id).live_version
    start = price_import.effective_from or now or timezone.now()
    if not compared:
        again = report.preview_version is not None  # the rows hold an earlier comparison
        compare(price_import, version=version, start=start, chunk_size=chunk_size, again=again)
    result = diff_report(price_import, version=version, start=start, now=timezone.now())
    report.diff = {"counts": result["counts"], "samples": result["samples"]}
    report.notice, report.margin = result["notice"], result["margin"]
    report.effective_from = start.isoformat()
    report.preview_version = version


def _save_import(price_import, report, clock, *, state, **fields) -> None:
    if not report.dry_run:
        report.state = state
    report.timings = clock.stop() if clock else report.timings
    PriceImport.objects.filter(pk=price_import.pk).update(
        state=state, report=report.as_dict(), updated_at=timezone.now(), **fields
    )
    price_import.refresh_from_db()


def stage_price_file(
    table: RateTable,
    data: bytes,
    *,
    actor: Scope,
    filename: str = "",
    template: ImportTemplate | None = None,
    mode: str = PriceImport.Mode.CHANGES,
    effective_from=None,
    skip_invalid: bool = False,
    chunk_size: int = IMPORT_CHUNK_ROWS,
) -> PriceImport:
    """Parse, validate and stage a CSV/XLSX price list and preview it; nothing goes live yet."""
    price_import = _new_import(
        table,
        actor=actor,
        mode=mode,
        effective_from=effective_from,
        skip_invalid=skip_invalid,
        template=template,
        file_name=filename[:255],
        file_size=len(data),
        file_sha256=hashlib.sha256(data).hexdigest(),
        rows_total=data.count(b"\n") or 1,
    )
    _read(price_import, data, filename=filename, chunk_size=chunk_size)
    audit.record(actor, "ratetable.import_staged", table, file=filename, state=price_import.state)
    return price_import


def _read(
    price_import: PriceImport, data: bytes, *, filename: str, chunk_size: int, on_progress=None
) -> None:
    """Parse, validate, stage and preview `data`: the work of the CLI and of the reading job."""
    report = ImportReport(table=price_import.table.name, mode=price_import.mode, source=filename or "upload")
    clock = Clock()
    clock.phase("parse+validate+stage")
    fmt = FileFormat.of(price_import.template)
    validator = Validator(report, fmt, skip_invalid=price_import.skip_invalid, periods=known_periods())
    try:
        parsed = open_table(data, fmt, filename=filename)
        rows = validator.records(parsed)
        if _stage(
            price_import, report, validator, rows, chunk_size=chunk_size, clock=clock, on_progress=on_progress
        ):
            _save_import(
                price_import,
                report,
                clock,
                state=PriceImport.State.STAGED,
                rows_total=report.rows_valid,
                rows_done=report.rows_valid,
            )
    except FileError as exc:
        report.error(None, exc.message)
        discard_staged(price_import, chunk_size=chunk_size)
        _save_import(price_import, report, clock, state=PriceImport.State.INVALID)


# An upload in the admin: kept on this node, read by this node's worker cluster.


def price_import_path(price_import: PriceImport) -> Path:
    """Where the node that received `price_import` keeps its file until it is read."""
    return Path(settings.PRICE_IMPORT_DIR) / str(price_import.pk)


def receive_price_file(
    table: RateTable,
    chunks: Iterable[bytes],
    *,
    actor: Scope,
    filename: str = "",
    template: ImportTemplate | None = None,
    mode: str = PriceImport.Mode.CHANGES,
    effective_from=None,
    skip_invalid: bool = False,
) -> PriceImport:
    """Keep an uploaded price list on this node and queue its reading; returns at once.

    The file is written chunk by chunk (never whole in memory) to PRICE_IMPORT_DIR under
    the import's id. Only this node has it, so the job goes to this node's own django-q2
    cluster; read_price_import then does what stage_price_file does for the CLI.
    """
    price_import = _new_import(
        table,
        actor=actor,
        mode=mode,
        effective_from=effective_from,
        skip_invalid=skip_invalid,
        template=template,
        file_name=filename[:255],
        node=settings.NODE_NAME,
        state=PriceImport.State.RECEIVED,
        phase="upload",
    )
    path = price_import_path(price_import)
    digest, size, lines = hashlib.sha256(), 0, 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise DomainError(f"The uploaded file could not be kept on this node: {exc}") from None
    PriceImport.objects.filter(pk=price_import.pk).update(
        file_size=size, file_sha256=digest.hexdigest(), rows_total=lines or 1, phase="queued"
    )
    audit.record(actor, "ratetable.import_received", table, file=filename, price_import=price_import.pk)
    import_id, user_id = price_import.pk, actor.user.pk if actor.user else None
    transaction.on_commit(lambda: _enqueue_reading(import_id, user_id))
    price_import.refresh_from_db()
    return price_import


def _enqueue_reading(import_id: int, user_id: int | None) -> None:
    from django_q.tasks import async_task

    # This node's cluster: the file is on this node's disk and nowhere else.
    async_task("apps.rates.tasks.read_price_import", import_id, user_id, cluster=settings.NODE_NAME)


@retry_on_conflict
def _claim_reading(price_import: PriceImport) -> None:
    current = PriceImport.objects.select_for_update().get(pk=price_import.pk)
    # READING again: django-q2 retries a job whose worker died; the retry starts over.
    if current.state not in (PriceImport.State.RECEIVED, PriceImport.State.READING):
        raise ImportRefused(f"This import is {current.get_state_display().lower()}; it was read already.")
    if current.node != settings.NODE_NAME:
        raise ImportRefused(f"The file of this import is on node {current.node}, not {settings.NODE_NAME}.")
    PriceImport.objects.filter(pk=current.pk).update(
        state=PriceImport.State.READING,
        phase="read",
        rows_done=0,
        rows_per_second=0,
        started_at=timezone.now(),
        updated_at=timezone.now(),
    )


def read_price_import(
    price_import: PriceImport, *, actor: Scope, chunk_size: int = IMPORT_CHUNK_ROWS
) -> PriceImport:
    """Parse, validate, stage and preview an uploaded file (the job behind the admin upload).

    Runs on the node that holds the file. Progress (rows done, rows/s) is written at most
    once a second. The file is deleted once the import is previewed (staged) or rejected
    (invalid: the report lists every error with its line); if reading fails unexpectedly
    the import is marked failed and the file is kept for diagnosis (its path is in the
    report; cancelling the import deletes it).
    """
    _claim_reading(price_import)
    price_import.refresh_from_db()
    path = price_import_path(price_import)
    started = time.perf_counter()
    try:
        discard_staged(price_import, chunk_size=chunk_size)  # what a killed earlier run staged
        _read(
            price_import,
            path.read_bytes(),
            filename=price_import.file_name,
            chunk_size=chunk_size,
            on_progress=_throttled_progress(price_import, "read", started),
        )
    except Exception as exc:
        report = ImportReport(
            table=price_import.table.name, mode=price_import.mode, source=price_import.file_name or "upload"
        )
        # The report is shown to the table's owner, resellers included: no paths or internals
        # there; the operator finds them in the log and in the failed task.
        logger.exception("price import %s: reading %s on %s failed", price_import.pk, path, price_import.node)
        report.error(
            None,
            f"reading the file failed on node {price_import.node} ({type(exc).__name__}); the file "
            "is kept for the operator to look at until the import is cancelled",
        )
        discard_staged(price_import, chunk_size=chunk_size)
        _save_import(price_import, report, None, state=PriceImport.State.FAILED, finished_at=timezone.now())
        raise
    path.unlink(missing_ok=True)
    audit.record(
        actor,
        "ratetable.import_staged",
        price_import.table,
        file=price_import.file_name,
        state=price_import.state,
    )
    return price_import


def stage_price_rows(
    table,
    rows: Iterable[RateRow],
    *,
    actor: Scope,
    mode,
    effective_from=None,
    skip_invalid=False,
    source="rows",
    chunk_size=IMPORT_CHUNK_ROWS,
) -> PriceImport:
    """Validate and stage RateRow objects (sell generation, API) and preview them."""
    price_import = _new_import(
        table,
        actor=actor,
        mode=mode,
        effective_from=effective_from,
        skip_invalid=skip_invalid,
        file_name=source,
    )
    report = ImportReport(table=table.name, mode=mode, source=source)
    clock = Clock()
    validator = Validator(report, skip_invalid=skip_invalid, periods=known_periods())
    if _stage(price_import, report, validator, validator.rate_rows(rows), chunk_size=chunk_size, clock=clock):
        _save_import(
            price_import, report, clock, state=PriceImport.State.STAGED, rows_total=report.rows_valid
        )
    return price_import


def cancel_price_import(
    price_import: PriceImport, *, actor: Scope, chunk_size=IMPORT_CHUNK_ROWS
) -> PriceImport:
    """Drop an import that was not confirmed, with its staged rows and its kept file.

    An upload still waiting for a worker can be cancelled too (its node may be gone); the
    worker then finds it cancelled and does nothing.
    """
    ensure_manages(actor, price_import.table.reseller_id)
    cancellable = (PriceImport.State.RECEIVED, PriceImport.State.STAGED, PriceImport.State.FAILED)
    if price_import.state not in cancellable:
        raise ImportRefused("Only a waiting, previewed or failed import can be cancelled.")
    discard_staged(price_import, chunk_size=chunk_size)
    if price_import.node == settings.NODE_NAME:
        price_import_path(price_import).unlink(missing_ok=True)  # kept after a failed reading
    PriceImport.objects.filter(pk=price_import.pk).update(
        state=PriceImport.State.CANCELLED, updated_at=timezone.now()
    )
    audit.record(actor, "ratetable.import_cancelled", price_import.table, price_import=price_import.pk)
    price_import.refresh_from_db()
    return price_import
