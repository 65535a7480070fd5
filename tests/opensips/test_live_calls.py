"""Real SIP calls through the rendered opensips.cfg (issue 5, item 9).

Two OpenSIPS instances (node1, node2) run the configuration `render_node_config` writes,
on loopback ports, against the test database; call control is the product's ASGI app
under uvicorn on the same database; SIPp plays the customers (uac, each from its own
127.0.0.x address) and the suppliers (uas). OpenSIPS reads its tables from MariaDB only,
so these tests run when the test database is MariaDB (DATABASE_URL=mysql://…) and an
OpenSIPS binary is found (OPENSIPS_BIN or PATH); otherwise they are skipped, saying why.

The world is built once for the module and committed (other processes read it), so the
tests share it: each uses its own customer or callee.
"""

import socket
import time

import pytest
from django.db import transaction

from apps.billing.models import Reservation
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.opensips import provisioning
from apps.opensips.models import Acc, Location, MissedCall
from apps.peers import services as peer_services
from engines.opensips.mi import MIClient
from tests.opensips.switch import (
    ACME_IP,
    BERLIN,
    LIMITED_IP,
    LONDON,
    NEWCOMER_IP,
    PARIS,
    PHONE_IP,
    PREPAID_IP,
    ROME,
    STRANGER_IP,
    SYSTEM,
    WANDERER_IP,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)


