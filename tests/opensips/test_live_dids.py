"""Issue 14, items 1 and 2, through real OpenSIPS nodes (the switch of test_live_calls):

- a supplier's call to one of our DIDs reaches the SIP account it points to, registered on
  another node, and is rated on both sides; an unknown DID is refused with 404, uncharged;
- a call to one of our SIP accounts goes through call control like any other: billed at
  the on-net price, refused when the caller is suspended; alice@sip.test and
  alice@other.test are two phones.
"""

import time
from decimal import Decimal

from apps.billing.models import Reservation
from apps.callcontrol import snapshot
from apps.cdr.models import Cdr
from apps.opensips.models import Acc, Location
from apps.peers import services as peer_services
from tests.opensips.switch import (
    BERLIN,
    CARRIER_IP,
    DID,
    ONNET_IP,
    PHONE2_IP,
    PHONE_IP,
    RING_GROUP_DID,
    SYSTEM,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)
from tests.opensips.test_live_call_ends import rated_cdr
from tests.opensips.test_live_calls import acc_row, wait_for

REFRESH_WAIT = snapshot.CHECK_SECONDS + 1.0


def register(switch: Switch, *, node_port: int, ip: str, port: int, domain: str, user: str = "alice") -> None:
    run = sipp(
        node_port,
        source=ip,
        local_port=port,
        scenario="ua_register.xml",
        service=user,
        extra=["-key", "domain", domain, "-au", user, "-ap", switch.phone_password],
    )
    assert run.returncode == 0, run.log
    assert Location.objects.filter(username=user, domain=domain).exists()


def phone(switch: Switch, ip: str, port: int, node_port: int):
    """The registered phone answering one call (SIPp's uas) in the background."""
    return sipp(node_port, source=ip, local_port=port, role="uas", background=True)


def call_account(switch: Switch, node_port: int, domain: str, *, hold_ms: int = 1000):
    return sipp(
        node_port,
        source=ONNET_IP,
        scenario="uac_to_domain.xml",
        service="alice",
        hold_ms=hold_ms,
        extra=["-key", "domain", domain],
    )


def test_a_suppliers_call_to_a_did_reaches_the_phone_registered_on_another_node(switch: Switch, orm):
    register(switch, node_port=switch.node1_port, ip=PHONE_IP, port=switch.phone_port, domain="sip.test")
    answering = phone(switch, PHONE_IP, switch.phone_port, switch.node2_port)
    call = sipp(switch.node2_port, source=CARRIER_IP, callee=DID, hold_ms=2000)
    answering.wait()

    assert call.returncode == 0, call.log
    assert answering.returncode == 0, answering.log
    row = acc_row(call.call_id)
    assert (row.node, row.peer_id, row.supplier_id, row.callee) == (
        "node2",
        switch.acme.pk,
        switch.carrier.pk,
        DID,
    )
    assert row.destination == f"DID {DID}"
    cdr = rated_cdr(call.call_id)
    # About 2 s at 0.60/min to Acme (0.01 a second) and 0.12/min from Carrier.
    assert 2 <= cdr.billable_seconds <= 4, cdr.billable_seconds
    assert cdr.sell_cost == Decimal("0.01") * cdr.billable_seconds
    assert cdr.buy_cost == Decimal("0.002") * cdr.billable_seconds
    assert (cdr.customer_id, cdr.supplier_id) == (switch.acme.pk, switch.carrier.pk)
    assert not Reservation.objects.filter(call_id=call.call_id, released_at__isnull=True).exists()


def test_an_unknown_did_is_refused_with_404_and_charges_nothing(switch: Switch, orm):
    unknown = sipp(switch.node1_port, source=CARRIER_IP, callee="442071119999")
    # A supplier only delivers calls to our DIDs: it cannot originate one to a number.
    outbound = sipp(switch.node1_port, source=CARRIER_IP, callee=BERLIN)

    for call in (unknown, outbound):
        assert call.returncode != 0
        assert "SIP/2.0 404 Unknown number" in call.messages, call.log
        assert not Reservation.objects.filter(call_id=call.call_id).exists()
        assert not Acc.objects.filter(callid=call.call_id).exists()
        assert not Cdr.objects.filter(call_id=call.call_id).exists()


