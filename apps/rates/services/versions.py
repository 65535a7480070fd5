"""Write a price import's rows as the table's next version, in SQL, then switch to it.

The versioning scheme is described in apps/rates/services/pipeline.py: version N = V + 1
is written beside the live version V in bounded transactions, invisible until `switch`;
`discard_version` removes what a crashed activation wrote.
"""

# ruff: noqa: S608 - the SQL here is assembled from constants; every value is a parameter.
from datetime import datetime

from apps.core.db import retry_on_conflict
from apps.rates.importing.report import ImportRefused
from apps.rates.models import PriceImport, RateTable
from apps.rates.services.pipeline import (
    ABSENT,
    RATE_COLUMNS,
    SAME_LINE,
    START,
    _db_time,
    _execute,
    _fetch,
    _ranges,
    live,
    staged_id_range,
)

REPLACED = f"""
FROM rates_stagedrate s JOIN rates_rate r ON r.table_id = %(t)s AND {SAME_LINE.format(a="r", b="s")}
WHERE s.price_import_id = %(i)s AND s.id BETWEEN %(a)s AND %(b)s AND s.is_first AND NOT s.unchanged
  AND (s.current_id <> 0 OR s.superseded)
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
            f"INSERT INTO rates_rate ({RATE_COLUMNS}) SELECT {COPY_COLUMNS}, {START}, %(n)s, NULL, r.period "
            f"{REPLACED} AND r.effective_from < {START}",
            params,
        )
        _mark(ids, params["n"])
    _execute(
        f"INSERT INTO rates_rate ({RATE_COLUMNS}) SELECT %(t)s, s.prefix, s.destination, s.price, "
        f"s.connection_fee, s.min_seconds, s.increment_seconds, s.free_seconds, {START}, s.effective_to, "
        "%(n)s, NULL, s.period FROM rates_stagedrate s "
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
    for start in range(0, len(ids), 5000):
        part = ids[start : start + 5000]
        # The copies are read by id before the originals are marked (no second anti-join).
        _execute(
            f"INSERT INTO rates_rate ({RATE_COLUMNS}) SELECT {COPY_COLUMNS}, %s, %s, NULL, r.period "
            f"FROM rates_rate r WHERE r.id IN ({', '.join(['%s'] * len(part))}) AND r.effective_from < %s",
            [params["e"], params["n"], *part, params["e"]],
        )
    _mark(ids, params["n"])


def discard_version(table: RateTable, version: int, *, chunk_size: int) -> bool:
    """Remove what a crashed activation wrote above live `version`; True if there was any."""
    params = {"t": table.pk, "v": version}
    # One pass over the table finds both the rows written above `version` and those marked.
    low, high, marked_low, marked_high = _fetch(
        "SELECT MIN(CASE WHEN version_from > %(v)s THEN id END), "
        "MAX(CASE WHEN version_from > %(v)s THEN id END), "
        "MIN(CASE WHEN version_to > %(v)s THEN id END), MAX(CASE WHEN version_to > %(v)s THEN id END) "
        "FROM rates_rate WHERE table_id = %(t)s AND (version_from > %(v)s OR version_to > %(v)s)",
        params,
    )[0]
    for a, b in _ranges(low, high, chunk_size):
        retry_on_conflict(_execute)(
            "DELETE FROM rates_rate "
            "WHERE table_id = %(t)s AND version_from > %(v)s AND id BETWEEN %(a)s AND %(b)s",
            {**params, "a": a, "b": b},
        )
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
