"""The shared retry helper, against real deadlocks on MariaDB and PostgreSQL."""

import contextlib
import threading
import time

import pymysql
import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F

from apps.core.db import is_conflict, retry_on_conflict, retry_stats, statement_transaction, unless_conflict
from apps.nodes.models import Node
from tests.factories import NodeFactory


def mysql_error(code: int, message: str) -> OperationalError:
    """An error shaped as Django raises it for MariaDB: the driver's error as the cause."""
    error = OperationalError(code, message)
    error.__cause__ = pymysql.err.OperationalError(code, message)
    return error


@pytest.fixture(autouse=True)
def fresh_stats():
    retry_stats.reset()
    yield
    retry_stats.reset()


# Both ways of opening the transaction: the helper's (Django's atomic), and the function's
# own (BEGIN/COMMIT statements, as the hot path's cursor-only code opens them).
OPENINGS = pytest.mark.parametrize("own", [False, True], ids=["atomic", "own-statements"])


def opened(own: bool):
    """The function's own transaction when `own`, else nothing (the helper opens it)."""
    return statement_transaction() if own else contextlib.nullcontext()


@OPENINGS
@pytest.mark.django_db(transaction=True)
def test_two_connections_that_really_deadlock_both_commit_after_one_retry(own):
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite has a single writer and cannot deadlock; run with a mysql:// or postgres:// DATABASE_URL"
        )
    first, second = NodeFactory(name="one", sip_port=5060), NodeFactory(name="two", sip_port=5060)
    # Each thread locks its first row, waits until the other holds its own, then reaches for
    # the other's: a lock cycle the server must break by killing one transaction.
    barrier = threading.Barrier(2, timeout=20)
    attempts = {"forward": 0, "backward": 0}
    errors: list[BaseException] = []

    @retry_on_conflict(own_transactions=own)
    def bump(name: str, order: tuple[int, int]) -> None:
        attempts[name] += 1
        with opened(own):
            Node.objects.filter(pk=order[0]).update(sip_port=F("sip_port") + 1)
            if attempts[name] == 1:
                barrier.wait()
            Node.objects.filter(pk=order[1]).update(sip_port=F("sip_port") + 1)

    def run(name, order):
        try:
            bump(name, order)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=("forward", (first.pk, second.pk))),
        threading.Thread(target=run, args=("backward", (second.pk, first.pk))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert retry_stats.retries >= 1, "the server never reported a deadlock"
    assert sorted(attempts.values())[-1] >= 2
    # Both transactions took effect once: the retried one was replayed whole, not twice.
    assert set(Node.objects.filter(pk__in=[first.pk, second.pk]).values_list("sip_port", flat=True)) == {5062}


def test_conflict_that_persists_is_re_raised_after_the_last_attempt(transactional_db, settings):
    settings.DB_RETRY_BASE_DELAY = 0
    calls = []

    @retry_on_conflict(attempts=4)
    def always_conflicts():
        calls.append(1)
        raise mysql_error(1213, "Deadlock found when trying to get lock; try restarting transaction")

    with pytest.raises(OperationalError):
        always_conflicts()
    assert len(calls) == 4
    assert (retry_stats.retries, retry_stats.gave_up) == (3, 1)


@OPENINGS
def test_transaction_of_a_failed_attempt_is_rolled_back(transactional_db, settings, own):
    settings.DB_RETRY_BASE_DELAY = 0
    node = NodeFactory(name="rollback", sip_port=5060)
    calls = []

    @retry_on_conflict(own_transactions=own)
    def bump_then_conflict_once():
        with opened(own):
            Node.objects.filter(pk=node.pk).update(sip_port=F("sip_port") + 1)
            calls.append(1)
            if len(calls) == 1:
                raise mysql_error(1205, "Lock wait timeout exceeded; try restarting transaction")

    bump_then_conflict_once()
    node.refresh_from_db()
    assert node.sip_port == 5061
    assert retry_stats.retries == 1


def test_a_retry_that_would_outlast_the_budget_is_not_made(transactional_db, settings, monkeypatch):
    # Call control must answer before OpenSIPS stops waiting: with a budget of 1 s and each
    # attempt taking 0.3 s, a fourth attempt would end at 1.2 s, so three are made.
    settings.DB_RETRY_BASE_DELAY = 0
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    calls = []

    @retry_on_conflict(attempts=10, budget=lambda: 1.0)
    def slow_and_conflicting():
        calls.append(1)
        clock[0] += 0.3
        raise mysql_error(1213, "Deadlock found when trying to get lock; try restarting transaction")

    with pytest.raises(OperationalError):
        slow_and_conflicting()
    assert len(calls) == 3  # after 0.9 s spent, another 0.3 s attempt would end at 1.2 s
    assert (retry_stats.retries, retry_stats.gave_up) == (2, 1)


def test_a_statement_transaction_commits_whole_or_not_at_all(transactional_db):
    node = NodeFactory(name="whole", sip_port=5060)

    def bump_twice(fail: bool) -> None:
        with statement_transaction():
            Node.objects.filter(pk=node.pk).update(sip_port=F("sip_port") + 1)
            if fail:
                raise ValueError("halfway")
            Node.objects.filter(pk=node.pk).update(sip_port=F("sip_port") + 1)

    with pytest.raises(ValueError, match="halfway"):
        bump_twice(fail=True)
    node.refresh_from_db()
    assert node.sip_port == 5060  # the first update was rolled back
    bump_twice(fail=False)
    node.refresh_from_db()
    assert node.sip_port == 5062
    assert connection.get_autocommit()  # the connection is left as it was found


def test_a_statement_transaction_inside_an_atomic_block_is_its_savepoint(transactional_db):
    node = NodeFactory(name="nested", sip_port=5060)
    with transaction.atomic():
        with pytest.raises(ValueError, match="inner"), statement_transaction():
            Node.objects.filter(pk=node.pk).update(sip_port=F("sip_port") + 1)
            raise ValueError("inner")
        # BEGIN would have committed the outer block; the savepoint rolled back the inner part only.
        Node.objects.filter(pk=node.pk).update(sip_port=F("sip_port") + 10)
    node.refresh_from_db()
    assert node.sip_port == 5070


def test_errors_that_are_not_conflicts_are_not_retried(db):
    calls = []

    @retry_on_conflict
    def broken():
        calls.append(1)
        raise mysql_error(1045, "Access denied")

    with pytest.raises(OperationalError):
        broken()
    assert len(calls) == 1

    @retry_on_conflict
    def duplicate():
        calls.append(1)
        raise IntegrityError(1062, "Duplicate entry")

    with pytest.raises(IntegrityError):
        duplicate()
    assert len(calls) == 2
    assert retry_stats.retries == 0


def test_inside_an_outer_transaction_the_outermost_caller_retries(transactional_db, settings):
    settings.DB_RETRY_BASE_DELAY = 0
    inner_calls = []

    @retry_on_conflict
    def inner():
        inner_calls.append(1)
        raise mysql_error(1213, "Deadlock found")

    with pytest.raises(OperationalError), transaction.atomic():
        inner()
    assert len(inner_calls) == 1, "a part of a transaction must not be replayed alone"

    outer_calls = []

    @retry_on_conflict(attempts=3)
    def outer():
        outer_calls.append(1)
        inner()

    with pytest.raises(OperationalError):
        outer()
    assert len(outer_calls) == 3


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (mysql_error(1213, "Deadlock"), True),
        (mysql_error(1205, "Lock wait timeout"), True),
        (mysql_error(1062, "Duplicate"), False),
        (OperationalError("database is locked"), False),
    ],
)
def test_is_conflict_recognises_mariadb_codes(error, expected):
    assert is_conflict(error) is expected


