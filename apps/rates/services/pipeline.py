"""Stage and compare a price import in SQL, in bounded transactions.

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
This module stages the rows and compares them with the live version; writing version N
and the switch are apps/rates/services/versions.py.
"""

# ruff: noqa: S608 - the SQL here is assembled from constants; every value is a parameter.
import os
import time
from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from apps.core.db import retry_on_conflict
from apps.core.models import money_from_db, money_to_db
from apps.rates.importing.report import SAMPLES
from apps.rates.models import PriceImport, RateTable

STAGED_COLUMNS = (
    "price_import_id, line, prefix, destination, price, connection_fee, min_seconds, "
    "increment_seconds, free_seconds, effective_from, effective_to, period"
)
RATE_COLUMNS = (
    "table_id, prefix, destination, price, connection_fee, min_seconds, increment_seconds, "
    "free_seconds, effective_from, effective_to, version_from, version_to, period"
)
# A price line of a list is a prefix and its time period ("" for any time): a staged row
# replaces, schedules and closes the live rows of the same line, never another period's.
SAME_LINE = "{a}.prefix = {b}.prefix AND {a}.period = {b}.period"
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
        placeholders = ", ".join(["%s"] * 12)
        # PyMySQL turns this executemany into multi-row INSERTs of up to 1 MB each.
        cursor.executemany(f"INSERT INTO rates_stagedrate ({STAGED_COLUMNS}) VALUES ({placeholders})", rows)