def test_alice_of_two_domains_are_two_phones_reached_through_call_control(switch: Switch, orm):
    register(switch, node_port=switch.node1_port, ip=PHONE_IP, port=switch.phone_port, domain="sip.test")
    register(switch, node_port=switch.node1_port, ip=PHONE2_IP, port=switch.phone2_port, domain="other.test")

    for ip, port, domain in (
        (PHONE_IP, switch.phone_port, "sip.test"),
        (PHONE2_IP, switch.phone2_port, "other.test"),
    ):
        answering = phone(switch, ip, port, switch.node2_port)
        call = call_account(switch, switch.node2_port, domain)
        answering.wait()
        assert call.returncode == 0, call.log
        assert answering.returncode == 0, answering.log
        assert call.call_id in answering.messages  # this phone, not the other alice
        row = acc_row(call.call_id)
        assert (row.peer_id, row.callee, row.destination, row.supplier_id) == (
            switch.onnet.pk,
            "alice",
            "On-net",
            None,
        )
        cdr = rated_cdr(call.call_id)
        # Billed at Retail's on-net price, 0.0100/min, nothing bought.
        assert cdr.sell_cost == (Decimal("0.0100") * cdr.billable_seconds / 60).quantize(cdr.sell_cost)
        assert cdr.sell_cost > 0 and cdr.buy_cost == 0


def test_an_on_net_call_of_a_suspended_customer_is_refused(switch: Switch, orm):
    register(switch, node_port=switch.node1_port, ip=PHONE_IP, port=switch.phone_port, domain="sip.test")
    peer_services.suspend_peer(switch.onnet, actor=SYSTEM, reason="unpaid invoices")
    try:
        time.sleep(REFRESH_WAIT)
        refused = call_account(switch, switch.node1_port, "sip.test")
        assert refused.returncode != 0
        assert "SIP/2.0 403" in refused.messages, refused.log
        assert not Reservation.objects.filter(call_id=refused.call_id).exists()
    finally:
        peer_services.resume_peer(switch.onnet, actor=SYSTEM)
        time.sleep(REFRESH_WAIT)


def test_a_call_to_an_account_that_is_not_registered_is_480(switch: Switch, orm):
    Location.objects.filter(username="alice", domain="other.test").delete()
    call = call_account(switch, switch.node1_port, "other.test")
    assert "SIP/2.0 480" in call.messages, call.log
    reservation = Reservation.objects.get(call_id=call.call_id)
    wait_for(
        lambda: Reservation.objects.filter(pk=reservation.pk, released_at__isnull=False).exists(),
        what="the reservation of the call nobody could take to be released",
    )


def test_a_ring_group_did_rings_every_phone_at_once_and_one_answers(switch: Switch, orm):
    register(switch, node_port=switch.node1_port, ip=PHONE_IP, port=switch.phone_port, domain="sip.test")
    register(
        switch,
        node_port=switch.node1_port,
        ip=PHONE2_IP,
        port=switch.phone2_port,
        domain="sip.test",
        user="bob",
    )
    answering = phone(switch, PHONE_IP, switch.phone_port, switch.node2_port)
    # bob's phone rings and never answers: it is cancelled once alice's phone answers.
    ringing = sipp(
        switch.node2_port,
        source=PHONE2_IP,
        local_port=switch.phone2_port,
        scenario="uas_trying_only.xml",
        role="uas",
        background=True,
    )
    call = sipp(switch.node2_port, source=CARRIER_IP, callee=RING_GROUP_DID, hold_ms=1000)
    answering.wait()
    ringing.wait()

    assert call.returncode == 0, call.log
    assert call.call_id in answering.messages
    assert call.call_id in ringing.messages and "CANCEL sip:" in ringing.messages, ringing.log
    row = acc_row(call.call_id)
    assert (row.peer_id, row.supplier_id, row.destination) == (
        switch.acme.pk,
        switch.carrier.pk,
        f"DID {RING_GROUP_DID}",
    )
