"""Read CSV and XLSX price lists into (line number, cells) records, keeping the file's lines.

A template (`FileFormat`) names the columns and says how numbers and dates are written.
Cells stay strings here: validation checks them with regular expressions, which is much
faster than building Decimals for a million rows that the database converts anyway.
"""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from apps.rates.importing.report import FileError

CANONICAL = (
    "prefix",
    "destination",
    "rate",
    "connection_fee",
    "min_seconds",
    "increment_seconds",
    "free_seconds",
    "effective_from",
    "effective_to",
    "period",  # a time profile's name (weekend, offpeak); empty: any time
)
INCREMENT = "increment"  # the pseudo-column of a "30/6/0" cell
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FileFormat:
    """What an import template says about a file; the default reads the canonical columns."""

    columns: dict[str, str] = field(default_factory=dict)  # header in file -> our column or ""
    decimal_comma: bool = False
    date_format: str = ""  # strftime; empty: ISO 8601
    increment_column: str = ""
    clean_prefix: bool = True
    skip_lines: int = 0
    delimiter: str = ","

    @classmethod
    def of(cls, template) -> "FileFormat":
        if template is None:
            return cls()
        return cls(
            columns=dict(template.columns or {}),
            decimal_comma=template.decimal_comma,
            date_format=template.date_format,
            increment_column=template.increment_column,
            clean_prefix=template.clean_prefix,
            skip_lines=template.skip_lines,
            delimiter=template.delimiter or ",",
        )


@dataclass
class Table:
    """A file's header mapped to our columns, and an iterator over its data records."""

    positions: dict[str, int]  # our column -> index in a record
    width: int
    header_line: int
    records: Iterator[tuple[int, list]]


def decode(data: bytes) -> str:
    """Text of a CSV file: UTF-8 with or without a BOM, else Latin-1 (which never fails)."""
    if data.startswith(UTF8_BOM):
        return data[len(UTF8_BOM) :].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def is_xlsx(data: bytes, filename: str = "") -> bool:
    # An XLSX file is a zip archive; the name alone is not trusted.
    return data[:4] == b"PK\x03\x04" or filename.lower().endswith(".xlsx")


def _csv_records(text: str, delimiter: str) -> Iterator[tuple[int, list]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for cells in reader:
            # line_num is the last physical line of the record (quoted fields may span lines);
            # errors point at the line where the record starts.
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise FileError(f"line {reader.line_num}: {exc}") from None


def _xlsx_records(data: bytes) -> Iterator[tuple[int, list]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors on junk
        raise FileError(f"the file is not a readable XLSX workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(value) for value in values]
    finally:
        book.close()


def _cell_text(value):
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value  # validation takes a real date as it is
    if isinstance(value, float):
        # Spreadsheets store prices as doubles; repr is their shortest exact spelling, and
        # format(..., "f") keeps 1e-05 from reaching validation in scientific notation.
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    return str(value)


def open_table(data: bytes, fmt: FileFormat, *, filename: str = "") -> Table:
    """Map the header of `data` to our columns; raise FileError for what no row can fix."""
    xlsx = is_xlsx(data, filename)
    records = _xlsx_records(data) if xlsx else _csv_records(decode(data), fmt.delimiter)
    for _ in range(fmt.skip_lines):
        if next(records, None) is None:
            break
    # Blank lines before the header are common in spreadsheets exported to CSV.
    filled = ((n, cells) for n, cells in records if any(str(c).strip() for c in cells))
    header_line, header = next(filled, (0, None))
    if header is None:
        raise FileError("the file has no header line")
    mapping = {name.strip().lower(): target for name, target in fmt.columns.items()}
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = str(cell).strip()
        key = name.lower()
        if fmt.increment_column and key == fmt.increment_column.strip().lower():
            target = INCREMENT
        elif key in mapping:
            target = mapping[key]
            if not target:
                continue  # the template ignores this column
            if target not in CANONICAL:
                raise FileError(f"the template maps '{name}' to unknown column '{target}'")
        elif key.lstrip("\ufeff") in CANONICAL:
            target = key.lstrip("\ufeff")
        elif not name:
            continue  # trailing empty header cells (a trailing delimiter)
        else:
            raise FileError(
                f"line {header_line}: unknown column '{name}' "
                f"(expected {', '.join(CANONICAL)}, or an import template that maps it)"
            )
        if target in positions:
            raise FileError(f"line {header_line}: column '{name}' appears twice")
        positions[target] = index
    missing = [name for name in ("prefix", "rate") if name not in positions]
    if missing:
        raise FileError(f"line {header_line}: the header has no {' and no '.join(missing)} column")
    return Table(positions=positions, width=len(header), header_line=header_line, records=records)
