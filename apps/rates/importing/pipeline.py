"""Stage, compare and activate a price import in SQL, in bounded transactions.

Readers see only the rows of a table's live version V (Rate.version_from/version_to).
Activation writes version N = V + 1 beside it, chunk by chunk, each chunk its own
transaction so that no Galera write-set holds a million rows:

- a live row that the import replaces gets version_to = N (still live while V is);
- if it started before the replacing price, a copy ending at that start is written for
  version N, so that history (CDRs of last month) keeps its price;
- the import's rows are written with version_from = N;
- one single-row UPDATE of RateTable.live_version then makes N live at once.

Everything written for N is invisible until the switch, so a crashed activation is
cleaned up by `discard_version` (delete rows of N, clear version_to = N) and run again.
"""

# ruff: noqa: S608 - the SQL here is assembled from constants; every value is a parameter.
import os
import time
from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from apps.core.db import retry_on_conflict
from apps.rates.importing.report import SAMPLES, ImportRefused
from apps.rates.models import PriceImport, RateTable

STAGED_COLUMNS = (
    "price_import_id, line, prefix, destination, price, connection_fee, min_seconds, "
    "increment_seconds, free_seconds, effective_from, effective_to"
)
RATE_COLUMNS = (
    "table_id, prefix, destination, price, connection_fee, min_seconds, increment_seconds, "
    "free_seconds, effective_from, effective_to, version_from, version_to"
)
START = "COALESCE(s.effective_from, %(e)s)"  # rows without a date start with the import


def live(alias: str) -> str:
    """SQL: row `alias` of table %(t)s belongs to version %(v)s."""
    return (
        f"{alias}.table_id = %(t)s AND {alias}.version_from <= %(v)s "
        f"AND ({alias}.version_to IS NULL OR {alias}.version_to > %(v)s)"
    )


def _db_time(value: datetime | None):
    return None if value is None else connection.ops.adapt_datetimefield_value(value)


def _ranges(low: int | None, high: int | None, size: int):
    if low is None:
        return
    for start in range(low, high + 1, size):
        yield start, min(start + size - 1, high)


def _execute(sql: str, params) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# -- staging --------------------------------------------------------------------------------


