"""Check price-list rows and turn them into staging tuples, with the file's line numbers.

The hot loop runs once per row of a million-row deck: cells are checked with compiled
regular expressions and kept as strings (the database parses the numbers), dates are
parsed once per distinct spelling, and no ORM object is built.
"""

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from operator import itemgetter

from apps.core.money import MAX_PRICE, MONEY_PLACES
from apps.rates.importing.parsing import INCREMENT, FileFormat, Table
from apps.rates.importing.report import ImportReport
from apps.rates.rows import RateRow

# Above this a price per minute is a typo (a missing decimal point), not a tariff: the
# dearest satellite and premium destinations stay well under it. Never above MAX_PRICE,
# the most any price may be anywhere (apps.core.money).
ABSURD_RATE = min(Decimal(100), MAX_PRICE)
ABSURD_FEE = min(Decimal(100), MAX_PRICE)
MAX_SECONDS = 86_400

AMOUNT_RE = re.compile(r"(?:\d{1,13}(?:\.\d*)?|\.\d+)\Z")
SECONDS_RE = re.compile(r"\d{1,6}\Z")
DIGITS_RE = re.compile(r"\d{1,32}\Z", re.ASCII)
PREFIX_NOISE_RE = re.compile(r"[\s.\-()]")
# A price under 100 with at most 6 decimals: valid without further checks.
FAST_RATE_RE = re.compile(r"\d{1,2}(?:\.\d{1,6})?\Z", re.ASCII)
FAST_COLUMNS = (
    "prefix",
    "destination",
    "rate",
    "connection_fee",
    "min_seconds",
    "increment_seconds",
    "free_seconds",
    "effective_from",
    "effective_to",
    "period",
)
INCREMENT_RE = re.compile(r"(\d{1,6})\s*/\s*(\d{1,6})(?:\s*/\s*(\d{1,6}))?\Z")

# (line, prefix, destination, price, fee, min, increment, free, from, to, period): the
# order of the staging INSERT's columns after the import id.
Staged = tuple


def price_key(prefix: str, period: str) -> str:
    """What one price line of a list is: its prefix, and its time period if it has one.

    A string, so that the fast path's dictionary of lines seen costs nothing more for a list
    without periods. "|" is neither a digit nor in a period's name.
    """
    return f"{prefix}|{period}" if period else prefix


def price_label(key: str) -> str:
    """'49' or '49 (weekend)': a price line as messages name it."""
    prefix, _, period = key.partition("|")
    return f"{prefix} ({period})" if period else prefix


