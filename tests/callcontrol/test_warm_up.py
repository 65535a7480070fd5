"""Call control is ready before the server takes its first request (ASGI lifespan startup)."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db import DatabaseError, OperationalError, connection, connections

from apps.callcontrol import endpoint
from apps.callcontrol import snapshot as snapshots
from apps.rates import lookup

THREADS = 2


@pytest.fixture
def pool(monkeypatch, settings):
    """The endpoint's call threads for one test, their connections closed after."""
    settings.CALL_CONTROL_THREADS = THREADS
    executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="call-control-test")
    monkeypatch.setattr(endpoint, "_executor", executor)
    yield executor
    endpoint.close_connections()
    executor.shutdown(wait=True)


def start_and_stop(during=lambda: None) -> list[dict]:
    """The server's lifespan, as uvicorn --lifespan on drives it: what the app answered.
    `during` runs (in a thread) between the start and the stop."""
    from smartswitch.asgi import application

    async def run():
        communicator = ApplicationCommunicator(application, {"type": "lifespan", "asgi": {"version": "3.0"}})
        await communicator.send_input({"type": "lifespan.startup"})
        started = await communicator.receive_output(timeout=30)
        await asyncio.to_thread(during)
        await communicator.send_input({"type": "lifespan.shutdown"})
        stopped = await communicator.receive_output(timeout=10)
        await communicator.wait(timeout=10)
        return [started, stopped]

    # A fresh thread: asyncio.run needs one without a running loop (see test_endpoint.asgi).
    with ThreadPoolExecutor(max_workers=1) as loop_thread:
        return loop_thread.submit(asyncio.run, run()).result()


def connected_threads(executor) -> set[str]:
    """The names of the pool's threads that hold an open database connection."""
    together = threading.Barrier(THREADS)

    def check():
        together.wait(timeout=5)
        return threading.current_thread().name, connection.connection is not None

    futures = [executor.submit(check) for _ in range(THREADS)]
    return {name for name, is_open in (future.result() for future in futures) if is_open}


@pytest.mark.django_db(transaction=True)
def test_the_server_start_builds_the_snapshot_opens_the_indexes_and_connects_every_thread(world, pool):
    snapshots.forget()
    lookup.forget_indexes()
    assert connected_threads(pool) == set()

    while_up = []

    assert start_and_stop(during=lambda: while_up.append(connected_threads(pool))) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]

    ready = snapshots._current
    assert ready is not None and world.customer.pk in ready.peers
    tables = {world.sell_table.pk} | {s.buy_rate_table_id for s in world.suppliers.values()}
    assert {table for _directory, table in lookup._open} == tables
    assert len(while_up[0]) == THREADS
    # The stop closes them: the database sees them end, and a test database can be dropped.
    # (Django never closes an in-memory SQLite database's connection: the data would go.)
    kept = connection.vendor == "sqlite" and connection.is_in_memory_db()
    assert connected_threads(pool) == (while_up[0] if kept else set())


@pytest.mark.django_db(transaction=True)
def test_a_database_down_at_the_start_does_not_stop_the_server(world, pool, monkeypatch, caplog):
    snapshots.forget()

    def down():
        raise OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'")

    monkeypatch.setattr(snapshots, "current", down)

    assert start_and_stop()[0] == {"type": "lifespan.startup.complete"}
    assert "call control starts cold" in caplog.text
    assert connected_threads(pool) == set()  # nothing was tried past the failure


def test_a_thread_that_cannot_connect_is_counted_not_fatal(pool, monkeypatch, caplog):
    caplog.set_level("INFO")
    monkeypatch.setattr(snapshots, "current", lambda: SimpleNamespace(peers={}))

    def refused(self):
        raise DatabaseError("refused")

    monkeypatch.setattr(type(connections["default"]), "ensure_connection", refused)
    endpoint.warm_up()
    assert f"0 of {THREADS} connections" in caplog.text