@retry_on_conflict
def _insert_staged(rows: list[tuple]) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY is several times faster than even a pipelined executemany.
            with cursor.cursor.copy(f"COPY rates_stagedrate ({STAGED_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * 11)
        # PyMySQL turns this executemany into multi-row INSERTs of up to 1 MB each.
        cursor.executemany(f"INSERT INTO rates_stagedrate ({STAGED_COLUMNS}) VALUES ({placeholders})", rows)


def stage(price_import: PriceImport, rows: Iterable[tuple], *, chunk_size: int, on_progress=None) -> int:
    """Write validated tuples (see validation.Staged) to the staging table in chunks."""
    loader = LocalInfileLoader.open()
    insert = loader.load if loader else _insert_staged
    dates: dict = {}

    def db_time(value):
        if value not in dates:
            dates[value] = _db_time(value)
        return dates[value]

    batch, count, pk = [], 0, price_import.pk
    try:
        for line, prefix, dest, price, fee, mins, incr, free, start, end in rows:
            batch.append((pk, line, prefix, dest, price, fee, mins, incr, free, db_time(start), db_time(end)))
            if len(batch) >= chunk_size:
                insert(batch)
                count += len(batch)
                batch = []
                if on_progress:
                    on_progress(count)
        if batch:
            insert(batch)
            count += len(batch)
    finally:
        if loader:
            loader.close()
    return count


class LocalInfileLoader:
    """Stage rows on MariaDB with LOAD DATA LOCAL INFILE, one chunk (one commit) at a time.

    PyMySQL must escape every value of an executemany in Python, which costs more than
    the server's work; LOAD DATA takes a tab-separated file as it is. It needs a second
    connection opened with local_infile (the server must allow it too), so it commits on
    its own: it is used only outside a transaction (never inside a test's), and one LOAD
    per chunk keeps each Galera write-set small.
    """

    ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def __init__(self, conn) -> None:
        self.conn = conn
        self.path = None

    @classmethod
    def open(cls) -> "LocalInfileLoader | None":
        if connection.vendor != "mysql" or connection.in_atomic_block:
            return None
        import pymysql

        settings = connection.settings_dict
        try:
            conn = pymysql.connect(
                host=settings["HOST"] or "localhost",
                port=int(settings["PORT"] or 3306),
                user=settings["USER"],
                password=settings["PASSWORD"],
                database=settings["NAME"],
                charset="utf8mb4",
                local_infile=True,
                autocommit=True,
            )
            with conn.cursor() as cursor:
                cursor.execute("SHOW VARIABLES LIKE 'local_infile'")
                allowed = (cursor.fetchone() or ("", "OFF"))[1] == "ON"
        except pymysql.MySQLError:
            return None
        if not allowed:
            conn.close()
            return None
        return cls(conn)

    def load(self, rows: list[tuple]) -> None:
        import tempfile

        escapes, null = self.ESCAPES, "\\N"
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv", delete=False) as handle:
            self.path = handle.name
            for pk, line, prefix, dest, price, fee, mins, incr, free, start, end in rows:
                handle.write(
                    f"{pk}\t{line}\t{prefix}\t{dest.translate(escapes)}\t{price}\t{fee}\t{mins}\t{incr}\t{free}"
                    f"\t{start or null}\t{end or null}\n"
                )
        with self.conn.cursor() as cursor:
            cursor.execute(
                "LOAD DATA LOCAL INFILE %s INTO TABLE rates_stagedrate CHARACTER SET utf8mb4 "
                f"({STAGED_COLUMNS})",
                [self.path],
            )
        os.unlink(self.path)
        self.path = None

    def close(self) -> None:
        if self.path:
            os.unlink(self.path)
        self.conn.close()


@retry_on_conflict
def mark_schedules(price_import: PriceImport, schedules: dict[str, list[tuple]]) -> None:
    """Flag prefixes listed with several start dates; an earlier open row ends at the next start."""
    updates = []
    for prefix, rows in schedules.items():
        # Rows without a date start with the import, which is before any dated row.
        ordered = sorted(rows, key=lambda row: (row[1] is not None, row[1] or datetime.min))
        for position, (line, _start, _price) in enumerate(ordered):
            following = ordered[position + 1][1] if position + 1 < len(ordered) else None
            updates.append((position == 0, _db_time(following), price_import.pk, prefix, line))
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE rates_stagedrate SET single = FALSE, is_first = %s, "
            "effective_to = COALESCE(effective_to, %s) "
            "WHERE price_import_id = %s AND prefix = %s AND line = %s",
            updates,
        )


def staged_id_range(price_import: PriceImport) -> tuple[int | None, int | None]:
    return _fetch(
        "SELECT MIN(id), MAX(id) FROM rates_stagedrate WHERE price_import_id = %s", [price_import.pk]
    )[0]


def staged_count(price_import: PriceImport) -> int:
    return _fetch("SELECT COUNT(*) FROM rates_stagedrate WHERE price_import_id = %s", [price_import.pk])[0][0]


def discard_staged(price_import: PriceImport, *, chunk_size: int) -> None:
    """Delete an import's staged rows in chunks (never one huge DELETE on Galera)."""
    if connection.vendor in ("mysql", "postgresql") and not connection.in_atomic_block:
        owners = _fetch("SELECT MIN(price_import_id), MAX(price_import_id) FROM rates_stagedrate", [])[0]
        if owners == (price_import.pk, price_import.pk):
            # Alone in the table: TRUNCATE is instant where a million DELETEs take seconds.
            # An import staging at this very moment loses its rows, and its activation then
            # refuses to run (it checks its staged count), so nothing wrong goes live.
            _execute("TRUNCATE TABLE rates_stagedrate", [])
            return
    low, high = staged_id_range(price_import)
    for a, b in _ranges(low, high, chunk_size):
        retry_on_conflict(_execute)(
            "DELETE FROM rates_stagedrate WHERE price_import_id = %s AND id BETWEEN %s AND %s",
            [price_import.pk, a, b],
        )


# -- diff -----------------------------------------------------------------------------------