def stage(
    price_import: PriceImport, rows: Iterable[tuple], *, chunk_size: int, on_progress=None, starts=None
) -> int:
    """Write validated tuples (see validation.Staged) to the staging table in chunks.

    `starts`, a dict, receives whether some rows have no date ("undated") and the earliest
    and latest dates ("first", "last"): how the preview's diff depends on the clock.
    """
    loader = LocalInfileLoader.open()
    insert = loader.load if loader else _insert_staged
    dates: dict = {}
    first_days: set = set()  # the distinct starts of the rows, None for "with the import"

    def db_time(value):
        if value not in dates:
            dates[value] = _db_time(value)
        return dates[value]

    batch, count, pk = [], 0, price_import.pk
    # The cells stay strings for the servers to parse; SQLite stores money as integer
    # micro-units (apps.core.models.MoneyField), so there they are converted here.
    as_money = money_to_db if connection.vendor == "sqlite" else None
    try:
        for line, prefix, dest, price, fee, mins, incr, free, start, end, period in rows:
            first_days.add(start)
            if as_money:
                price, fee = as_money(price), as_money(fee)
            batch.append(
                (pk, line, prefix, dest, price, fee, mins, incr, free, db_time(start), db_time(end), period)
            )
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
    if starts is not None:
        dated = [value for value in first_days if value is not None]
        starts.update(
            undated=None in first_days, first=min(dated, default=None), last=max(dated, default=None)
        )
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
            for pk, line, prefix, dest, price, fee, mins, incr, free, start, end, period in rows:
                handle.write(
                    f"{pk}\t{line}\t{prefix}\t{dest.translate(escapes)}\t{price}\t{fee}\t{mins}\t{incr}\t{free}"
                    f"\t{start or null}\t{end or null}\t{period}\n"
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
    """Flag price lines listed with several start dates; an earlier open row ends at the next start.

    `schedules` is the validator's: price_key (a prefix, and its period) -> (line, start, price).
    """
    updates = []
    for key, rows in schedules.items():
        prefix = key.partition("|")[0]
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

# The exact comparison, portable: a correlated lookup per staged row. It is the fallback
# when a prefix may have several live rows ending after the import's start (overlapping
# periods, or a price scheduled ahead), where "the newest start before ours" must be chosen.
CURRENT_SQL = f"""
UPDATE rates_stagedrate AS s SET
  current_id = COALESCE((SELECT r.id FROM rates_rate r
                WHERE {live("r")} AND {SAME_LINE.format(a="r", b="s")} AND r.effective_from <= {START}
                  AND (r.effective_to IS NULL OR r.effective_to > {START})
                ORDER BY r.effective_from DESC LIMIT 1), 0),
  superseded = EXISTS (SELECT 1 FROM rates_rate r
                       WHERE {live("r")} AND {SAME_LINE.format(a="r", b="s")} AND r.effective_from > {START})
WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first
"""
SAME_TERMS = """(c.effective_to = s.effective_to OR (c.effective_to IS NULL AND s.effective_to IS NULL))
        AND c.price = s.price AND c.connection_fee = s.connection_fee
        AND c.min_seconds = s.min_seconds AND c.increment_seconds = s.increment_seconds
        AND c.free_seconds = s.free_seconds AND c.destination = s.destination"""
UNCHANGED_SQL = f"""
UPDATE rates_stagedrate AS s SET
  unchanged = (s.single AND NOT s.superseded AND EXISTS (
      SELECT 1 FROM rates_rate c WHERE c.id = s.current_id AND {SAME_TERMS}))
WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first
"""

# The fast comparison: one join per chunk, used when every price line has at most one live row
# that ends after the earliest staged start (the usual case: one open price per code, and
# history that ended before). That row is then the staged row's only candidate: the current
# rate if it has begun by the staged start, else a later price that supersedes the row.
CANDIDATE = f"""c.table_id = %(t)s AND {SAME_LINE.format(a="c", b="s")}
  AND c.version_from <= %(v)s AND (c.version_to IS NULL OR c.version_to > %(v)s)
  AND (c.effective_from > {START} OR c.effective_to IS NULL OR c.effective_to > {START})"""
CURRENT = f"CASE WHEN c.effective_from <= {START} THEN c.id ELSE 0 END"
SUPERSEDED = f"CASE WHEN c.effective_from > {START} THEN TRUE ELSE FALSE END"
UNCHANGED = f"CASE WHEN s.single AND c.effective_from <= {START} AND {SAME_TERMS} THEN TRUE ELSE FALSE END"
CHUNK = "s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first"
# MariaDB: a multi-table UPDATE; the join probes rate_lookup_idx (table, prefix, ...).
FAST_MYSQL = f"""
UPDATE rates_stagedrate s LEFT JOIN rates_rate c ON {CANDIDATE}
SET s.current_id = {CURRENT}, s.superseded = {SUPERSEDED}, s.unchanged = {UNCHANGED}
WHERE {CHUNK}
"""
# PostgreSQL and SQLite >= 3.33: UPDATE ... FROM a derived table, writing only the rows
# whose values change (PostgreSQL writes a new tuple even for an identical row).
FAST_FROM = f"""
UPDATE rates_stagedrate AS t SET current_id = x.cur, superseded = x.sup, unchanged = x.unc
FROM (SELECT s.id AS sid, {CURRENT} AS cur, {SUPERSEDED} AS sup, {UNCHANGED} AS unc
      FROM rates_stagedrate s LEFT JOIN rates_rate c ON {CANDIDATE}
      WHERE {CHUNK}) AS x
WHERE t.id = x.sid AND (t.current_id <> x.cur OR t.superseded <> x.sup OR t.unchanged <> x.unc)
"""
KINDS = {
    "new": "s.is_first AND s.current_id = 0",
    "increased": "s.is_first AND c.price < s.price",
    "decreased": "s.is_first AND c.price > s.price",
    "terms_changed": "s.is_first AND c.price = s.price AND NOT s.unchanged",
    "unchanged": "s.unchanged",
    "scheduled": "NOT s.is_first",
}
ABSENT = f"""{live("r")} AND (r.effective_to IS NULL OR r.effective_to > %(e)s)
  AND NOT EXISTS (SELECT 1 FROM rates_stagedrate s WHERE s.price_import_id = %(i)s
                  AND {SAME_LINE.format(a="s", b="r")})"""


def has_live_rows(table: RateTable, version: int) -> bool:
    return bool(
        _fetch(f"SELECT 1 FROM rates_rate r WHERE {live('r')} LIMIT 1", {"t": table.pk, "v": version})
    )


def _single_candidates(params: dict) -> bool:
    """True if no price line has two live rows ending after the earliest staged start."""
    earliest = _fetch(
        f"SELECT MIN({START}) FROM rates_stagedrate s WHERE s.price_import_id = %(i)s AND s.is_first", params
    )[0][0]
    if earliest is None:
        return True
    return not _fetch(
        f"SELECT 1 FROM rates_rate r WHERE {live('r')} "
        "AND (r.effective_from > %(m)s OR r.effective_to IS NULL OR r.effective_to > %(m)s) "
        "GROUP BY r.prefix, r.period HAVING COUNT(*) > 1 LIMIT 1",
        {**params, "m": earliest},
    )


def _fast_sql() -> str | None:
    if connection.vendor == "mysql":
        return FAST_MYSQL
    if connection.vendor == "postgresql":
        return FAST_FROM
    if connection.vendor == "sqlite" and connection.Database.sqlite_version_info >= (3, 33):
        return FAST_FROM
    return None


def compare(
    price_import: PriceImport, *, version: int, start: datetime, chunk_size: int, again: bool = False
) -> None:
    """Find, for each staged prefix, the live rate it replaces and whether anything changes.

    Sets every first staged row's current_id (0: none), superseded and unchanged, so it
    may run `again` over rows compared before (a fresh diff at activation).
    """
    params = {"t": price_import.table_id, "v": version, "e": _db_time(start), "i": price_import.pk}
    if not has_live_rows(price_import.table, version):
        # A first import: everything is new, the staged defaults say so. Rows compared
        # before against another version go back to those defaults.
        for a, b in _ranges(*staged_id_range(price_import), chunk_size) if again else ():
            retry_on_conflict(_execute)(
                "UPDATE rates_stagedrate SET current_id = 0, superseded = FALSE, unchanged = FALSE "
                "WHERE price_import_id = %(i)s AND id BETWEEN %(a)s AND %(b)s "
                "AND (current_id <> 0 OR superseded OR unchanged)",
                {**params, "a": a, "b": b},
            )
        return
    fast = _fast_sql()
    statements = [fast] if fast and _single_candidates(params) else [CURRENT_SQL, UNCHANGED_SQL]
    for a, b in _ranges(*staged_id_range(price_import), chunk_size):
        for sql in statements:
            retry_on_conflict(_execute)(sql, {**params, "a": a, "b": b})


def has_undated_rows(price_import: PriceImport) -> bool:
    """True if some staged row starts with the import (its start is the activation time)."""
    return bool(
        _fetch(
            "SELECT 1 FROM rates_stagedrate WHERE price_import_id = %s AND effective_from IS NULL LIMIT 1",
            [price_import.pk],
        )
    )


def periods_change_between(table: RateTable, version: int, since: datetime, until: datetime) -> bool:
    """True if a live row of `version` starts or ends in (since, until].

    The comparison of rows that start with the import depends on the clock only through
    such rows: without any, a diff computed at `since` still holds at `until`.
    """
    params = {"t": table.pk, "v": version, "a": _db_time(since), "b": _db_time(until)}
    return bool(
        _fetch(
            f"SELECT 1 FROM rates_rate r WHERE {live('r')} AND ("
            "(r.effective_from > %(a)s AND r.effective_from <= %(b)s) "
            "OR (r.effective_to > %(a)s AND r.effective_to <= %(b)s)) LIMIT 1",
            params,
        )
    )


def diff_report(price_import: PriceImport, *, version: int, start: datetime, now: datetime) -> dict:
    """Counts and samples of new/increased/decreased/unchanged/closed codes, notice and margin."""
    table = price_import.table
    params = {"t": table.pk, "v": version, "e": _db_time(start), "i": price_import.pk}
    deadline = now + _days(table.price_increase_notice_days)
    notice_params = {**params, "d": _db_time(deadline)}
    soon = f"{KINDS['increased']} AND {START} < %(d)s"
    # One pass counts every kind and the increases sooner than the notice.
    conditions = [*KINDS.values(), soon]
    sums = ", ".join(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)" for condition in conditions)
    joined = (
        "FROM rates_stagedrate s LEFT JOIN rates_rate c ON c.id = s.current_id "
        "WHERE s.price_import_id = %(i)s"
    )
    *kinds, soon_count = (int(n or 0) for n in _fetch(f"SELECT {sums} {joined}", notice_params)[0])
    counts = dict(zip(KINDS, kinds, strict=True))
    samples = {}
    for kind, condition in KINDS.items():
        if counts[kind] and kind != "unchanged":
            rows = _fetch(
                # No ORDER BY: sorting a million staged rows for ten samples costs seconds.
                f"SELECT s.line, s.prefix, s.period, s.destination, c.price, s.price, {START} {joined} "
                f"AND {condition} LIMIT {SAMPLES}",
                params,
            )
            samples[kind] = [_change(row) for row in rows]
    if price_import.mode == PriceImport.Mode.FULL:
        counts["closed"] = _fetch(
            f"SELECT COUNT(*) FROM (SELECT DISTINCT r.prefix, r.period FROM rates_rate r WHERE {ABSENT}) x",
            params,
        )[0][0]
        if counts["closed"]:
            rows = _fetch(
                f"SELECT r.prefix, r.period, r.destination, r.price FROM rates_rate r WHERE {ABSENT} "
                f"LIMIT {SAMPLES}",
                params,
            )
            samples["closed"] = [
                {"prefix": p, **_period(period), "destination": d, "old": _money(old)}
                for p, period, d, old in rows
            ]
    else:
        counts["closed"] = 0
    flagged, notice_samples = 0, []
    if counts["increased"]:
        flagged = soon_count
        notice_samples = [
            {**_change(row), "kind": "increase"}
            for row in _fetch(
                f"SELECT s.line, s.prefix, s.period, s.destination, c.price, s.price, {START} {joined} "
                f"AND {soon} LIMIT {SAMPLES}",
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
JOIN rates_rate sr ON sr.table_id = t.id AND sr.prefix = s.prefix AND sr.period IN (s.period, '')
WHERE s.price_import_id = %(i)s AND sr.version_from <= t.live_version
  AND (sr.version_to IS NULL OR sr.version_to > t.live_version)
  AND sr.effective_from <= {START} AND (sr.effective_to IS NULL OR sr.effective_to > {START})
  AND sr.price < s.price
"""


def margin_check(price_import: PriceImport, params: dict) -> dict:
    """Sell prices that would sit below the new buy price of the same prefix.

    Until routing says which customers' traffic may reach this supplier, every sell list
    of the same currency counts as exposed. A buy price of a period (weekend) is held
    against the sell prices of the same period and those of any time, which may apply then.
    """
    table = price_import.table
    if table.purpose != RateTable.Purpose.BUY:
        return {"count": 0, "samples": []}
    params = {**params, "cur": table.currency}
    count = _fetch(f"SELECT COUNT(*) {MARGIN_SQL}", params)[0][0]
    rows = (
        _fetch(f"SELECT t.name, s.prefix, s.period, sr.price, s.price {MARGIN_SQL} LIMIT {SAMPLES}", params)
        if count
        else []
    )
    samples = [
        {"sell_table": name, "prefix": prefix, **_period(period), "sell": _money(sell), "buy": _money(buy)}
        for name, prefix, period, sell, buy in rows
    ]
    return {"count": count, "samples": samples}


def _change(row) -> dict:
    line, prefix, period, destination, old, new, start = row
    return {
        "line": line,
        "prefix": prefix,
        **_period(period),
        "destination": destination,
        "old": _money(old),
        "new": _money(new),
        "from": str(start),
    }


def _period(period: str) -> dict:
    # Samples name a period only where there is one: most lists have none.
    return {"period": period} if period else {}


def _money(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    # Read as the ORM reads a money column (integer micro-units on SQLite).
    return f"{money_from_db(value):.6f}".rstrip("0").rstrip(".")


def _days(days: int):
    from datetime import timedelta

    return timedelta(days=days)


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