def wait_for(condition, *, what: str, timeout: float = 10.0):
    """Poll `condition` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def acc_row(call_id: str) -> Acc:
    return wait_for(lambda: Acc.objects.filter(callid=call_id).first(), what=f"the acc row of {call_id}")


def test_a_customers_call_reaches_the_supplier_and_leaves_a_cdr_with_our_columns(switch: Switch, orm):
    call = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN, hold_ms=1000)

    assert call.returncode == 0, call.log
    row = acc_row(call.call_id)
    assert row.sip_code == "200"
    assert row.peer_id == switch.acme.pk
    assert row.node == "node1"
    assert row.supplier_id == switch.alpha.pk
    assert row.gateway_id == switch.alpha_gateway.pk
    assert row.source_ip == ACME_IP
    assert row.callee == BERLIN
    assert row.callee_out == BERLIN
    assert row.destination == "Germany"
    assert row.reservation_id == Reservation.objects.get(call_id=call.call_id).pk
    assert row.ms_duration >= 1000
    ingest.ingest_batch()
    cdr = Cdr.objects.get(call_id=call.call_id)
    assert (cdr.customer_id, cdr.supplier_id) == (switch.acme.pk, switch.alpha.pk)


def test_a_call_is_refused_with_503_when_call_control_does_not_answer(switch: Switch, orm):
    call = sipp(switch.node3_port, source=ACME_IP, callee=BERLIN)

    assert call.returncode != 0
    assert "SIP/2.0 503 Call control unavailable" in call.messages
    assert call.call_id not in (switch.logs / "alpha.messages").read_text()
    assert not Reservation.objects.filter(call_id=call.call_id).exists()


def test_a_call_from_an_unknown_address_is_refused(switch: Switch, orm):
    call = sipp(switch.node1_port, source=STRANGER_IP, callee=BERLIN)

    assert call.returncode != 0
    # Not a known address: the caller is asked for a SIP account's credentials, and has none.
    assert "SIP/2.0 407" in call.messages
    assert not Acc.objects.filter(callid=call.call_id).exists()
    assert not MissedCall.objects.filter(callid=call.call_id).exists()


def test_a_sip_accounts_call_is_authenticated_by_digest_and_routed(switch: Switch, orm):
    call = sipp(
        switch.node1_port,
        source=PHONE_IP,
        callee=BERLIN,
        scenario="uac_digest.xml",
        hold_ms=1000,
        extra=[
            "-key",
            "caller",
            "alice",
            "-key",
            "domain",
            "sip.test",
            "-au",
            "alice",
            "-ap",
            switch.phone_password,
        ],
    )

    assert call.returncode == 0, call.log
    row = acc_row(call.call_id)
    assert (row.sip_code, row.peer_id, row.source_ip) == ("200", switch.acme.pk, PHONE_IP)
    assert row.supplier_id == switch.alpha.pk


def test_a_wrong_password_is_challenged_again_and_never_routed(switch: Switch, orm):
    call = sipp(
        switch.node1_port,
        source=PHONE_IP,
        callee=BERLIN,
        scenario="uac_digest.xml",
        extra=[
            "-key",
            "caller",
            "alice",
            "-key",
            "domain",
            "sip.test",
            "-au",
            "alice",
            "-ap",
            "wrong-password",
        ],
    )

    # Credentials were sent and refused with a new challenge; the call never rang anywhere.
    assert call.returncode == 0, call.log
    assert "Proxy-Authorization: Digest" in call.messages
    assert call.messages.count("SIP/2.0 407") == 2
    assert "SIP/2.0 180" not in call.messages
    assert not Reservation.objects.filter(call_id=call.call_id).exists()


def test_a_call_to_a_node_the_peer_is_not_served_by_is_redirected(switch: Switch, orm):
    call = sipp(switch.node1_port, source=WANDERER_IP, callee=BERLIN)

    assert call.returncode != 0
    assert "SIP/2.0 302 Served by node2" in call.messages
    assert f"Contact: <sip:{BERLIN}@127.0.0.1:{switch.node2_port}>" in call.messages
    redirect = call.messages[call.messages.index("SIP/2.0 302") :].split("\n\n")[0]
    assert redirect.count("Contact:") == 1  # only where call control sends the call


def test_a_prepaid_call_is_cut_by_bye_at_its_granted_maximum_duration(switch: Switch, orm):
    # 0.03 USD at 0.60 USD a minute billed per second: three seconds.
    call = sipp(switch.node1_port, source=PREPAID_IP, callee=BERLIN, scenario="uac_held_until_bye.xml")

    assert call.returncode == 0, call.log  # the scenario ends only on the switch's BYE
    row = acc_row(call.call_id)
    assert row.peer_id == switch.prepaid.pk
    # OpenSIPS's dialog timer ticks once a second: the BYE leaves within a second of the grant.
    assert 2000 < row.ms_duration < 4000


def test_the_peers_call_beyond_its_limit_is_refused(switch: Switch, orm):
    # Limited may have one call at a time: the second, while the first is up, is refused.
    first = sipp(switch.node1_port, source=LIMITED_IP, callee=BERLIN, hold_ms=3000, background=True)
    mi = MIClient(switch.node1_mi)
    wait_for(
        lambda: (
            mi.execute("profile_get_size", {"profile": "peer_calls", "value": str(switch.limited.pk)})
            .get("Profile", {})
            .get("count")
        ),
        what="the first call of Limited to be up",
    )
    second = sipp(switch.node1_port, source=LIMITED_IP, callee=BERLIN)
    first.wait()

    assert first.returncode == 0, first.log
    assert second.returncode != 0
    assert "SIP/2.0 486" in second.messages


def test_the_second_gateway_gets_the_call_when_the_first_answers_503(switch: Switch, orm):
    call = sipp(switch.node1_port, source=ACME_IP, callee=PARIS, hold_ms=1000)

    assert call.returncode == 0, call.log
    row = acc_row(call.call_id)
    assert row.sip_code == "200"
    assert row.supplier_id == switch.bravo.pk
    attempts = wait_for(
        lambda: list(MissedCall.objects.filter(callid=call.call_id)), what="the failed attempt's row"
    )
    assert [(a.sip_code, a.supplier_id) for a in attempts] == [("503", switch.failing.pk)]


def test_the_next_route_gets_the_call_when_the_first_misses_its_setup_timeout(switch: Switch, orm):
    call = sipp(switch.node1_port, source=ACME_IP, callee=ROME, hold_ms=1000)

    assert call.returncode == 0, call.log
    assert acc_row(call.call_id).supplier_id == switch.bravo.pk
    attempts = wait_for(
        lambda: list(MissedCall.objects.filter(callid=call.call_id)), what="the timed-out attempt's row"
    )
    assert [(a.sip_code, a.supplier_id) for a in attempts] == [("408", switch.mute.pk)]


def test_an_endpoint_added_through_the_service_is_accepted_without_a_restart(switch: Switch, orm):
    refused = sipp(switch.node1_port, source=NEWCOMER_IP, callee=BERLIN)
    assert refused.returncode != 0

    with transaction.atomic():
        peer_services.add_endpoint(switch.newcomer, actor=SYSTEM, ip=NEWCOMER_IP)
        provisioning.sync_addresses()
    MIClient(switch.node1_mi).execute("address_reload", {})
    accepted = sipp(switch.node1_port, source=NEWCOMER_IP, callee=BERLIN, hold_ms=1000)

    assert accepted.returncode == 0, accepted.log
    assert acc_row(accepted.call_id).peer_id == switch.newcomer.pk


def test_a_phone_registered_on_one_node_is_reached_through_another(switch: Switch, orm):
    register = sipp(
        switch.node1_port,
        source=PHONE_IP,
        local_port=switch.phone_port,
        scenario="ua_register.xml",
        service="alice",
        extra=["-key", "domain", "sip.test", "-au", "alice", "-ap", switch.phone_password],
    )
    assert register.returncode == 0, register.log
    assert Location.objects.filter(username="alice", domain="sip.test").exists()

    phone = sipp(
        switch.node2_port, source=PHONE_IP, local_port=switch.phone_port, role="uas", background=True
    )
    call = sipp(
        switch.node2_port,
        source=ACME_IP,
        scenario="uac_to_domain.xml",
        service="alice",
        hold_ms=1000,
        extra=["-key", "domain", "sip.test"],
    )
    phone.wait()

    assert call.returncode == 0, call.log
    assert phone.returncode == 0, phone.log
    row = acc_row(call.call_id)
    assert (row.node, row.peer_id, row.callee, row.destination) == (
        "node2",
        switch.acme.pk,
        "alice",
        "On-net",
    )


def test_a_call_failing_before_answer_releases_its_reservation(switch: Switch, orm):
    # London goes to Failing only: 503, no other route, so OpenSIPS tells call control.
    call = sipp(switch.node1_port, source=ACME_IP, callee=LONDON)

    assert call.returncode != 0
    # A proxy never relays a 503 (RFC 3261 16.7): the caller gets 500.
    assert "SIP/2.0 500" in call.messages
    reservation = Reservation.objects.get(call_id=call.call_id)
    wait_for(
        lambda: Reservation.objects.filter(pk=reservation.pk, released_at__isnull=False).exists(),
        what="the reservation to be released",
    )


def test_the_nodes_reload_what_the_product_provisions_over_mi(switch: Switch, orm):
    mi = MIClient(switch.node1_mi)
    for command in ("address_reload", "dr_reload", "reg_reload"):
        mi.execute(command, {})

    gateways = mi.execute("dr_gw_status", {})["Gateways"]
    assert str(switch.alpha_gateway.pk) in {gateway["ID"] for gateway in gateways}


def test_a_forged_in_dialog_request_is_not_relayed_to_a_supplier(switch: Switch, orm):
    # A To-tag and our Route header, but no dialog of ours: relayed, it would reach the
    # supplier from our address, unidentified and unbilled.
    gateway = f"127.0.0.1:{switch.alpha_gateway.port}"
    call_id = f"forged-{time.monotonic_ns()}@{STRANGER_IP}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((STRANGER_IP, 0))
        udp.settimeout(5)
        port = udp.getsockname()[1]
        request = (
            f"INVITE sip:{BERLIN}@{gateway} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {STRANGER_IP}:{port};branch=z9hG4bK{time.monotonic_ns()}\r\n"
            f"Route: <sip:127.0.0.1:{switch.node1_port};lr>\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:attacker@{STRANGER_IP}>;tag=a1\r\n"
            f"To: <sip:{BERLIN}@{gateway}>;tag=forged\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 2 INVITE\r\n"
            f"Contact: <sip:attacker@{STRANGER_IP}:{port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        udp.sendto(request.encode(), ("127.0.0.1", switch.node1_port))
        status = udp.recv(4096).decode().split("\r\n", 1)[0]
    assert status == "SIP/2.0 481 Call/Transaction Does Not Exist"
    time.sleep(0.5)  # a relayed request would be in the supplier's trace by now
    supplier_trace = switch.logs / "alpha.messages"
    assert call_id not in (supplier_trace.read_text() if supplier_trace.exists() else "")
