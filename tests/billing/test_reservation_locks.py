"""Issue 13: reservations and releases of one account at once never deadlock.

Under load every call of a big customer reserves and releases on the same account row. A
release that changed its reservation first (InnoDB then share-locks the account row, to
check the foreign key of the index it changed) and the account second deadlocked with any
other release of the same account: both held the share lock and waited for the exclusive
one. Everything that writes an account's money now locks the account row before touching
its reservations, so concurrent calls queue and none is retried.
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.billing.services import reservations
from apps.billing.services.reservations import Hold
from apps.core.db import retry_stats
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer

THREADS = 6
CALLS_PER_THREAD = 40


def _hold(peer, node, call_id: str) -> Hold:
    return Hold(
        account_id=peer.account.pk,
        customer_id=peer.pk,
        call_id=call_id,
        tariff=Tariff(Decimal("0.60")),
        ceiling=60,
        grace=120,
        node_id=node.pk,
    )


def _in_threads(work) -> list[BaseException]:
    barrier = threading.Barrier(THREADS, timeout=30)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


@pytest.mark.django_db(transaction=True)
def test_calls_of_one_account_reserve_and_release_at_once_without_a_conflict():
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; run with a mysql:// or postgres:// DATABASE_URL for the race")
    peer = make_peer("Busy")
    billing.post_payment(peer.account, actor=Scope.system(), amount=Decimal("100000"))
    node = NodeFactory(name="node1")
    retry_stats.reset()

    def rate(held: list[int]) -> None:
        with transaction.atomic():
            reservations.release_many(held, outcome=Reservation.Outcome.RATED)

    def call(index: int) -> None:
        # Each thread is a stream of calls: reserve, then release (a failed call) or leave
        # it for the rater's release_many (every third), as OpenSIPS and the rater do.
        held = []
        for number in range(CALLS_PER_THREAD):
            grant = reservations.reserve(_hold(peer, node, f"{index}-{number}@pbx"))
            if number % 3:
                reservations.release(grant.reservation_id, outcome=Reservation.Outcome.FAILED)
            else:
                held.append(grant.reservation_id)
            if len(held) == 4:
                rate(held)
                held = []
        rate(held)

    errors = _in_threads(call)

    assert errors == []
    assert (retry_stats.retries, retry_stats.gave_up) == (0, 0)
    assert Reservation.objects.filter(customer=peer).count() == THREADS * CALLS_PER_THREAD
    assert not Reservation.objects.active().filter(customer=peer).exists()
    assert Account.objects.get(pk=peer.account.pk).reserved == 0
