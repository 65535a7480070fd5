"""Issue 14, item 3: a peer's calls per second hold at OpenSIPS (the switch of test_live_calls).

Bursty may make 5 calls a second and is served by node1 alone, so node1's share is all 5.
SIPp offers 20 a second for 10 s: about 5 a second get through, the rest are refused with
"503 CPS limit" and leave neither a CDR nor money held.
"""

import re
from collections import Counter

from apps.billing.models import Reservation
from apps.billing.services import rating
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.opensips.models import Acc
from engines.opensips.mi import MIClient
from tests.opensips.switch import (
    BERLIN,
    BURSTY_IP,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)
from tests.opensips.test_live_calls import wait_for

OFFERED, SECONDS, LIMIT = 20, 10, 5


def test_a_peer_limited_to_5_calls_a_second_gets_5_a_second_through(switch: Switch, orm):
    refused_before = MIClient(switch.node1_mi).statistics(["script:"]).get("script:cps_refused", 0)
    run = sipp(
        switch.node1_port,
        source=BURSTY_IP,
        callee=BERLIN,
        calls=OFFERED * SECONDS,
        extra=["-r", str(OFFERED), "-rp", "1000"],
    )
    prefix = run.call_id.removesuffix("1")

    refused = len(set(re.findall(r"SIP/2\.0 503 CPS limit\r?\n(?:.*\r?\n)*?Call-ID: (\S+)", run.messages)))
    admitted = wait_for(
        lambda: (
            list(
                Acc.objects.filter(callid__startswith=prefix, peer_id=switch.bursty.pk).values_list(
                    "setup_ms", flat=True
                )
            )
            if Acc.objects.filter(callid__startswith=prefix).count() + refused >= OFFERED * SECONDS
            else None
        ),
        what="a CDR for every call not refused",
        timeout=20,
    )
    assert len(admitted) + refused == OFFERED * SECONDS, (len(admitted), refused)
    per_second = Counter(int(ms) // 1000 for ms in admitted)
    seconds = sorted(per_second)
    # The last second is partial, and so are the first two: ratelimit's one-second windows
    # do not start on the clock's seconds, so the first window's five calls may straddle the
    # first whole second and meet the next window's five there (3 in the first second, then
    # 7). Every whole second after that is 5 ± 1.
    whole = [per_second[second] for second in seconds[2:-1]]
    assert len(whole) >= SECONDS - 4, per_second
    assert all(LIMIT - 1 <= count <= LIMIT + 1 for count in whole), per_second
    assert LIMIT * (SECONDS - 1) <= len(admitted) <= LIMIT * (SECONDS + 2), per_second
    # Refused calls are counted on the node and hold no money (refused before call control
    # was asked, or released at once).
    counted = MIClient(switch.node1_mi).statistics(["script:"]).get("script:cps_refused", 0) - refused_before
    assert counted == refused, (counted, refused)

    # Rated, the admitted calls leave no money held; the refused ones held none or had it
    # released (refused after call control answered, on the first call).
    def settled() -> bool:
        ingest.ingest_batch()
        rating.rate_batch()
        return not Acc.objects.filter(callid__startswith=prefix).exists()

    wait_for(settled, what="every admitted call's CDR imported and rated", timeout=20)
    assert Cdr.objects.filter(call_id__startswith=prefix, customer=switch.bursty).count() == len(admitted)
    assert not Reservation.objects.filter(call_id__startswith=prefix, released_at__isnull=True).exists()
