"""The one retry helper for write conflicts, and update_rows, the bulk UPDATE of many rows.

Galera certifies a transaction at commit: when two nodes change the same row at once, one
of them gets a deadlock error (MariaDB 1213) although no lock was ever waited for. Plain
InnoDB gives 1213 for real deadlocks and 1205 for lock-wait timeouts; PostgreSQL gives
SQLSTATE 40001 (serialization failure) and 40P01 (deadlock). In every case the whole
transaction is gone and the only correct answer is to run it again from the start.

Every write service is wrapped by `retry_on_conflict`: it opens the transaction itself,
so a retry replays the complete unit of work. Called inside an outer transaction it does
not retry (the outer transaction is already lost); it lets the error rise to the
outermost helper, which retries everything.
"""

# ruff: noqa: S608 - update_rows: table and column names come from the model; every value is a parameter.

import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.models import DecimalField, Model, Value
from django.db.models.expressions import DatabaseDefault
from django.db.utils import InternalError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

MYSQL_CONFLICT_CODES = frozenset({1213, 1205})  # deadlock (and Galera certification), lock wait
POSTGRES_CONFLICT_STATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


class RetryStats:
    """Process-wide counters of conflicts seen and retried, for benchmarks and status pages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.gave_up = 0

    def add(self, *, retried: bool) -> None:
        with self._lock:
            if retried:
                self.retries += 1
            else:
                self.gave_up += 1

    def reset(self) -> None:
        with self._lock:
            self.retries = 0
            self.gave_up = 0


retry_stats = RetryStats()


def is_conflict(exc: BaseException) -> bool:
    """Tell whether `exc` is a write conflict that a fresh transaction can succeed after."""
    cause = exc.__cause__ or exc
    # MySQL drivers put the server's error number first in args.
    args = getattr(cause, "args", ())
    if args and isinstance(args[0], int) and args[0] in MYSQL_CONFLICT_CODES:
        return True
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return sqlstate in POSTGRES_CONFLICT_STATES


@contextlib.contextmanager
def statement_transaction(using: str = DEFAULT_DB_ALIAS):
    """A transaction sent as BEGIN and COMMIT (ROLLBACK on an error) on an autocommit connection.

    Two round trips where Django's atomic takes three (it switches autocommit off, commits,
    and switches it on again): for call control's reservations, one per call. Only for code
    that speaks SQL through the cursor: an atomic block inside would commit this one. Inside
    an atomic block it is a savepoint of that block.
    """
    connection = connections[using]
    if connection.in_atomic_block:
        # BEGIN would commit the transaction around it: nest as Django does, in a savepoint.
        with transaction.atomic(using=using):
            yield
        return
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
    try:
        yield
    except BaseException:
        try:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        except Exception:  # the connection is gone, and its transaction with it
            logger.warning("ROLLBACK failed; closing the connection", exc_info=True)
            connection.close()
        raise
    with connection.cursor() as cursor:
        cursor.execute("COMMIT")


@contextlib.contextmanager
def _no_transaction(using: str = DEFAULT_DB_ALIAS):
    yield


def retry_on_conflict(
    func: Callable[P, R] | None = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    attempts: int | None = None,
    own_transactions: bool = False,
    budget: Callable[[], float] | None = None,
):
    """Run `func` in its own transaction, replaying it on write conflicts.

    Usable bare (`@retry_on_conflict`) or with options (`@retry_on_conflict(attempts=3)`).
    Backoff is exponential with full jitter so that nodes which collided once do not
    collide again in lockstep. After the last attempt the conflict is re-raised.
    `own_transactions=True` opens none: `func` opens its own (`statement_transaction`
    blocks, or a stored procedure that starts and ends one; the hot path's cursor-only
    code), and an attempt is replayed whole when any of them meets a conflict. `budget`
    returns the seconds the whole call may take: a retry that could not start and end
    within them is not made and the conflict is re-raised at once (call control must
    answer before OpenSIPS gives up).
    """

    def decorate(inner: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(inner)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if connections[using].in_atomic_block:
                # Retrying a part of a transaction cannot work: let the outermost caller do it.
                with transaction.atomic(using=using):
                    return inner(*args, **kwargs)
            limit = attempts or settings.DB_RETRY_ATTEMPTS
            opening = _no_transaction if own_transactions else transaction.atomic
            started = time.monotonic()
            for attempt in range(1, limit + 1):
                try:
                    with opening(using=using):
                        return inner(*args, **kwargs)
                except (OperationalError, InternalError) as exc:
                    if not is_conflict(exc):
                        raise
                    delay = random.uniform(0, settings.DB_RETRY_BASE_DELAY * 2 ** (attempt - 1))
                    # A retry is made only if it can end within the budget, reckoned as long
                    # as the attempts so far took on average.
                    spent = time.monotonic() - started
                    out_of_time = budget is not None and spent + delay + spent / attempt > budget()
                    if attempt == limit or out_of_time:
                        retry_stats.add(retried=False)
                        logger.warning(
                            "%s: write conflict persisted after %d attempts in %.3fs",
                            inner.__qualname__,
                            attempt,
                            spent,
                        )
                        raise
                    retry_stats.add(retried=True)
                    logger.info(
                        "%s: write conflict (%s), retry %d/%d in %.3fs",
                        inner.__qualname__,
                        exc,
                        attempt,
                        limit - 1,
                        delay,
                    )
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def unless_conflict(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """Call `func`, a `retry_on_conflict` service; None when it gave up on a write conflict.

    For loops that take the same work again on their next round (the billing loop, a
    backlog being rated): on Galera, three nodes writing the same hot rows can lose
    certification more times in a row than the retry budget allows. The conflict is logged
    and counted, nothing was written, and the loop goes on instead of dying.
    """
    try:
        return func(*args, **kwargs)
    except (OperationalError, InternalError) as exc:
        if not is_conflict(exc):
            raise
        logger.warning(
            "%s gave up on a write conflict; the next round takes its work again", func.__qualname__
        )
        return None


# Values per IN list on an indexed column. From eq_range_index_dive_limit (200) values on,
# MariaDB sizes the list from index statistics rather than looking into the index, and for a
# non-unique index of a table of tens of thousands of rows it then read the whole table: the
# rater's reservations by Call-ID, 500 at a time, read 13,000 to 24,000 rows for 500 found
# (issue 13). Below the limit it looks, and reads what it finds.
IN_LIST_SIZE = 150


def chunks(values: Sequence, size: int = IN_LIST_SIZE) -> Iterator[Sequence]:
    """`values` in slices of `size`: one query per slice of an IN list."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def batches(
    batch: Callable[[], R], *, until: float | None, pause: float, give_up: int, stalled: type[Exception]
) -> Iterator[R]:
    """Yield `batch()`'s results one round after another until `until` (a monotonic deadline,
    None for none) passes; the caller stops when the work is done.

    For backlogs (CDRs to import, to rate): a round that gave up on write conflicts (two
    workers on the same rows) wrote nothing and yields nothing; it is run again after a
    pause of `pause` seconds times the rounds lost in a row, and `give_up` of them in a row
    raise `stalled`.
    """
    lost = 0
    while until is None or time.monotonic() < until:
        result = unless_conflict(batch)
        if result is None:
            lost += 1
            if lost == give_up:
                raise stalled(f"{lost} batches in a row gave up on write conflicts")
            time.sleep(pause * lost)
            continue
        lost = 0
        yield result


