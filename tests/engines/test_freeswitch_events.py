"""FreeSWITCH's events: parsed from bodies recorded from FreeSWITCH 1.10.12, and the listener
against a server on loopback: it subscribes, hands events over without waiting on its
consumer, and connects again when FreeSWITCH goes away, hangs, or refuses it."""

import threading
import time
from datetime import UTC, datetime

import pytest
from greenswitch.esl import ESLEvent

from engines.freeswitch import ConnectionState, Event, EventListener, EventQueue, read_event
from engines.freeswitch.events import backoff, subscription
from tests.engines.replies.freeswitch import (
    RECORDED_CALL_ID,
    RECORDED_FILE,
    RECORDED_UUID,
    RecordedESL,
    event_body,
    recorded,
)

PASSWORD = "s3cret"


def parsed(name: str) -> Event:
    """An Event read the way the listener reads it: greenswitch's plain parser, then ours."""
    return read_event(ESLEvent(recorded(name)).headers)


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds}s")
        time.sleep(0.02)


class Running:
    """A listener on its own thread (its own gevent hub), stopped and joined at the end."""

    def __init__(self, listener: EventListener) -> None:
        self.listener = listener
        self.thread = threading.Thread(target=listener.run, daemon=True)

    def __enter__(self) -> EventListener:
        self.thread.start()
        return self.listener

    def __exit__(self, *exc) -> None:
        self.listener.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the listener did not stop"


@pytest.fixture
def esl():
    with RecordedESL(PASSWORD) as server:
        yield server


def listener_for(server: RecordedESL, on_event, **options) -> EventListener:
    options.setdefault("backoff_first", 0.05)
    options.setdefault("backoff_most", 0.2)
    options.setdefault("poll", 0.02)
    return EventListener(server.host, server.port, PASSWORD, on_event=on_event, **options)


def answer(uuid: str, sequence: int = 1) -> str:
    return event_body(
        {
            "Event-Name": "CHANNEL_ANSWER",
            "Unique-ID": uuid,
            "Event-Sequence": str(sequence),
            "variable_sip_call_id": f"{uuid}@test",
        }
    )


# --- Parsing ----------------------------------------------------------------------------------


def test_record_stop_is_read_with_the_file_the_channel_and_its_call_id():
    event = parsed("event_record_stop.txt")
    assert (event.name, event.kind, event.subclass) == ("RECORD_STOP", "RECORD_STOP", "")
    assert event.uuid == RECORDED_UUID
    assert event.call_id == RECORDED_CALL_ID  # URL-decoded: "rec-call-1%40test" on the wire
    assert event.record_path == RECORDED_FILE
    assert event.at == datetime.fromtimestamp(int(event.headers["Event-Date-Timestamp"]) / 1e6, UTC)
    assert event.sequence == int(event.headers["Event-Sequence"])


def test_channel_answer_and_hangup_complete_carry_the_call_and_its_billing_variables():
    answered = parsed("event_channel_answer.txt")
    assert (answered.name, answered.uuid, answered.call_id) == (
        "CHANNEL_ANSWER",
        RECORDED_UUID,
        RECORDED_CALL_ID,
    )
    assert answered.destination == "tone"
    hangup = parsed("event_channel_hangup_complete.txt")
    assert (hangup.name, hangup.uuid, hangup.hangup_cause) == (
        "CHANNEL_HANGUP_COMPLETE",
        RECORDED_UUID,
        "NORMAL_CLEARING",
    )
    assert hangup.variable("billsec").isdigit()
    assert hangup.direction == "outbound"


def test_a_custom_event_is_known_by_its_subclass():
    event = parsed("event_custom_profile_start.txt")
    assert (event.name, event.subclass, event.kind) == (
        "CUSTOM",
        "sofia::profile_start",
        "sofia::profile_start",
    )
    assert event.uuid == ""


def test_an_event_without_optional_headers_reads_as_empty_values():
    event = read_event({"Event-Name": "CHANNEL_ANSWER", "Event-Date-Timestamp": "junk"})
    assert (event.uuid, event.call_id, event.at, event.sequence, event.record_path) == (
        "",
        "",
        None,
        None,
        "",
    )


def test_the_subscription_names_the_events_heartbeat_and_the_custom_subclasses():
    assert subscription(["RECORD_STOP"], []) == "event plain RECORD_STOP HEARTBEAT"
    assert (
        subscription(["CHANNEL_ANSWER", "HEARTBEAT"], ["sofia::gateway_state"])
        == "event plain CHANNEL_ANSWER HEARTBEAT CUSTOM sofia::gateway_state"
    )


