"""apps.core.exports: keyset chunks that lose and repeat nothing, CSV streamed (asynchronously
under ASGI), XLSX that opens, and text a spreadsheet would run as a formula kept as text."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import openpyxl
import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncRequestFactory, RequestFactory
from django.test.utils import CaptureQueriesContext

from apps.cdr.models import Cdr
from apps.core import exports
from apps.core.exports import export_response, keyset_chunks, spreadsheet_safe
from tests.factories import CdrFactory


@pytest.mark.parametrize(
    ("text", "safe"),
    [("=1+2", "'=1+2"), ("+44", "'+44"), ("-3", "'-3"), ("@SUM", "'@SUM"), ("ok", "ok"), (None, "")],
)
def test_text_a_spreadsheet_would_run_is_kept_as_text(text, safe):
    assert spreadsheet_safe(text) == safe


def test_keyset_chunks_cut_ties_by_pk_without_losing_or_repeating_rows(cast):
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    made = [CdrFactory(customer=cast.a.customer, created_at=moment, callee=f"{n}") for n in range(7)]

    with CaptureQueriesContext(connection) as queries:
        chunks = list(keyset_chunks(Cdr.objects.all(), "created_at", ["callee"], size=3))

    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [row[0] for chunk in chunks for row in chunk] == [c.callee for c in reversed(made)]
    assert len(queries) == 4  # one short read per chunk, and the empty one that ends it


def _request(path="/x"):
    return RequestFactory().get(path)


def test_csv_writes_local_times_and_exact_amounts():
    rows = [[datetime(2024, 1, 1, 12, tzinfo=UTC), Decimal("0.000450"), "=cmd", None]]

    response = export_response(
        _request(), "csv", filename="f", header=["when", "amount", "text", "none"], chunks=[rows]
    )
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert response["Content-Disposition"] == 'attachment; filename="f.csv"'
    assert lines == [
        ["when", "amount", "text", "none"],
        ["2024-01-01T12:00:00+00:00", "0.000450", "'=cmd", ""],
    ]


def test_xlsx_opens_with_typed_cells():
    rows = [[datetime(2024, 1, 1, 12, tzinfo=UTC), Decimal("1.5"), 7, "=x"]]

    response = export_response(_request(), "xlsx", filename="f", header=["a", "b", "c", "d"], chunks=[rows])
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active

    assert list(sheet.values) == [("a", "b", "c", "d"), (datetime(2024, 1, 1, 12), 1.5, 7, "'=x")]


def test_xlsx_stops_at_excels_last_row_and_says_so(monkeypatch):
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 4)

    response = export_response(
        _request(), "xlsx", filename="f", header=["n"], chunks=[[[n] for n in range(10)]]
    )
    values = [
        row[0]
        for row in openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content))).active.values
    ]

    assert values[:3] == ["n", 0, 1]
    assert values[3].startswith("Stopped at Excel's 4 rows")
    assert len(values) == 4


def test_csv_streams_one_piece_per_chunk_asynchronously_under_asgi():
    request = AsyncRequestFactory().get("/x")
    chunks = ([[n]] for n in range(3))

    response = export_response(request, "csv", filename="f", header=["n"], chunks=chunks)

    async def pieces():
        return [piece async for piece in response.streaming_content]

    assert response.is_async
    assert len(async_to_sync(pieces)()) == 4


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="Unknown export format"):
        export_response(_request(), "pdf", filename="f", header=[], chunks=[])