# Rows per UPDATE of update_rows: a statement of a few hundred kB at most.
UPDATE_ROWS = 1000


def update_rows(model: type[Model], fields: Sequence[str], rows: Sequence[tuple], **same) -> None:
    """Write `fields` of many rows of `model`: `rows` are (pk, value, …) tuples in `fields` order.

    `same` sets more columns to one value on every row. Django's bulk_update sends a
    CASE WHEN per row and field, each built as an expression (milliseconds per batch in
    Python, more than pricing the calls) and evaluated by the database against every
    row (n² per statement). Here the values travel as a derived table that the UPDATE
    joins on the primary key, in each database's dialect:

        UPDATE cdr JOIN (SELECT 7 AS pk, 0.5 AS v0 UNION ALL SELECT 8, 0.7) AS v
            ON cdr.id = v.pk SET cdr.sell_cost = v.v0                      -- MariaDB, MySQL
        UPDATE cdr SET sell_cost = v.v0
            FROM (SELECT 7 AS pk, 0.5 AS v0 UNION ALL …) AS v WHERE cdr.id = v.pk  -- SQLite
        UPDATE cdr SET sell_cost = v.v0
            FROM (VALUES (7::bigint, 0.5::numeric(20,6)), (8, 0.7)) AS v (pk, v0)
            WHERE cdr.id = v.pk                                              -- PostgreSQL

    PostgreSQL would type bare parameters of a derived table as text: its first row is
    cast to the columns' types.
    """
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]  # not the proxy: its every attribute is a lookup
    meta, quote, vendor = model._meta, db.ops.quote_name, db.vendor
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    targets = [meta.get_field(name) for name in fields]
    aliases = ["pk", *(f"v{n}" for n in range(len(targets)))]
    assignments = [
        f"{quote(target.column)} = v.{alias}" for target, alias in zip(targets, aliases[1:], strict=True)
    ]
    constants = []
    for name, value in same.items():
        target = meta.get_field(name)
        assignments.append(f"{quote(target.column)} = %s")
        constants.append(target.get_db_prep_save(value, db))
    if vendor == "mysql":
        assignments = [f"{table}.{assignment}" for assignment in assignments]
    prepare = [meta.pk, *targets]
    decimals = [isinstance(target, DecimalField) for target in prepare]
    # SQLite allows 500 SELECTs in a compound statement and (as Django counts) 999 parameters.
    size = min(UPDATE_ROWS, 500, db.ops.bulk_batch_size(aliases, rows)) if vendor == "sqlite" else UPDATE_ROWS
    marks = "(" + ", ".join(["%s"] * len(aliases)) + ")"
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        params = [
            _prepared(target, decimal, value, db)
            for row in chunk
            for target, decimal, value in zip(prepare, decimals, row, strict=True)
        ]
        if vendor == "postgresql":
            first = ", ".join(f"CAST(%s AS {target.cast_db_type(db)})" for target in prepare)
            derived = f"(VALUES ({first}){f', {marks}' * (len(chunk) - 1)}) AS v ({', '.join(aliases)})"
        else:
            first = ", ".join(f"%s AS {alias}" for alias in aliases)
            derived = f"(SELECT {first}{f' UNION ALL SELECT {marks[1:-1]}' * (len(chunk) - 1)}) AS v"
        with db.cursor() as cursor:
            if vendor == "mysql":
                cursor.execute(
                    f"UPDATE {table} JOIN {derived} ON {table}.{pk} = v.pk SET {', '.join(assignments)}",
                    params + constants,
                )
            else:
                cursor.execute(
                    f"UPDATE {table} SET {', '.join(assignments)} FROM {derived} WHERE {table}.{pk} = v.pk",
                    constants + params,
                )


