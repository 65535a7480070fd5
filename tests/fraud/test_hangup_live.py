"""Live: a customer suspended by origination control has its call ended by the OpenSIPS of
the node the call is on (dlg_end_dlg over MI), and the caller receives the switch's BYE.

The switch of tests/opensips (switch.py): OpenSIPS on the rendered config, call control
under uvicorn, SIPp as customer and supplier. Needs OPENSIPS_BIN (or opensips on PATH),
SIPp and MariaDB; skips naming what is missing.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import Reservation
from apps.fraud.controllers import run_all
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.fraud.services import end_alert
from apps.peers.models import Peer
from engines.opensips.mi import MIClient
from engines.opensips.state import DialogState
from tests.opensips.switch import (
    ACME_IP,
    BERLIN,
    LOOPBACK,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)

# The engines' live tests run one at a time on one worker (tests/conftest.py SERIAL_GROUPS).
pytestmark = pytest.mark.xdist_group("engines")


def wait_for(condition, *, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def test_a_suspended_customers_live_call_is_ended_by_its_nodes_opensips(switch: Switch, orm, settings):
    settings.OPENSIPS_MI_URL = switch.node1_mi.replace(LOOPBACK, "{address}")
    call = sipp(
        switch.node1_port, source=ACME_IP, callee=BERLIN, scenario="uac_held_until_bye.xml", background=True
    )
    mi = MIClient(switch.node1_mi)
    wait_for(
        lambda: any(
            dialog.call_id == call.call_id and dialog.state == DialogState.CONFIRMED
            for dialog in mi.dialogs()
        ),
        what="the call to be up",
    )
    controller = Controller.objects.create(
        name="Live burst",
        kind=Kind.BURST,
        metric=Metric.CALLS,
        peer=switch.acme,
        threshold=Decimal(10),
        floor=Decimal(1),  # no history: its one live call is a burst
        window_minutes=5,
        action=Action.BLOCK,
        block_minutes=1,
    )
    try:
        started = time.monotonic()
        result = run_all(now=timezone.now())
        call.wait(timeout=10)

        assert call.returncode == 0, call.log  # the scenario ends only on the switch's BYE
        assert time.monotonic() - started < 5
        assert result["calls_ended"] == 1
        assert Peer.objects.get(pk=switch.acme.pk).suspended_at is not None
        assert Reservation.objects.get(call_id=call.call_id).cut_result == "ended"
        alert = Alert.objects.get(controller=controller)
        assert "Live calls: 1 ended" in alert.detail
        assert not any(dialog.call_id == call.call_id and dialog.active for dialog in mi.dialogs())
    finally:
        # The module's world is shared: Acme calls again in the tests after this one.
        for alert in Alert.objects.filter(controller=controller, ended_at__isnull=True):
            end_alert(alert, now=timezone.now() + timedelta(minutes=2))
        controller.delete()