CURRENT_SQL = f"""
UPDATE rates_stagedrate AS s SET
  current_id = (SELECT r.id FROM rates_rate r
                WHERE {live("r")} AND r.prefix = s.prefix AND r.effective_from <= {START}
                  AND (r.effective_to IS NULL OR r.effective_to > {START})
                ORDER BY r.effective_from DESC LIMIT 1),
  superseded = EXISTS (SELECT 1 FROM rates_rate r
                       WHERE {live("r")} AND r.prefix = s.prefix AND r.effective_from > {START})
WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first
"""
UNCHANGED_SQL = """
UPDATE rates_stagedrate AS s SET
  unchanged = (s.single AND NOT s.superseded AND EXISTS (
      SELECT 1 FROM rates_rate c WHERE c.id = s.current_id
        AND (c.effective_to = s.effective_to OR (c.effective_to IS NULL AND s.effective_to IS NULL))
        AND c.price = s.price AND c.connection_fee = s.connection_fee
        AND c.min_seconds = s.min_seconds AND c.increment_seconds = s.increment_seconds
        AND c.free_seconds = s.free_seconds AND c.destination = s.destination))
WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first
"""
KINDS = {
    "new": "s.is_first AND s.current_id IS NULL",
    "increased": "s.is_first AND c.price < s.price",
    "decreased": "s.is_first AND c.price > s.price",
    "terms_changed": "s.is_first AND c.price = s.price AND NOT s.unchanged",
    "unchanged": "s.unchanged",
    "scheduled": "NOT s.is_first",
}
ABSENT = f"""{live("r")} AND (r.effective_to IS NULL OR r.effective_to > %(e)s)
  AND NOT EXISTS (SELECT 1 FROM rates_stagedrate s WHERE s.price_import_id = %(i)s AND s.prefix = r.prefix)"""


def has_live_rows(table: RateTable, version: int) -> bool:
    return bool(
        _fetch(f"SELECT 1 FROM rates_rate r WHERE {live('r')} LIMIT 1", {"t": table.pk, "v": version})
    )


def compare(price_import: PriceImport, *, version: int, start: datetime, chunk_size: int) -> None:
    """Find, for each staged prefix, the live rate it replaces and whether anything changes."""
    params = {"t": price_import.table_id, "v": version, "e": _db_time(start), "i": price_import.pk}
    if not has_live_rows(price_import.table, version):
        return  # a first import: everything is new, the staged defaults say so
    for a, b in _ranges(*staged_id_range(price_import), chunk_size):
        retry_on_conflict(_execute)(CURRENT_SQL, {**params, "a": a, "b": b})
        retry_on_conflict(_execute)(UNCHANGED_SQL, {**params, "a": a, "b": b})


def diff_report(price_import: PriceImport, *, version: int, start: datetime, now: datetime) -> dict:
    """Counts and samples of new/increased/decreased/unchanged/closed codes, notice and margin."""
    table = price_import.table
    params = {"t": table.pk, "v": version, "e": _db_time(start), "i": price_import.pk}
    sums = ", ".join(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)" for condition in KINDS.values())
    joined = (
        "FROM rates_stagedrate s LEFT JOIN rates_rate c ON c.id = s.current_id "
        "WHERE s.price_import_id = %(i)s"
    )
    counts = dict(
        zip(KINDS, (int(n or 0) for n in _fetch(f"SELECT {sums} {joined}", params)[0]), strict=True)
    )
    samples = {}
    for kind, condition in KINDS.items():
        if counts[kind] and kind != "unchanged":
            rows = _fetch(
                # No ORDER BY: sorting a million staged rows for ten samples costs seconds.
                f"SELECT s.line, s.prefix, s.destination, c.price, s.price, {START} {joined} AND {condition} "
                f"LIMIT {SAMPLES}",
                params,
            )
            samples[kind] = [_change(row) for row in rows]
    if price_import.mode == PriceImport.Mode.FULL:
        counts["closed"] = _fetch(
            f"SELECT COUNT(DISTINCT r.prefix) FROM rates_rate r WHERE {ABSENT}", params
        )[0][0]
        if counts["closed"]:
            rows = _fetch(
                f"SELECT r.prefix, r.destination, r.price FROM rates_rate r WHERE {ABSENT} LIMIT {SAMPLES}",
                params,
            )
            samples["closed"] = [{"prefix": p, "destination": d, "old": _money(old)} for p, d, old in rows]
    else:
        counts["closed"] = 0
    deadline = now + _days(table.price_increase_notice_days)
    notice_params = {**params, "d": _db_time(deadline)}
    soon = f"{KINDS['increased']} AND {START} < %(d)s"
    flagged, notice_samples = 0, []
    if counts["increased"]:
        flagged = _fetch(f"SELECT COUNT(*) {joined} AND {soon}", notice_params)[0][0]
        notice_samples = [
            {**_change(row), "kind": "increase"}
            for row in _fetch(
                f"SELECT s.line, s.prefix, s.destination, c.price, s.price, {START} {joined} AND {soon} "
                f"LIMIT {SAMPLES}",
                notice_params,
            )
        ]
    if counts["closed"] and start < deadline:
        flagged += counts["closed"]
        notice_samples += [{**sample, "kind": "closed"} for sample in samples["closed"]]
    notice = {"days": table.price_increase_notice_days, "count": flagged, "samples": notice_samples[:SAMPLES]}
    return {
        "counts": counts,
        "samples": samples,
        "notice": notice,
        "margin": margin_check(price_import, params),
    }


