"""The one retry helper for write conflicts.

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

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
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


def retry_on_conflict(
    func: Callable[P, R] | None = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    attempts: int | None = None,
):
    """Run `func` in its own transaction, replaying it on write conflicts.

    Usable bare (`@retry_on_conflict`) or with options (`@retry_on_conflict(attempts=3)`).
    Backoff is exponential with full jitter so that nodes which collided once do not
    collide again in lockstep. After the last attempt the conflict is re-raised.
    """

    def decorate(inner: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(inner)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if connections[using].in_atomic_block:
                # Retrying a part of a transaction cannot work: let the outermost caller do it.
                with transaction.atomic(using=using):
                    return inner(*args, **kwargs)
            limit = attempts or settings.DB_RETRY_ATTEMPTS
            for attempt in range(1, limit + 1):
                try:
                    with transaction.atomic(using=using):
                        return inner(*args, **kwargs)
                except (OperationalError, InternalError) as exc:
                    if not is_conflict(exc):
                        raise
                    if attempt == limit:
                        retry_stats.add(retried=False)
                        logger.warning(
                            "%s: write conflict persisted after %d attempts", inner.__qualname__, limit
                        )
                        raise
                    retry_stats.add(retried=True)
                    delay = random.uniform(0, settings.DB_RETRY_BASE_DELAY * 2 ** (attempt - 1))
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
