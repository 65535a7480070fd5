"""A prepaid account with money for one minute and ten concurrent calls never ends below
its floor (zero) by more than one billing increment.

The account holds 0.60 USD, the price is 0.60/min billed per second (one increment =
1 s = 0.01 USD). Ten calls race for it from two nodes (real threads on a server
database); call control grants one minute to one of them. The engine ends that call when
its timer fires, a little after the 60 s granted (the BYE goes out after the timer, so
OpenSIPS accounts a few hundred milliseconds more); the other nine never connect. Every
CDR is rated; the balance is then at most one increment below zero.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.billing.services import rating
from apps.cdr.models import Cdr
from apps.peers.models import Peer
from tests.switching import race

pytestmark = pytest.mark.django_db(transaction=True)

INCREMENT_COST = Decimal("0.010000")  # one second at 0.60/min


@pytest.mark.parametrize("overrun_ms", [0, 400, 999])
def test_ten_calls_on_one_minute_of_money_end_within_one_increment_of_zero(one_minute, overrun_ms):
    customer, nodes = one_minute
    requests = [
        (
            nodes[i % 2],
            {
                "call_id": f"floor-{i}",
                "node": nodes[i % 2].name,
                "source_ip": "198.51.100.7",
                "caller": "15550000",
                "callee": "447700900123",
            },
        )
        for i in range(10)
    ]
    answers = [answer for _, answer in race(requests)]
    granted = {
        body["call_id"]: answer["max_duration"]
        for (_, body), answer in zip(requests, answers, strict=True)
        if answer["action"] == "route"
    }
    assert list(granted.values()) == [60], answers

    # OpenSIPS writes a CDR for every attempt: the granted call ran its 60 s plus the
    # timer's overrun; the nine refused ones failed with 402 and were never answered.
    supplier = Peer.objects.get(name="Carrier")
    start = timezone.now() - timedelta(minutes=5)
    for _, body in requests:
        seconds_ms = granted.get(body["call_id"], 0) * 1000 + (
            overrun_ms if body["call_id"] in granted else 0
        )
        Cdr.objects.create(
            call_id=body["call_id"],
            node=nodes[0],
            customer=customer,
            supplier=supplier if seconds_ms else None,
            callee=body["callee"],
            created_at=start,
            answered_at=start if seconds_ms else None,
            ended_at=start + timedelta(milliseconds=seconds_ms),
            duration_ms=seconds_ms,
            sip_code=200 if seconds_ms else 402,
        )

    result = rating.rate_all()

    account = Account.objects.get(peer=customer)
    print(  # the numbers, for -s
        f"overrun {overrun_ms} ms: granted {sum(granted.values())} s, rated {result.rated}, "
        f"balance {account.balance} (floor 0, one increment {INCREMENT_COST}), reserved {account.reserved}"
    )
    assert result.rated == 10
    assert account.reserved == 0
    assert not Reservation.objects.active().filter(account=account).exists()
    assert account.balance == (-INCREMENT_COST if overrun_ms else 0)
    assert account.balance >= -INCREMENT_COST
    assert billing.ledger_differences() == []
