"""The listener on a real UDP socket: HEP in, finished calls handed to the writer, never blocking."""

import socket
import threading
import time

import pytest

from apps.capture import hep
from apps.capture.listener import Listener, ListenerSettings
from tests.capture.calls import answered_call


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def wait_for(condition, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def running():
    """Start a listener on a free loopback port; yields (listener, saved calls, clock)."""
    saved, clock = [], Clock()
    listener = Listener(ListenerSettings(port=0, linger=2), saved.append, clock=clock)
    thread = threading.Thread(target=listener.serve, daemon=True)
    thread.start()
    yield listener, saved, clock
    listener.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def send(listener: Listener, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for data in datagrams:
            out.sendto(data, listener.address)


def test_a_call_sent_as_hep_is_handed_to_the_writer_after_its_linger(running):
    listener, saved, clock = running
    send(listener, *(hep.encode(p) for p in answered_call()))
    wait_for(lambda: listener.counters.received == 12, "12 packets")
    assert saved == []

    clock.now = 2.0
    wait_for(lambda: saved, "the finished call")
    [call] = saved
    assert (call.call_id, call.reason, len(call.messages)) == ("a-leg@test", "ended", 12)


def test_garbage_is_counted_and_does_not_stop_the_listener(running):
    listener, saved, clock = running
    send(listener, b"hello", b"HEP3\x00\x07x")
    wait_for(lambda: listener.counters.malformed == 2, "two malformed packets")
    send(listener, *(hep.encode(p) for p in answered_call("after@x")))
    wait_for(lambda: listener.counters.received == 14, "the call's 12 packets")
    clock.now = 5.0
    wait_for(lambda: saved, "the call sent after the garbage")


def test_calls_still_held_are_written_on_stop():
    saved = []
    listener = Listener(ListenerSettings(port=0), saved.append)
    thread = threading.Thread(target=listener.serve, daemon=True)
    thread.start()
    send(listener, *(hep.encode(p) for p in answered_call()[:3]))
    wait_for(lambda: listener.counters.received == 3, "3 packets")
    listener.stop()
    thread.join(timeout=10)

    assert [(c.reason, len(c.messages)) for c in saved] == [("shutdown", 3)]


def test_a_slow_writer_never_blocks_the_receive_loop():
    release = threading.Event()
    listener = Listener(ListenerSettings(port=0, linger=0, queue_size=1), lambda call: release.wait(10))
    thread = threading.Thread(target=listener.serve, daemon=True)
    thread.start()
    try:
        for n in range(5):
            send(listener, *(hep.encode(p) for p in answered_call(f"call-{n}@x")))
        wait_for(lambda: listener.counters.received == 60, "every packet, while the writer hangs")
        wait_for(lambda: listener.counters.queue_full >= 3, "finished calls dropped, not waited for")
    finally:
        release.set()
        listener.stop()
        thread.join(timeout=15)
