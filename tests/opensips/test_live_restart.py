"""Issue 14, item 4: calls survive an OpenSIPS restart (the switch of test_live_calls).

Each node's OpenSIPS keeps its dialogs in a table of its own and loads it when it starts.
Ten calls are up on node1 when it is restarted: each still gets its BYE at its granted
maximum, each leaves one CDR of that length, and no money stays held.
"""

import time
from decimal import Decimal

from django.core.management import call_command

from apps.billing.models import Reservation
from apps.billing.services import rating
from apps.callcontrol import snapshot
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.nodes import services as node_services
from apps.nodes.models import ClusterSettings
from apps.opensips.models import Acc
from engines.opensips.mi import MIClient
from tests.opensips.switch import (
    ACME_IP,
    BERLIN,
    SYSTEM,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)
from tests.opensips.test_live_calls import wait_for

CALLS, GRANTED = 10, 12
REFRESH_WAIT = snapshot.CHECK_SECONDS + 1.0


def test_calls_up_during_a_restart_end_at_their_maximum_and_are_billed_once(switch: Switch, orm):
    ceiling = ClusterSettings.load().max_call_duration
    node_services.update_cluster_settings(actor=SYSTEM, changes={"max_call_duration": GRANTED})
    try:
        time.sleep(REFRESH_WAIT)
        run = sipp(
            switch.node1_port,
            source=ACME_IP,
            callee=BERLIN,
            scenario="uac_held_until_bye.xml",
            calls=CALLS,
            background=True,
            extra=["-r", str(CALLS), "-recv_timeout", "40000"],
        )
        prefix = run.call_id.removesuffix("1")
        mi = MIClient(switch.node1_mi)
        wait_for(
            lambda: (
                sum(1 for d in mi.dialogs(context=False) if d.active and d.call_id.startswith(prefix))
                == CALLS
            ),
            what=f"{CALLS} answered calls on node1",
        )
        restarted_at = time.monotonic()
        switch.restart("node1")

        # The restarted node knows the calls, and ends them itself at their maximum.
        restored = [
            d for d in MIClient(switch.node1_mi).dialogs(context=False) if d.call_id.startswith(prefix)
        ]
        assert len(restored) == CALLS, restored
        run.wait(timeout=60)
        assert time.monotonic() - restarted_at < GRANTED + 10
        rows = wait_for(
            lambda: (
                (found := list(Acc.objects.filter(callid__startswith=prefix)))
                and len(found) == CALLS
                and found
            ),
            what="a CDR for each call",
            timeout=20,
        )
    finally:
        node_services.update_cluster_settings(actor=SYSTEM, changes={"max_call_duration": ceiling})
        time.sleep(REFRESH_WAIT)

    # One CDR per call, each as long as the call was granted (answer to BYE).
    assert len({row.callid for row in rows}) == CALLS
    for row in rows:
        assert GRANTED - 1 <= row.ms_duration / 1000 <= GRANTED + 2, (row.callid, row.ms_duration)
    ingest.ingest_batch()
    rating.rate_batch()
    cdrs = Cdr.objects.filter(call_id__startswith=prefix, customer=switch.acme)
    assert cdrs.count() == CALLS
    assert all(cdr.sell_cost > Decimal(0) and cdr.rating_error == "" for cdr in cdrs)
    assert not Reservation.objects.filter(call_id__startswith=prefix, released_at__isnull=True).exists()
    call_command("check_ledger")