class Validator:
    """Check rows one at a time, remembering what duplicate detection needs."""

    def __init__(
        self,
        report: ImportReport,
        fmt: FileFormat | None = None,
        *,
        skip_invalid: bool = False,
        periods: Iterable[str] = (),
    ):
        self.report = report
        self.fmt = fmt or FileFormat()
        self.skip_invalid = skip_invalid
        # The time profiles a row's period may name (TimeProfile.name); spellings proven
        # valid map to the name ("" and the names themselves to start with).
        self.periods = frozenset(periods)
        self._fast_periods: dict[str, str] = {"": "", **{name: name for name in self.periods}}
        self._dates: dict[str, datetime | None] = {}
        # Spellings already proven valid, for the fast path of `records`.
        self._fast_fees: set[str] = {"", "0"}
        self._fast_minimums: dict[str, int] = {}
        self._fast_frees: dict[str, int] = {}
        self._fast_increments: dict[str, int] = {}
        self._dates_ok: dict[str, datetime | None] = {"": None}
        # price_key -> (line, start, price) of its first row; starts of several rows per key
        # (a price change announced in the deck) go to `schedules`.
        self._seen: dict[str, tuple] = {}
        self.schedules: dict[str, list[tuple]] = {}

    # -- cells --

    def _amount(self, line, name, text, *, limit, required) -> str | None:
        text = text.strip()
        if not text:
            if required:
                self.report.error(line, f"{name} is empty")
            return None if required else "0"
        if self.fmt.decimal_comma:
            text = text.replace(".", "").replace(",", ".") if "," in text else text
        if not AMOUNT_RE.match(text):
            if text.startswith("-") and AMOUNT_RE.match(text[1:]):
                self.report.error(line, f"{name} '{text}' is negative")
            else:
                self.report.error(line, f"{name} '{text}' is not a number")
            return None
        whole, _, fraction = text.partition(".")
        if len(fraction.rstrip("0")) > MONEY_PLACES:
            self.report.error(line, f"{name} '{text}' has more than {MONEY_PLACES} decimal places")
            return None
        if len(whole) > 3 and Decimal(text) > limit:
            self.report.error(line, f"{name} '{text}' is absurd (more than {limit} per minute)")
            return None
        if len(whole) <= 3 and float(text) > limit:
            self.report.error(line, f"{name} '{text}' is absurd (more than {limit} per minute)")
            return None
        return text

    def _seconds(self, line, name, text, default: int) -> int | None:
        text = text.strip()
        if not text:
            return default
        if not SECONDS_RE.match(text) or int(text) > MAX_SECONDS:
            self.report.error(line, f"{name} '{text}' is not a whole number of seconds")
            return None
        return int(text)

    def _date(self, line, name, value) -> tuple[bool, datetime | None]:
        """(ok, value): an empty cell is (True, None)."""
        if isinstance(value, datetime):
            return True, value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            return True, datetime(value.year, value.month, value.day, tzinfo=UTC)
        text = value.strip()
        if not text:
            return True, None
        if text in self._dates:
            parsed = self._dates[text]
        else:
            parsed = self._dates[text] = self._parse_date(text)
        if parsed is None:
            expected = self.fmt.date_format or "ISO 8601, e.g. 2026-12-01T00:00:00Z"
            self.report.error(line, f"{name} '{text}' is not a date ({expected})")
            return False, None
        return True, parsed

    def _parse_date(self, text: str) -> datetime | None:
        try:
            if self.fmt.date_format:
                parsed = datetime.strptime(text, self.fmt.date_format)
            else:
                parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
        except ValueError:
            return None
        # Price lists are written in UTC unless they say otherwise.
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def _period(self, line, value) -> str | None:
        text = str(value).strip()
        name = text.lower()
        if not name or name in self.periods:
            return name
        known = ", ".join(sorted(self.periods)) or "none is defined"
        self.report.error(
            line, f"period '{text}' is not a time profile (known: {known}; leave it empty for any time)"
        )
        return None

    def _prefix(self, line, text: str) -> str | None:
        raw = text
        text = text.strip()
        if self.fmt.clean_prefix and (not DIGITS_RE.match(text) or text.startswith("00")):
            text = PREFIX_NOISE_RE.sub("", text)
            if text.startswith("+"):
                text = text[1:]
            elif text.startswith("00"):
                text = text[2:]
        if not text:
            self.report.error(line, "prefix is empty")
            return None
        if not DIGITS_RE.match(text):
            problem = "is longer than 32 digits" if text.isdigit() else "is not digits"
            self.report.error(line, f"prefix '{raw.strip()}' {problem}")
            return None
        return text

    # -- rows --

    def records(self, table: Table) -> Iterator[Staged]:
        """Valid staging tuples of a file's data records; errors go to the report.

        Most rows of a real deck are plain: digits, a small price, increments and dates
        that repeat on every line. Those take the fast path (one itemgetter, two regular
        expressions, set and dict lookups of values already proven valid); anything else
        goes through `_record`, which checks every cell and says what is wrong.
        """
        pos = table.positions
        width = table.width
        # Absent columns read the empty cell appended to every record.
        get = itemgetter(*(pos.get(name, width) for name in FAST_COLUMNS))
        fast = not self.fmt.decimal_comma and INCREMENT not in pos
        fees, minimums, frees = self._fast_fees, self._fast_minimums, self._fast_frees
        increments, dates, periods = self._fast_increments, self._dates_ok, self._fast_periods
        seen, report = self._seen, self.report
        prefix_ok, rate_ok = DIGITS_RE.match, FAST_RATE_RE.match
        for line, cells in table.records:
            if fast and len(cells) == width:
                cells.append("")
                prefix, dest, rate, fee, minimum, increment, free, start, end, period = get(cells)
                if (
                    prefix_ok(prefix)
                    and not prefix.startswith("00")
                    and rate_ok(rate)
                    and fee in fees
                    and minimum in minimums
                    and increment in increments
                    and free in frees
                    and start in dates
                    and end in dates
                    and period in periods
                    and (key := price_key(prefix, periods[period])) not in seen
                    and len(dest) <= 100
                ):
                    start, end = dates[start], dates[end]
                    if end is None or start is None or end > start:
                        seen[key] = (line, start, rate)
                        report.rows_read += 1
                        report.rows_valid += 1
                        yield (
                            line,
                            prefix,
                            dest.strip(),
                            rate,
                            fee or "0",
                            minimums[minimum],
                            increments[increment],
                            frees[free],
                            start,
                            end,
                            periods[period],
                        )
                        continue
                del cells[-1]
            staged = self._record(table, line, cells)
            if staged is not None:
                yield staged

    def _record(self, table: Table, line: int, cells: list) -> Staged | None:
        pos = table.positions
        if len(cells) < table.width:
            if not any(str(cell).strip() for cell in cells):
                return None  # blank lines, typically at the end
            return self._reject(line, f"{len(cells)} fields where the header has {table.width}")
        if len(cells) > table.width and any(str(cell).strip() for cell in cells[table.width :]):
            return self._reject(line, f"{len(cells)} fields where the header has {table.width}")
        self.report.rows_read += 1

        def cell(name):
            index = pos.get(name)
            return cells[index] if index is not None else ""

        errors = self.report.errors_total
        prefix = self._prefix(line, cells[pos["prefix"]])
        price = self._amount(line, "rate", cells[pos["rate"]], limit=ABSURD_RATE, required=True)
        fee = self._amount(line, "connection_fee", cell("connection_fee"), limit=ABSURD_FEE, required=False)
        if INCREMENT in pos:
            minimum, increment, free = self._notation(line, cell(INCREMENT))
        else:
            minimum = self._seconds(line, "min_seconds", cell("min_seconds"), 1)
            increment = self._seconds(line, "increment_seconds", cell("increment_seconds"), 1)
            free = self._seconds(line, "free_seconds", cell("free_seconds"), 0)
        start_ok, start = self._date(line, "effective_from", cell("effective_from"))
        end_ok, end = self._date(line, "effective_to", cell("effective_to"))
        destination = str(cell("destination")).strip()
        period = self._period(line, cell("period"))
        staged = self._finish(
            line, prefix, destination, price, fee, minimum, increment, free, start, end, errors, period
        )
        if staged is not None and isinstance(cell("period"), str):
            self._fast_periods[cell("period")] = period
        if staged is not None and INCREMENT not in pos:
            # Teach the fast path the spellings this valid row used.
            if fee == cell("connection_fee"):  # only spellings the database may take as they are
                self._fast_fees.add(fee)
            self._fast_minimums[cell("min_seconds")] = minimum
            self._fast_frees[cell("free_seconds")] = free
            if increment >= 1:
                self._fast_increments[cell("increment_seconds")] = increment
            for text, ok, value in (
                (cell("effective_from"), start_ok, start),
                (cell("effective_to"), end_ok, end),
            ):
                if ok and isinstance(text, str):
                    self._dates_ok[text] = value
        return staged

    def _notation(self, line, text) -> tuple:
        text = str(text).strip()
        if not text:
            return 1, 1, 0
        match = INCREMENT_RE.match(text)
        if not match:
            self.report.error(line, f"increment '{text}' is not like 30/6 or 30/6/0")
            return None, None, None
        return int(match[1]), int(match[2]), int(match[3] or 0)

    def rate_rows(self, rows: Iterable[RateRow]) -> Iterator[Staged]:
        """Valid staging tuples of RateRow objects (sell generation, API callers)."""
        for number, row in enumerate(rows, start=1):
            line = row.line or number
            self.report.rows_read += 1
            errors = self.report.errors_total
            prefix = self._prefix(line, row.prefix)
            price = self._amount(line, "rate", _plain(row.price), limit=ABSURD_RATE, required=True)
            fee = self._amount(
                line, "connection_fee", _plain(row.connection_fee), limit=ABSURD_FEE, required=False
            )
            period = self._period(line, row.period)
            yield from filter(
                None,
                [
                    self._finish(
                        line,
                        prefix,
                        row.destination,
                        price,
                        fee,
                        row.min_seconds,
                        row.increment_seconds,
                        row.free_seconds,
                        row.effective_from,
                        row.effective_to,
                        errors,
                        period,
                    )
                ],
            )

    def _finish(
        self, line, prefix, destination, price, fee, minimum, increment, free, start, end, errors, period=""
    ):
        if increment == 0:
            self.report.error(line, "increment_seconds '0' must be at least 1")
        if len(destination) > 100:
            self.report.error(line, "destination is longer than 100 characters")
        if start and end and end <= start:
            self.report.error(
                line, f"effective_to {end.isoformat()} is not after effective_from {start.isoformat()}"
            )
        if self.report.errors_total == errors and not self._unique(
            line, price_key(prefix, period), price, start
        ):
            if self.report.errors_total != errors:
                self.report.rows_rejected += 1
            return None
        if self.report.errors_total != errors:
            self.report.rows_rejected += 1
            return None
        self.report.rows_valid += 1
        return (line, prefix, destination, price, fee, minimum, increment, free, start, end, period)

    def _unique(self, line, key, price, start) -> bool:
        """False for a row repeating an earlier one; an error when the prices differ.

        `key` is the price line (price_key): a prefix's weekend price is not a repeat of its
        price without a period.
        """
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = (line, start, price)
            return True
        others = self.schedules.get(key) or [first]
        for other_line, other_start, other_price in others:
            if other_start == start:
                if Decimal(other_price) != Decimal(price):
                    self.report.error(
                        line,
                        f"prefix {price_label(key)} appears again with a different price "
                        f"(rate '{price}', line {other_line} has '{other_price}')",
                    )
                else:
                    self.report.warn(
                        f"line {line}: prefix {price_label(key)} repeats line {other_line}, ignored"
                    )
                return False
        self.schedules.setdefault(key, [first]).append((line, start, price))
        return True

    def _reject(self, line, message) -> None:
        self.report.rows_read += 1
        self.report.rows_rejected += 1
        self.report.error(line, message)
        return None


def _plain(value) -> str:
    if value is None:
        return ""
    try:
        return format(Decimal(value), "f")
    except InvalidOperation:
        return str(value)