def test_is_conflict_recognises_postgres_states():
    from psycopg import errors

    for cls, expected in [
        (errors.SerializationFailure, True),
        (errors.DeadlockDetected, True),
        (errors.UniqueViolation, False),
    ]:
        wrapped = OperationalError("conflict")
        wrapped.__cause__ = cls("conflict")
        assert is_conflict(wrapped) is expected


@pytest.mark.django_db(transaction=True)  # outside a transaction, so the helper retries
def test_unless_conflict_turns_a_conflict_that_outlasted_the_retries_into_none(settings):
    settings.DB_RETRY_ATTEMPTS = 2
    settings.DB_RETRY_BASE_DELAY = 0
    calls = []

    @retry_on_conflict
    def always_conflicting():
        calls.append(1)
        raise mysql_error(1213, "Deadlock found when trying to get lock")

    assert unless_conflict(always_conflicting) is None
    assert len(calls) == 2
    assert (retry_stats.retries, retry_stats.gave_up) == (1, 1)


@pytest.mark.django_db
def test_unless_conflict_lets_other_errors_through():
    @retry_on_conflict
    def broken():
        raise mysql_error(1146, "Table 'x' doesn't exist")

    with pytest.raises(OperationalError):
        unless_conflict(broken)
    assert unless_conflict(lambda value: value * 2, 21) == 42