def _prepared(field, decimal: bool, value, db):
    """`value` as a parameter for `field`'s column on `db`: ints and strings as they are (the
    hot paths), except to decimal columns (a MoneyField on SQLite stores micro-units: an int
    5 is written as 5,000,000); anything else as the ORM prepares it."""
    if value is None or (isinstance(value, int | str) and not decimal):
        return value
    return field.get_db_prep_save(value, db)


def insert_rows(objects: Sequence[Model], *, returning: bool = False) -> None:
    """INSERT new `objects` (instances of one model) as bulk_create does, without its
    per-object and per-field SQL compilation.

    That compilation (an SQL fragment and a conversion per field of every object) was a
    third of the billing loop's CPU when it imported a batch of CDRs, and a third of a
    rater's when it wrote ledger entries. Here each chunk is one INSERT of plain
    placeholders, each value prepared as `update_rows` prepares them. A field the object
    leaves None gets its `pre_save` value (auto_now_add and the like); one it sets keeps it
    (the ledger's injected clock). With `returning`, the objects get their ids where the
    database returns them (as with bulk_create); either way they are saved
    (`_state.adding` False).
    """
    if not objects:
        return
    db = connections[DEFAULT_DB_ALIAS]
    meta, ops = objects[0]._meta, db.ops
    fields = [field for field in meta.local_concrete_fields if field is not meta.auto_field]
    decimals = [isinstance(field, DecimalField) for field in fields]
    defaults = {}
    for field in fields:
        if field.has_db_default():
            default = field.db_default
            if hasattr(default, "resolve_expression"):
                if not isinstance(default, Value):
                    raise TypeError(f"insert_rows cannot write {field.name}'s db_default, an expression")
                default = default.value
            defaults[field.attname] = default
    columns = ", ".join(ops.quote_name(field.column) for field in fields)
    suffix = ""
    if returning and db.features.can_return_rows_from_bulk_insert:
        suffix = " " + ops.return_insert_columns([meta.pk])[0]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    size = min(1000, ops.bulk_batch_size(fields, objects))
    for start in range(0, len(objects), size):
        chunk = objects[start : start + size]
        params = []
        for obj in chunk:
            for field, decimal in zip(fields, decimals, strict=True):
                value = getattr(obj, field.attname)
                if value is None:
                    value = field.pre_save(obj, True)
                elif isinstance(value, DatabaseDefault):
                    value = defaults[field.attname]
                params.append(_prepared(field, decimal, value, db))
        with db.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ops.quote_name(meta.db_table)} ({columns})"
                f" VALUES {', '.join([row] * len(chunk))}{suffix}",
                params,
            )
            ids = [pk for (pk,) in ops.fetch_returned_insert_rows(cursor)] if suffix else []
        for obj, pk in zip(chunk, ids or [None] * len(chunk), strict=True):
            if pk is not None:
                obj.pk = pk
            obj._state.adding, obj._state.db = False, db.alias