MARGIN_SQL = f"""
FROM rates_stagedrate s
JOIN rates_ratetable t ON t.purpose = 'sell' AND t.currency = %(cur)s
JOIN rates_rate sr ON sr.table_id = t.id AND sr.prefix = s.prefix
WHERE s.price_import_id = %(i)s AND sr.version_from <= t.live_version
  AND (sr.version_to IS NULL OR sr.version_to > t.live_version)
  AND sr.effective_from <= {START} AND (sr.effective_to IS NULL OR sr.effective_to > {START})
  AND sr.price < s.price
"""


def margin_check(price_import: PriceImport, params: dict) -> dict:
    """Sell prices that would sit below the new buy price of the same prefix.

    Until routing says which customers' traffic may reach this supplier, every sell list
    of the same currency counts as exposed.
    """
    table = price_import.table
    if table.purpose != RateTable.Purpose.BUY:
        return {"count": 0, "samples": []}
    params = {**params, "cur": table.currency}
    count = _fetch(f"SELECT COUNT(*) {MARGIN_SQL}", params)[0][0]
    rows = (
        _fetch(f"SELECT t.name, s.prefix, sr.price, s.price {MARGIN_SQL} LIMIT {SAMPLES}", params)
        if count
        else []
    )
    samples = [
        {"sell_table": name, "prefix": prefix, "sell": _money(sell), "buy": _money(buy)}
        for name, prefix, sell, buy in rows
    ]
    return {"count": count, "samples": samples}


def _change(row) -> dict:
    line, prefix, destination, old, new, start = row
    return {
        "line": line,
        "prefix": prefix,
        "destination": destination,
        "old": _money(old),
        "new": _money(new),
        "from": str(start),
    }


def _money(value) -> str | None:
    if value is None:
        return None
    return f"{value:.6f}".rstrip("0").rstrip(".") if not isinstance(value, str) else value


def _days(days: int):
    from datetime import timedelta

    return timedelta(days=days)


# -- activation -----------------------------------------------------------------------------

REPLACED = f"""
FROM rates_stagedrate s JOIN rates_rate r ON r.table_id = %(t)s AND r.prefix = s.prefix
WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first AND NOT s.unchanged
  AND {live("r")} AND (r.effective_to IS NULL OR r.effective_to > {START})
"""
COPY_COLUMNS = (
    "r.table_id, r.prefix, r.destination, r.price, r.connection_fee, r.min_seconds, "
    "r.increment_seconds, r.free_seconds, r.effective_from"
)


def _mark(ids: list[int], version: int) -> None:
    for start in range(0, len(ids), 5000):
        part = ids[start : start + 5000]
        _execute(
            f"UPDATE rates_rate SET version_to = %s WHERE id IN ({', '.join(['%s'] * len(part))})",
            [version, *part],
        )


