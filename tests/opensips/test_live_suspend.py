"""Suspending a customer while OpenSIPS runs: its next INVITE is refused, without a restart.

The switch of test_live_calls (tests/opensips/switch.py): OpenSIPS on the rendered config,
call control under uvicorn in its own process, SIPp as customer and supplier. suspend_peer
writes with QuerySet.update(); call control's process hears of it only through the
change the service announces (apps.core.changes), within its refresh interval.
"""

import time

from apps.billing.models import Reservation
from apps.callcontrol import snapshot
from apps.peers import services as peer_services
from tests.opensips.switch import (
    ACME_IP,
    BERLIN,
    SYSTEM,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)

# Call control's processes check their snapshot at most every CHECK_SECONDS; a margin for
# a loaded machine.
REFRESH_WAIT = snapshot.CHECK_SECONDS + 1.0


def test_a_customer_suspended_while_opensips_runs_has_its_next_invite_refused(switch: Switch, orm):
    before = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN, hold_ms=500)
    assert before.returncode == 0, before.log  # call control has built its snapshot

    peer_services.suspend_peer(switch.acme, actor=SYSTEM, reason="unpaid invoices")
    time.sleep(REFRESH_WAIT)
    refused = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN)

    assert refused.returncode != 0
    assert "SIP/2.0 403" in refused.messages, refused.log
    assert "suspended" in refused.messages.lower()
    assert refused.call_id not in (switch.logs / "alpha.messages").read_text()
    assert not Reservation.objects.filter(call_id=refused.call_id).exists()

    peer_services.resume_peer(switch.acme, actor=SYSTEM)
    time.sleep(REFRESH_WAIT)
    after = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN, hold_ms=500)

    assert after.returncode == 0, after.log
