"""Exports as CSV or XLSX, streamed in bounded memory however many rows there are.

Every list a person can filter (calls, the ledger, prices, reports) is exported through
`export_response`: the same rows the page shows, read in keyset chunks (`keyset_chunks`),
never loaded whole.

- CSV streams as it is read. Under ASGI Django buffers a synchronous iterator whole before
  sending it, so the rows are handed over through an asynchronous one.
- XLSX is a zip, written at the end: openpyxl's write-only workbook keeps each sheet in a
  temporary file while rows are appended, and the finished file is streamed from disk.

Text a client typed (a reference, a caller ID) is made spreadsheet-safe: a leading = + - @
would otherwise run as a formula when the file is opened.
"""

import csv
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone

FORMATS = ("csv", "xlsx")
CHUNK = 2000
# Excel's last row; an XLSX export stops there and says so in its last line.
XLSX_MAX_ROWS = 1_048_576
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def spreadsheet_safe(value) -> str:
    """Text that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def keyset_chunks(
    queryset: QuerySet, key: str, columns: Sequence[str], *, size: int = CHUNK
) -> Iterator[list]:
    """Rows of `columns` from `queryset`, newest `key` first, in lists of `size`.

    Keyset pagination on (key, pk) rather than one long cursor or OFFSET: every chunk is a
    short indexed query on MariaDB, PostgreSQL and SQLite, however large the table, and no
    connection stays in a long read while the client downloads.
    """
    rows = queryset.order_by(f"-{key}", "-pk").values_list("pk", key, *columns)
    after = None
    while True:
        page = rows
        if after is not None:
            moment, pk = after
            page = rows.filter(Q(**{f"{key}__lt": moment}) | Q(**{key: moment, "pk__lt": pk}))
        batch = list(page[:size])
        if not batch:
            return
        yield [row[2:] for row in batch]
        after = (batch[-1][1], batch[-1][0])


def _csv_value(value):
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat(timespec="seconds") if timezone.is_aware(value) else value
    if isinstance(value, str):
        return spreadsheet_safe(value)
    return "" if value is None else value


def _xlsx_value(value):
    if isinstance(value, datetime):
        # Excel has no time zones: the local wall-clock time, as the pages show it.
        return timezone.localtime(value).replace(tzinfo=None) if timezone.is_aware(value) else value
    if isinstance(value, str):
        return spreadsheet_safe(value)
    if isinstance(value, (int, Decimal, date)) or value is None:
        return value
    return str(value)


class _Echo:
    def write(self, value):
        return value


def _csv_pieces(header: Sequence[str], chunks: Iterable[Iterable[Sequence]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for chunk in chunks:
        yield "".join(writer.writerow([_csv_value(v) for v in row]) for row in chunk)


async def _asynchronously(pieces: Iterator[str]):
    step = sync_to_async(next, thread_sensitive=True)
    while (piece := await step(pieces, None)) is not None:
        yield piece


def _xlsx_file(header: Sequence[str], chunks: Iterable[Iterable[Sequence]], title: str):
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(title[:31] or "Sheet1")
    sheet.append(list(header))
    written = 1
    for chunk in chunks:
        for row in chunk:
            if written == XLSX_MAX_ROWS - 1:
                sheet.append([f"Stopped at Excel's {XLSX_MAX_ROWS:,} rows: export CSV for the rest."])
                break
            sheet.append([_xlsx_value(v) for v in row])
            written += 1
        else:
            continue
        break
    handle = tempfile.TemporaryFile()  # noqa: SIM115  (FileResponse closes it)
    book.save(handle)
    handle.seek(0)
    return handle


def export_response(
    request,
    fmt: str,
    *,
    filename: str,
    header: Sequence[str],
    chunks: Iterable[Iterable[Sequence]],
    title: str = "",
):
    """The rows of `chunks` (lists of rows) as a CSV or XLSX download named `filename`.<fmt>."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "xlsx":
        response = FileResponse(
            _xlsx_file(header, chunks, title or filename), content_type=CONTENT_TYPES["xlsx"]
        )
    else:
        pieces = _csv_pieces(header, chunks)
        content = _asynchronously(pieces) if isinstance(request, ASGIRequest) else pieces
        response = StreamingHttpResponse(content, content_type=CONTENT_TYPES["csv"])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response