def test_backoff_doubles_from_the_first_wait_up_to_the_most():
    assert [backoff(n, first=0.5, most=5) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


def test_the_event_queue_never_blocks_and_counts_what_it_drops():
    handoff = EventQueue(maxsize=2)
    assert [handoff.put(n) for n in range(5)] == [True, True, False, False, False]
    assert handoff.dropped == 3
    assert (handoff.get(0), handoff.get(0), handoff.get(0.01)) == (0, 1, None)


# --- The listener -------------------------------------------------------------------------------


def test_the_listener_subscribes_and_hands_over_each_event_parsed(esl):
    events = EventQueue()
    with Running(listener_for(esl, events)):
        wait_for(lambda: esl.subscribers == 1)
        assert esl.commands == [
            f"auth {PASSWORD}",
            "event plain CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE RECORD_STOP HEARTBEAT "
            "CUSTOM sofia::gateway_state sofia::profile_start",
        ]
        esl.emit(recorded("event_record_stop.txt"))
        esl.emit(recorded("event_custom_profile_start.txt"))
        first, second = events.get(5), events.get(5)
    assert (first.name, first.record_path, first.call_id) == ("RECORD_STOP", RECORDED_FILE, RECORDED_CALL_ID)
    assert second.kind == "sofia::profile_start"


def test_heartbeats_keep_the_connection_but_are_not_handed_over(esl):
    events = EventQueue()
    with Running(listener_for(esl, events)):
        wait_for(lambda: esl.subscribers == 1)
        esl.emit(event_body({"Event-Name": "HEARTBEAT", "Up-Time": "0 years"}))
        esl.emit(answer("after-heartbeat"))
        assert events.get(5).uuid == "after-heartbeat"
    assert events.qsize() == 0


def test_the_listener_connects_again_after_freeswitch_goes_away_and_events_flow_again(esl):
    events = EventQueue()
    states: list[ConnectionState] = []
    with Running(listener_for(esl, events, on_state=states.append)) as listener:
        wait_for(lambda: esl.subscribers == 1)
        esl.emit(answer("before"))
        assert events.get(5).uuid == "before"
        esl.drop()  # FreeSWITCH stops; it is back at once on the same port
        wait_for(lambda: esl.subscribers == 1 and listener.connections == 2)
        esl.emit(answer("after"))
        assert events.get(5).uuid == "after"
    assert [state.connected for state in states] == [True, False, True]
    assert "closed the connection" in states[1].reason


def test_the_listener_backs_off_while_freeswitch_is_down_and_connects_when_it_is_back():
    with RecordedESL(PASSWORD) as server:
        port = server.port
    states: list[ConnectionState] = []
    events = EventQueue()
    listener = EventListener(
        "127.0.0.1",
        port,
        PASSWORD,
        on_event=events,
        on_state=states.append,
        backoff_first=0.05,
        backoff_most=0.1,
        poll=0.02,
    )
    with Running(listener):
        wait_for(lambda: len(states) >= 3)
        assert all(not state.connected for state in states)
        assert [state.attempt for state in states[:3]] == [1, 2, 3]
        assert "refused" in states[0].reason
        with RecordedESL(PASSWORD, port=port) as back:  # FreeSWITCH starts again on its port
            wait_for(lambda: back.subscribers == 1)
            back.emit(answer("back"))
            assert events.get(5).uuid == "back"
    assert states[-1].connected


def test_a_wrong_password_is_retried_with_backoff_and_says_why(esl):
    states: list[ConnectionState] = []
    listener = EventListener(
        esl.host,
        esl.port,
        "wrong",
        on_event=EventQueue(),
        on_state=states.append,
        backoff_first=0.05,
        poll=0.02,
    )
    with Running(listener):
        wait_for(lambda: len(states) >= 2)
    assert not states[0].connected
    assert "auth" in states[0].reason and "wrong" not in states[0].reason


def test_a_silent_connection_is_dropped_after_the_idle_timeout_and_made_again(esl):
    with Running(listener_for(esl, EventQueue(), idle_timeout=0.3)) as listener:
        wait_for(lambda: listener.connections >= 2, seconds=5)


def test_a_slow_consumer_loses_events_but_never_holds_the_reader(esl):
    handoff = EventQueue(maxsize=5)
    with Running(listener_for(esl, handoff)):
        wait_for(lambda: esl.subscribers == 1)
        for n in range(50):
            esl.emit(answer(f"call-{n}", n))
        wait_for(lambda: handoff.qsize() + handoff.dropped == 50)
        assert (handoff.qsize(), handoff.dropped) == (5, 45)
        assert [handoff.get(1).uuid for _ in range(5)] == [f"call-{n}" for n in range(5)]
        esl.emit(answer("later"))  # the reader went on: the next event is still read
        assert handoff.get(5).uuid == "later"


def test_a_consumer_that_raises_does_not_stop_the_listener(esl):
    seen = EventQueue()

    def consumer(event: Event) -> None:
        seen.put(event)
        raise RuntimeError("database down")

    with Running(listener_for(esl, consumer)):
        wait_for(lambda: esl.subscribers == 1)
        esl.emit(answer("one"))
        esl.emit(answer("two"))
        assert [seen.get(5).uuid, seen.get(5).uuid] == ["one", "two"]


def test_stop_returns_run_promptly_even_while_backing_off():
    with RecordedESL(PASSWORD) as server:
        port = server.port
    listener = EventListener("127.0.0.1", port, PASSWORD, on_event=EventQueue(), backoff_first=30, poll=0.02)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    time.sleep(0.2)  # refused once, now waiting 30 s
    started = time.monotonic()
    listener.stop()
    thread.join(2)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1
