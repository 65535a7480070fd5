"""Concurrent calls of one prepaid account never hold more money than it has.

Real threads, each with its own database connection, committing for real
(transaction=True): what two nodes asking at once look like to one database server.
The Galera version (two servers certifying) is in the cluster tests.
"""

import json
import time
from decimal import Decimal

import pytest

from apps.billing.models import Account, Reservation
from apps.billing.services import reservations
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.endpoint import handle
from apps.tenancy.scope import Scope
from tests.switching import race

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Scope.system()
CALLS = 10


def test_ten_concurrent_calls_share_one_minute_of_money(one_minute, monkeypatch):
    customer, nodes = one_minute
    snapshots.current()  # built once here, not ten times in the race
    # Widen the race: every call pauses between reading the account and writing its
    # reservation, so without the row lock all ten would read the same money.
    decide = reservations._decide

    def slow_decide(*args):
        time.sleep(0.05)
        return decide(*args)

    monkeypatch.setattr(reservations, "_decide", slow_decide)
    requests = [
        (
            nodes[i % 2],
            {
                "call_id": f"race-{i}",
                "node": nodes[i % 2].name,
                "source_ip": "198.51.100.7",
                "caller": "15550000",
                "callee": "447700900123",
            },
        )
        for i in range(CALLS)
    ]
    answers = race(requests)

    assert all(status == 200 for status, _ in answers)
    granted = [body["max_duration"] for _, body in answers if body["action"] == "route"]
    refused = [body["code"] for _, body in answers if body["action"] == "reject"]
    assert sum(granted) == 60, answers
    assert granted == [60]
    assert refused == [402] * (CALLS - 1)

    account = Account.objects.get(peer=customer)
    held = Reservation.objects.active().filter(account=account)
    assert account.reserved == Decimal("0.600000") == sum(r.amount for r in held)
    assert held.count() == 1


def _ask(operation, node, body):
    status, answer = handle(operation, json.dumps(body).encode(), f"Bearer {node.call_control_secret}")
    assert status == 200, answer
    return answer


def test_released_money_is_granted_again(one_minute):
    customer, nodes = one_minute
    node = nodes[0]
    body = {"call_id": "a", "node": node.name, "source_ip": "198.51.100.7", "callee": "447700900123"}
    first = _ask("authorize", node, body)
    assert first["max_duration"] == 60
    assert _ask("authorize", node, {**body, "call_id": "b"})["code"] == 402
    release = {"node": node.name, "call_id": "a", "reservation": first["reservation"]}
    assert _ask("release", node, release) == {"released": 1}
    assert _ask("authorize", node, {**body, "call_id": "c"})["max_duration"] == 60
    assert Account.objects.get(peer=customer).reserved == Decimal("0.600000")
