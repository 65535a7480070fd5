"""Grouping captured messages into calls, and when a call is over (apps.capture.collector)."""

from apps.capture.collector import Collector, in_causal_order
from tests.capture.calls import (
    CUSTOMER,
    MEDIA,
    OTHER_SUPPLIER,
    SUPPLIER,
    SWITCH,
    answered_call,
    hep,
    request,
    response,
)


def feed(collector: Collector, packets, *, now: float = 0.0):
    evicted = []
    for packet in packets:
        evicted += collector.add(packet, now=now)
    return evicted


def test_an_answered_call_is_written_once_its_bye_is_answered_and_the_linger_passed():
    collector = Collector(linger=3)
    feed(collector, answered_call()[:-2], now=0)
    assert collector.due(now=100) == []  # BYE sent, not answered: still going
    feed(collector, answered_call()[-2:], now=100)

    assert collector.due(now=102) == []
    [call] = collector.due(now=103)
    assert call.call_id == "a-leg@test"
    assert call.reason == "ended"
    assert len(call.messages) == 12
    assert len(collector) == 0


def test_a_call_refused_to_the_caller_ends_but_a_failed_branch_while_hunting_does_not():
    call_id = "hunt@test"
    collector = Collector(linger=1)
    feed(
        collector,
        [
            hep(CUSTOMER, SWITCH, request("INVITE", call_id), 0),
            hep(SWITCH, SUPPLIER, request("INVITE", call_id), 1),
            hep(SUPPLIER, SWITCH, response(503, "Service Unavailable", call_id), 10),
            hep(SWITCH, SUPPLIER, request("ACK", call_id), 11),
        ],
    )
    assert collector.due(now=60) == []  # the switch hunts on: the 503 went to it, not the caller
    feed(
        collector,
        [
            hep(SWITCH, OTHER_SUPPLIER, request("INVITE", call_id), 12),
            hep(OTHER_SUPPLIER, SWITCH, response(486, "Busy Here", call_id), 20),
            hep(SWITCH, CUSTOMER, response(486, "Busy Here", call_id), 21),
        ],
        now=60,
    )

    [call] = collector.due(now=61)
    assert [m.payload.split(b"\r\n")[0] for m in call.messages][-1] == b"SIP/2.0 486 Busy Here"


def test_a_rejected_reinvite_does_not_end_the_call():
    call_id = "reinvite@test"
    collector = Collector(linger=1)
    feed(collector, answered_call(call_id)[:8])
    feed(
        collector,
        [
            hep(CUSTOMER, SWITCH, request("INVITE", call_id, cseq=2), 1000),
            hep(SWITCH, CUSTOMER, response(491, "Request Pending", call_id, cseq=2), 1001),
        ],
    )

    assert collector.due(now=10) == []


def test_the_b_leg_through_freeswitch_joins_its_a_leg_by_correlation_id_or_header():
    a, b = "a@test", "b@freeswitch"
    collector = Collector(linger=1)
    feed(
        collector,
        [
            hep(CUSTOMER, SWITCH, request("INVITE", a), 0, correlation=a),
            hep(SWITCH, MEDIA, request("INVITE", a), 1, correlation=a),
            # FreeSWITCH's own capture of its B leg: no correlation id, the header says it.
            hep(MEDIA, SWITCH, request("INVITE", b, extra=f"X-SS-Call-ID: {a}\r\n"), 5, capture_id=2),
            # OpenSIPS traces the B leg with the A leg's Call-ID as correlation id.
            hep(MEDIA, SWITCH, request("INVITE", b, extra=f"X-SS-Call-ID: {a}\r\n"), 5, correlation=a),
            hep(SWITCH, SUPPLIER, request("INVITE", b), 6, correlation=a),
            hep(SUPPLIER, SWITCH, response(404, "Not Found", b), 20, correlation=a),
            hep(SWITCH, MEDIA, response(404, "Not Found", b), 21, correlation=a),
        ],
    )
    assert collector.due(now=5) == []  # the B leg is over, the A leg is not
    feed(
        collector,
        [
            hep(MEDIA, SWITCH, response(404, "Not Found", a), 30, correlation=a),
            hep(SWITCH, CUSTOMER, response(404, "Not Found", a), 31, correlation=a),
        ],
        now=5,
    )

    [call] = collector.due(now=6)
    assert call.call_id == a
    # FreeSWITCH's copy of the B leg's INVITE and OpenSIPS's are one message.
    assert len(call.messages) == 8


