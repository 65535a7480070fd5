"""Leases of cluster-wide work: one holder at a time, renewed by it, taken over when it expires."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from apps.cluster import leases
from apps.cluster.models import Lease


def expire(name: str) -> None:
    Lease.objects.filter(name=name).update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
class TestOneDatabase:
    def test_a_free_lease_is_taken_and_refused_to_others(self):
        assert leases.acquire("fees", "node1", 30) is True
        assert leases.acquire("fees", "node2", 30) is False
        assert leases.holder("fees") == "node1"

    def test_the_holder_renews_its_lease_and_keeps_its_start(self):
        assert leases.acquire("fees", "node1", 5)
        first = Lease.objects.get(name="fees")
        Lease.objects.filter(name="fees").update(expires_at=timezone.now() + timedelta(seconds=1))

        assert leases.acquire("fees", "node1", 300)

        renewed = Lease.objects.get(name="fees")
        assert renewed.expires_at > timezone.now() + timedelta(seconds=200)
        assert renewed.acquired_at == first.acquired_at
        assert leases.acquire("fees", "node2", 30) is False

    def test_an_expired_lease_is_taken_over_by_another_node(self):
        assert leases.acquire("fees", "node1", 30)
        expire("fees")
        assert leases.holder("fees") is None

        assert leases.acquire("fees", "node2", 30) is True

        lease = Lease.objects.get(name="fees")
        assert (lease.holder, leases.holder("fees")) == ("node2", "node2")
        assert lease.acquired_at > timezone.now() - timedelta(seconds=60)
        assert leases.acquire("fees", "node1", 30) is False

    def test_release_frees_the_lease_for_others_at_once_but_only_by_its_holder(self):
        leases.acquire("fees", "node1", 30)
        assert leases.release("fees", "node2") is False
        assert leases.holder("fees") == "node1"

        assert leases.release("fees", "node1") is True

        assert leases.holder("fees") is None
        assert leases.acquire("fees", "node2", 30) is True

    def test_keep_takes_and_renews_only_leases_that_follow_the_heartbeat(self):
        Lease.objects.all().delete()  # those of the schedules made by migrate
        leases.ensure("apps.billing.tasks.post_fees")
        leases.ensure("apps.callcontrol.tasks.expire")
        leases.acquire("a-private-lock", "node9", 30)
        expire("a-private-lock")

        assert leases.keep("node1", ttl_seconds=30) == [
            "apps.billing.tasks.post_fees",
            "apps.callcontrol.tasks.expire",
        ]
        assert leases.keep("node2", ttl_seconds=30) == []
        assert leases.holder("a-private-lock") is None

    def test_ensure_is_idempotent_and_leaves_the_holder_alone(self):
        leases.ensure("fees")
        leases.acquire("fees", "node1", 30)
        leases.ensure("fees")
        assert Lease.objects.filter(name="fees").count() == 1
        assert leases.holder("fees") == "node1"

    @pytest.mark.parametrize(
        ("name", "holder", "ttl", "message"),
        [
            ("", "node1", 30, "lease name"),
            ("fees", "", 30, "lease holder"),
            ("fees", "node1", 0, "ttl_seconds"),
        ],
    )
    def test_bad_arguments_are_refused_naming_the_argument(self, name, holder, ttl, message):
        with pytest.raises(ValueError, match=message):
            leases.acquire(name, holder, ttl)


def race(contenders: int, name: str) -> list[str]:
    """`contenders` threads, each its own connection, acquire `name` at once; the winners."""
    barrier = threading.Barrier(contenders)
    winners: list[str] = []
    errors: list[BaseException] = []

    def contend(holder: str) -> None:
        try:
            barrier.wait()
            if leases.acquire(name, holder, 30):
                winners.append(holder)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=contend, args=(f"node{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return winners


@pytest.mark.django_db(transaction=True)
class TestRace:
    @pytest.fixture(autouse=True)
    def server_database(self):
        if connection.vendor == "sqlite":
            pytest.skip("SQLite serialises writers in one file; the lease race needs MariaDB or PostgreSQL")

    @pytest.mark.parametrize("round_", range(3))
    def test_threads_racing_for_a_new_lease_end_with_exactly_one_holder(self, round_):
        winners = race(8, f"new-{round_}")
        assert len(winners) == 1
        assert leases.holder(f"new-{round_}") == winners[0]
        assert Lease.objects.filter(name=f"new-{round_}").count() == 1

    @pytest.mark.parametrize("round_", range(3))
    def test_threads_racing_for_an_expired_lease_end_with_exactly_one_holder(self, round_):
        leases.acquire(f"old-{round_}", "dead-node", 30)
        expire(f"old-{round_}")
        winners = race(8, f"old-{round_}")
        assert len(winners) == 1
        assert leases.holder(f"old-{round_}") == winners[0] != "dead-node"