@retry_on_conflict
def _activate_chunk(params: dict) -> None:
    ids = [row[0] for row in _fetch(f"SELECT r.id {REPLACED}", params)]
    if ids:
        # The copy must be read before the originals are marked (it selects live rows).
        _execute(
            f"INSERT INTO rates_rate ({RATE_COLUMNS}) SELECT {COPY_COLUMNS}, {START}, %(n)s, NULL "
            f"{REPLACED} AND r.effective_from < {START}",
            params,
        )
        _mark(ids, params["n"])
    _execute(
        f"INSERT INTO rates_rate ({RATE_COLUMNS}) SELECT %(t)s, s.prefix, s.destination, s.price, "
        f"s.connection_fee, s.min_seconds, s.increment_seconds, s.free_seconds, {START}, s.effective_to, "
        "%(n)s, NULL FROM rates_stagedrate s "
        "WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND NOT s.unchanged",
        params,
    )


@retry_on_conflict
def _close_chunk(params: dict) -> None:
    ids = [
        row[0]
        for row in _fetch(
            f"SELECT r.id FROM rates_rate r WHERE r.id BETWEEN %(a)s AND %(b)s AND {ABSENT}", params
        )
    ]
    if ids:
        _execute(
            f"INSERT INTO rates_rate ({RATE_COLUMNS}) SELECT {COPY_COLUMNS}, %(e)s, %(n)s, NULL "
            f"FROM rates_rate r WHERE r.id BETWEEN %(a)s AND %(b)s AND {ABSENT} AND r.effective_from < %(e)s",
            params,
        )
        _mark(ids, params["n"])


def discard_version(table: RateTable, version: int, *, chunk_size: int) -> bool:
    """Remove what a crashed activation wrote above live `version`; True if there was any."""
    params = {"t": table.pk, "v": version}
    low, high = _fetch(
        "SELECT MIN(id), MAX(id) FROM rates_rate WHERE table_id = %(t)s AND version_from > %(v)s", params
    )[0]
    for a, b in _ranges(low, high, chunk_size):
        retry_on_conflict(_execute)(
            "DELETE FROM rates_rate "
            "WHERE table_id = %(t)s AND version_from > %(v)s AND id BETWEEN %(a)s AND %(b)s",
            {**params, "a": a, "b": b},
        )
    marked_low, marked_high = _fetch(
        "SELECT MIN(id), MAX(id) FROM rates_rate WHERE table_id = %(t)s AND version_to > %(v)s", params
    )[0]
    for a, b in _ranges(marked_low, marked_high, chunk_size):
        retry_on_conflict(_execute)(
            "UPDATE rates_rate SET version_to = NULL "
            "WHERE table_id = %(t)s AND version_to > %(v)s AND id BETWEEN %(a)s AND %(b)s",
            {**params, "a": a, "b": b},
        )
    return low is not None or marked_low is not None


def write_version(
    price_import: PriceImport, *, version: int, start: datetime, chunk_size: int, on_progress=None
) -> None:
    """Write version `version` + 1 beside the live one, one bounded transaction per chunk."""
    params = {
        "t": price_import.table_id,
        "v": version,
        "n": version + 1,
        "e": _db_time(start),
        "i": price_import.pk,
    }
    done = 0
    for a, b in _ranges(*staged_id_range(price_import), chunk_size):
        _activate_chunk({**params, "a": a, "b": b})
        done += b - a + 1
        if on_progress:
            on_progress(done)
    if price_import.mode == PriceImport.Mode.FULL:
        low, high = _fetch(
            "SELECT MIN(id), MAX(id) FROM rates_rate WHERE table_id = %s", [price_import.table_id]
        )[0]
        for a, b in _ranges(low, high, chunk_size):
            _close_chunk({**params, "a": a, "b": b})


@retry_on_conflict
def switch(table: RateTable, *, version: int) -> None:
    """Make version + 1 live with one single-row UPDATE; refuse if someone moved it meanwhile."""
    moved = RateTable.objects.filter(pk=table.pk, live_version=version).update(live_version=version + 1)
    if moved != 1:
        raise ImportRefused(f"The price list {table.name} changed version during the import; run it again.")


class Clock:
    """Seconds spent per phase, for the report and the benchmark."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._phase, self._started = None, 0.0

    def phase(self, name: str) -> None:
        now = time.perf_counter()
        if self._phase:
            self.timings[self._phase] = round(self.timings.get(self._phase, 0) + now - self._started, 3)
        self._phase, self._started = name, now

    def stop(self) -> dict:
        self.phase(None)
        return self.timings