def test_two_calls_held_apart_merge_when_a_message_links_them():
    collector = Collector(linger=1)
    feed(collector, [hep(CUSTOMER, SWITCH, request("INVITE", "a@x"), 0)], now=0)
    feed(collector, [hep(MEDIA, SWITCH, request("INVITE", "b@x"), 5)], now=1)
    assert len(collector) == 2
    feed(collector, [hep(SWITCH, SUPPLIER, request("INVITE", "b@x"), 6, correlation="a@x")], now=2)

    assert len(collector) == 1
    [call] = collector.drain()
    assert (call.call_id, len(call.messages), call.reason) == ("a@x", 3, "shutdown")


def test_an_engines_own_retransmissions_are_kept():
    collector = Collector()
    invite = request("INVITE", "r@x")
    feed(collector, [hep(CUSTOMER, SWITCH, invite, 0), hep(CUSTOMER, SWITCH, invite, 500)])

    [call] = collector.drain()
    assert len(call.messages) == 2


def test_a_silent_call_is_written_after_the_idle_bound():
    collector = Collector(idle=60)
    feed(collector, answered_call()[:8], now=0)
    assert collector.due(now=59) == []

    [call] = collector.due(now=60)
    assert call.reason == "idle"


def test_memory_is_bounded_by_calls_held_and_messages_per_call():
    collector = Collector(max_calls=2, max_messages=3)
    feed(collector, answered_call("one@x"), now=0)
    feed(collector, answered_call("two@x")[:1], now=1)
    evicted = feed(collector, answered_call("three@x")[:1], now=2)

    assert [(c.call_id, c.reason, len(c.messages), c.dropped) for c in evicted] == [
        ("one@x", "evicted", 3, 9)
    ]
    assert len(collector) == 2


def test_what_is_not_sip_or_has_no_call_id_is_counted_and_ignored():
    collector = Collector()
    feed(
        collector,
        [hep(CUSTOMER, SWITCH, b"\r\n\r\n", 0), hep(CUSTOMER, SWITCH, b"OPTIONS x SIP/2.0\r\n\r\n", 1)],
    )

    assert (len(collector), collector.ignored) == (0, 2)


def test_a_relayed_request_stamped_after_its_reply_is_put_before_it():
    invite = request("INVITE", "late@x").replace(b"z9hG4bK-1", b"z9hG4bK-out")
    ringing = response(180, "Ringing", "late@x").replace(b"z9hG4bK-1", b"z9hG4bK-out")
    packets = [
        hep(CUSTOMER, SWITCH, request("INVITE", "late@x"), 0),
        hep(SUPPLIER, SWITCH, ringing, 5),
        hep(SWITCH, SUPPLIER, invite, 6),  # traced late by OpenSIPS
        hep(SWITCH, CUSTOMER, response(180, "Ringing", "late@x"), 7),
    ]

    ordered = in_causal_order(packets)

    assert [p.payload for p in ordered] == [packets[0].payload, invite, ringing, packets[3].payload]
    assert [p.timestamp_us for p in ordered] == sorted(p.timestamp_us for p in ordered)


def test_a_call_no_opensips_trace_chose_is_let_go_unwritten():
    collector = Collector(linger=0, only_traced=True)
    untraced = [p.__class__(**{**p.__dict__, "correlation_id": ""}) for p in answered_call("fs-only@x")]
    feed(collector, untraced + answered_call("chosen@x"))

    finished = {call.call_id: call for call in collector.due(now=1)}
    assert (finished["fs-only@x"].reason, finished["fs-only@x"].messages) == ("not traced", [])
    assert len(finished["chosen@x"].messages) == 12
