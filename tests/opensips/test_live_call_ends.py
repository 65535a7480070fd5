"""Issue 13: calls that can be billed, whatever the far ends do (the switch of test_live_calls).

- The caller hears 100 Trying at once: it stops retransmitting its INVITE while call control
  is asked (each retransmission was work for OpenSIPS under load, and one arriving after its
  transaction was gone started the call again).
- An answer the caller never ACKs ends after the ACK timeout, with BYEs both ways, and is
  billed what it lasted, not its granted maximum; an ACKed call lasts as long as it is held.
- A 180 that arrives after the 200 leaves the call's CDR.
- The CDR's setup and answer times are exact to the millisecond.
- Overload control: a call past the requests waiting for call control is refused at once.
"""

import re

from apps.billing.models import Reservation
from apps.billing.services import rating
from apps.cdr import ingest
from apps.cdr.models import Cdr
from engines.opensips.mi import MIClient
from tests.opensips.switch import (
    ACK_TIMEOUT,
    ACME_IP,
    BERLIN,
    MADRID,
    NODE3_QUEUE,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)
from tests.opensips.test_live_calls import acc_row, wait_for


def rated_cdr(call_id: str) -> Cdr:
    acc_row(call_id)
    ingest.ingest_batch()
    rating.rate_batch()
    return Cdr.objects.get(call_id=call_id, customer__isnull=False)


def node3_statistic(switch: Switch, name: str) -> int:
    return MIClient(switch.node3_mi).statistics(["script:"]).get(f"script:{name}", 0)


def failures_counted(switch: Switch) -> int:
    return node3_statistic(switch, "call_control_failed")


def test_a_call_past_the_requests_waiting_for_call_control_is_refused_at_once(switch: Switch, orm):
    # node3's call control never answers: each call waits 2 s for it, and node3 keeps at most
    # NODE3_QUEUE of them waiting. The next one is refused before its transaction starts.
    waiting = sipp(
        switch.node3_port,
        source=ACME_IP,
        callee=BERLIN,
        calls=NODE3_QUEUE,
        background=True,
        extra=["-r", str(NODE3_QUEUE * 4)],
    )
    wait_for(lambda: node3_statistic(switch, "call_control_waiting") >= NODE3_QUEUE, what="a full queue")
    refused_before = node3_statistic(switch, "call_control_overloaded")

    call = sipp(switch.node3_port, source=ACME_IP, callee=BERLIN)

    assert "SIP/2.0 503 Overloaded" in call.messages, call.log
    assert "Retry-After: 1" in call.messages
    assert "SIP/2.0 100 Trying" not in call.messages  # no transaction, no call control asked
    assert node3_statistic(switch, "call_control_overloaded") == refused_before + 1
    assert not Reservation.objects.filter(call_id=call.call_id).exists()
    # The waiting calls end with 503 when OpenSIPS stops waiting, and the gauge comes down.
    waiting.wait()
    refusals = re.findall(r"SIP/2.0 503 [^\r\n]*", waiting.messages)  # each retransmitted until ACKed
    assert set(refusals) == {"SIP/2.0 503 Call control unavailable"}, waiting.log
    assert len(set(re.findall(r"Call-ID: (\S+)", waiting.messages))) == NODE3_QUEUE
    wait_for(lambda: node3_statistic(switch, "call_control_waiting") == 0, what="an empty queue")


def test_the_caller_hears_100_trying_at_once_and_sends_its_invite_once(switch: Switch, orm):
    # node3's call control never answers: OpenSIPS gives up after 2 s and answers 503.
    before = failures_counted(switch)
    call = sipp(switch.node3_port, source=ACME_IP, callee=BERLIN)

    assert "SIP/2.0 503 Call control unavailable" in call.messages, call.log
    trying = call.messages.index("SIP/2.0 100 Trying")
    assert trying < call.messages.index("SIP/2.0 503")
    # SIPp retransmits an INVITE after 0.5 s, 1 s, 2 s… unless a provisional reply came.
    assert call.messages.count(f"INVITE sip:{BERLIN}@") == 1, call.messages
    # Counted for the node's page (get_statistics), not logged call by call.
    assert failures_counted(switch) == before + 1


def test_a_caller_cancelling_while_call_control_is_asked_gets_487(switch: Switch, orm):
    # node3's call control never answers: the CANCEL arrives while OpenSIPS waits for it.
    call = sipp(switch.node3_port, source=ACME_IP, callee=BERLIN, scenario="uac_cancel_while_asking.xml")

    assert call.returncode == 0, call.log  # 100, then 200 to the CANCEL, then 487
    assert "SIP/2.0 503" not in call.messages
    assert not Reservation.objects.filter(call_id=call.call_id, released_at__isnull=True).exists()


def test_an_answer_the_caller_never_acks_ends_after_the_ack_timeout_billed_what_it_lasted(
    switch: Switch, orm
):
    call = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN, scenario="uac_no_ack.xml")

    assert call.returncode == 0, call.log  # the scenario ends on the switch's BYE
    cdr = rated_cdr(call.call_id)
    # Granted hours (Acme is postpaid with credit), ended by the ACK timeout: the dialog's
    # timer ticks once a second.
    assert ACK_TIMEOUT * 1000 - 1000 < cdr.duration_ms < ACK_TIMEOUT * 1000 + 2000
    assert cdr.sell_cost > 0
    reservation = Reservation.objects.get(call_id=call.call_id)
    assert reservation.released_at is not None

    # The supplier was told too: a BYE of this call reached it.
    def supplier_got_bye() -> bool:
        trace = (switch.logs / "alpha.messages").read_text()
        return any(call.call_id in message for message in re.findall(r"bytes :\n\nBYE .*?\n\n", trace, re.S))

    wait_for(supplier_got_bye, what="the supplier's BYE")


def test_an_acked_call_outlives_the_ack_timeout_with_times_to_the_millisecond(switch: Switch, orm):
    held_ms = (ACK_TIMEOUT + 2) * 1000
    call = sipp(switch.node1_port, source=ACME_IP, callee=BERLIN, hold_ms=held_ms)

    assert call.returncode == 0, call.log
    row = acc_row(call.call_id)
    assert row.setup_ms is not None and row.answer_ms is not None
    assert row.setup_ms <= row.ring_ms <= row.answer_ms
    # Both are this call's: within a second of acc's own (whole-second) answer time.
    cdr = rated_cdr(call.call_id)
    assert cdr.duration_ms >= held_ms
    assert abs((cdr.answered_at - row.time.replace(tzinfo=cdr.answered_at.tzinfo)).total_seconds()) < 1
    assert cdr.created_at <= cdr.answered_at < cdr.ended_at
    # Post-dial delay: from the INVITE to the first ringing or answer.
    assert cdr.pdd_ms == row.ring_ms - row.setup_ms


def test_a_ringing_after_the_answer_still_leaves_the_calls_cdr(switch: Switch, orm):
    call = sipp(switch.node1_port, source=ACME_IP, callee=MADRID, hold_ms=1000)

    assert call.returncode == 0, call.log
    row = acc_row(call.call_id)
    cdr = rated_cdr(call.call_id)
    assert (cdr.sip_code, cdr.supplier_id) == (200, switch.late.pk)
    assert cdr.duration_ms >= 1000
    assert cdr.sell_cost > 0
    # The 200 came first: it ends the post-dial delay, the late 180 changes nothing.
    assert row.ring_ms == row.answer_ms and cdr.pdd_ms == row.answer_ms - row.setup_ms
