"""Issue 14, items 6 and 7, through real OpenSIPS nodes (the switch of test_live_calls):

- in dedicated-IP mode a node listening on every address sends its calls from its own;
- a supplier that answers 100 Trying and never rings is given up after the route's setup
  timeout, not after the 60 s a ringing call may take;
- the per-node concurrent-call profile refuses a call that call control's count let by;
- a call that has passed through our nodes too often is refused as a loop.
"""

import socket
import threading
import time

from apps.billing.models import Reservation
from apps.billing.services import reservations
from tests.opensips.switch import (
    ACME_IP,
    BERLIN,
    LIMITED_IP,
    NODE4_IP,
    VIENNA,
    ZURICH,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)
from tests.opensips.test_live_calls import acc_row, wait_for


def test_a_dedicated_ip_node_sends_its_calls_from_its_own_address(switch: Switch, orm):
    received: list = []

    def read() -> None:
        switch.probe.settimeout(10)
        try:
            while True:
                data, source = switch.probe.recvfrom(65535)
                if data.startswith(b"INVITE "):
                    received.append((source, data.decode(errors="replace")))
                    return
        except TimeoutError:
            return

    reader = threading.Thread(target=read)
    reader.start()
    # Probe never answers: the call fails after its setup timeout; only its INVITE matters.
    sipp(switch.node4_port, source=ACME_IP, callee=VIENNA)
    reader.join()

    assert received, "Probe's gateway received no INVITE"
    (address, port), invite = received[0]
    assert (address, port) == (NODE4_IP, switch.node4_port)
    assert f"Via: SIP/2.0/UDP {NODE4_IP}:{switch.node4_port}" in invite


def test_a_supplier_that_never_rings_is_given_up_after_the_setup_timeout(switch: Switch, orm):
    started = time.monotonic()
    call = sipp(switch.node1_port, source=ACME_IP, callee=ZURICH, hold_ms=500)
    took = time.monotonic() - started

    # Stuck said 100 Trying and nothing more: after its 1 s setup timeout, Bravo took the call.
    assert call.returncode == 0, call.log
    assert took < 10, took
    assert acc_row(call.call_id).supplier_id == switch.bravo.pk
    assert call.call_id in (switch.logs / "stuck.messages").read_text()


def test_the_nodes_own_count_refuses_a_call_over_the_limit(switch: Switch, orm):
    # Limited may have one call at a time. Its first call is up; its reservation is released
    # behind OpenSIPS's back, so call control counts no live call and grants the second: the
    # node's peer_calls profile still counts the first and refuses it.
    first = sipp(switch.node1_port, source=LIMITED_IP, callee=BERLIN, hold_ms=4000, background=True)
    held = wait_for(
        lambda: Reservation.objects.filter(call_id=first.call_id, released_at__isnull=True).first(),
        what="the first call's reservation",
    )
    time.sleep(0.5)  # answered by now
    reservations.release(held.pk, outcome=Reservation.Outcome.FAILED)
    second = sipp(switch.node1_port, source=LIMITED_IP, callee=BERLIN, hold_ms=500)
    first.wait()

    assert first.returncode == 0, first.log
    assert "SIP/2.0 486 Too many calls" in second.messages, second.log
    refused = Reservation.objects.get(call_id=second.call_id)
    wait_for(
        lambda: Reservation.objects.filter(pk=refused.pk, released_at__isnull=False).exists(),
        what="the refused call's reservation to be released",
    )


def relayed_invite(switch: Switch, call_id: str) -> str | None:
    """The INVITE of `call_id` as the supplier alpha received it, once its trace holds it."""
    for message in (switch.logs / "alpha.messages").read_text().split("UDP message received"):
        if message.lstrip(" [0123456789]bytes:\n").startswith("INVITE") and f"Call-ID: {call_id}" in message:
            return message
    return None


def test_each_node_counts_itself_and_a_looping_call_is_refused(switch: Switch, orm):
    call = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN, hold_ms=500)
    assert call.returncode == 0, call.log
    # The supplier's SIPp writes its trace when it flushes: read until the INVITE is there.
    invite = wait_for(
        lambda: relayed_invite(switch, call.call_id), what="the relayed INVITE in alpha's trace"
    )
    assert "X-Smartswitch-Hops: 1" in invite

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((ACME_IP, 0))
        udp.settimeout(5)
        port = udp.getsockname()[1]
        call_id = f"loop-{time.monotonic_ns()}@{ACME_IP}"
        request = (
            f"INVITE sip:{BERLIN}@127.0.0.1:{switch.node1_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {ACME_IP}:{port};branch=z9hG4bK{time.monotonic_ns()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:4930111222@{ACME_IP}>;tag=l1\r\n"
            f"To: <sip:{BERLIN}@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:4930111222@{ACME_IP}:{port}>\r\n"
            "X-Smartswitch-Hops: 3\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        udp.sendto(request.encode(), ("127.0.0.1", switch.node1_port))
        status = udp.recv(4096).decode().split("\r\n", 1)[0]
    assert status == "SIP/2.0 482 Loop Detected"
    assert not Reservation.objects.filter(call_id=call_id).exists()
