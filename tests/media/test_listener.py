"""The node's FreeSWITCH event listener: a RECORD_STOP registers its recording (through the
real apps.media.recordings and apps.files), call events reach the change-event path once per
interval, the database never holds the ESL reader, and the management command stops on
SIGTERM. FreeSWITCH is a server on loopback answering like 1.10.12 (tests/engines/replies)."""

import os
import signal
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import call_command

from apps.core.changes import Change
from apps.files.models import StoredFile
from apps.media.listener import NodeEvents, NodeListener
from engines.freeswitch import ConnectionState, EventQueue, read_event
from tests.engines.replies.freeswitch import RecordedESL, event_body
from tests.factories import NodeFactory

PASSWORD = "node-esl-secret"


def wait_for(condition, seconds: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {seconds}s")


def record_stop(path: str, call_id: str = "rec-1@pbx", uuid: str = "a-leg-1") -> str:
    return event_body(
        {
            "Event-Name": "RECORD_STOP",
            "Unique-ID": uuid,
            "variable_sip_call_id": call_id,
            "Record-File-Path": path,
        }
    )


def answer(uuid: str) -> str:
    return event_body(
        {"Event-Name": "CHANNEL_ANSWER", "Unique-ID": uuid, "variable_sip_call_id": f"{uuid}@pbx"}
    )


@pytest.fixture
def esl():
    with RecordedESL(PASSWORD) as server:
        yield server


@pytest.fixture
def node(db, esl, settings, tmp_path):
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    settings.NODE_NAME = "node1"
    return NodeFactory(name="node1", management_address="127.0.0.1", esl_port=esl.port, esl_password=PASSWORD)


class Broadcasts:
    """The changes the listener would send to the Channels groups, kept in order."""

    def __init__(self) -> None:
        self.sent: list[list[Change]] = []

    def __call__(self, changes) -> None:
        self.sent.append(list(changes))


class Running:
    def __init__(self, listener: NodeListener) -> None:
        self.listener = listener
        self.thread = threading.Thread(target=listener.run, daemon=True)

    def __enter__(self) -> NodeListener:
        self.thread.start()
        return self.listener

    def __exit__(self, *exc) -> None:
        self.listener.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def fast(node, **options) -> NodeListener:
    options.setdefault("backoff_first", 0.05)
    options.setdefault("poll", 0.02)
    return NodeListener(node, **options)


def write_recording(settings, relative: str, content: bytes = b"RIFF" + bytes(300)) -> str:
    path = settings.RECORDINGS_DIR / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


@pytest.mark.django_db(transaction=True)
def test_a_record_stop_registers_the_recording_for_file_sync(node, esl, settings):
    path = write_recording(settings, "node1/2026/03/02/rec-1.wav")
    with Running(fast(node, broadcast=Broadcasts())) as listener:
        wait_for(lambda: esl.subscribers == 1, what="subscribed")
        assert esl.commands[0] == f"auth {PASSWORD}"  # the node's own ESL password
        esl.emit(record_stop(path, call_id="rec-1@pbx"))
        wait_for(lambda: listener.events.recorded == 1, what="recording registered")
    stored = StoredFile.objects.get()
    assert (stored.kind, stored.relative_path, stored.call_id, stored.origin) == (
        StoredFile.Kind.RECORDING,
        "node1/2026/03/02/rec-1.wav",
        "rec-1@pbx",
        node,
    )
    assert stored.size == 304


@pytest.mark.django_db(transaction=True)
def test_a_record_stop_outside_the_nodes_tree_is_refused_and_the_listener_goes_on(
    node, esl, settings, tmp_path
):
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"RIFF")
    inside = write_recording(settings, "node1/2026/03/02/ok.wav")
    with Running(fast(node, broadcast=Broadcasts())) as listener:
        wait_for(lambda: esl.subscribers == 1, what="subscribed")
        esl.emit(record_stop(str(outside)))
        esl.emit(record_stop(inside, call_id="ok@pbx"))
        wait_for(lambda: listener.events.recorded == 1, what="the second recording registered")
    assert list(StoredFile.objects.values_list("call_id", flat=True)) == ["ok@pbx"]


def test_call_events_and_connection_changes_are_broadcast_as_the_nodes_change_coalesced():
    clock = [100.0]
    sent = Broadcasts()
    node = NodeFactory.build(pk=7, name="node7")
    events = NodeEvents(node, EventQueue(), broadcast=sent, interval=0.5, clock=lambda: clock[0])

    events.consume(ConnectionState(True))
    assert sent.sent == [[Change("nodes.Node", frozenset({7}), frozenset({"freeswitch"}))]]
    for n in range(20):  # a burst of calls within the interval
        events.consume(read_event({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": f"c{n}"}))
    assert len(sent.sent) == 1
    clock[0] += 0.6
    events.consume(None)  # the consumer's idle tick sends what is pending
    assert len(sent.sent) == 2
    events.consume(None)
    assert len(sent.sent) == 2  # nothing new, nothing sent
    events.consume(ConnectionState(False, "closed", 1))
    assert (len(sent.sent), events.connected) == (3, False)


def test_the_broadcast_reaches_the_nodes_changes_group(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("changes.nodes.Node", channel)
    node = NodeFactory.build(pk=3, name="node3")

    NodeEvents(node, EventQueue()).consume(read_event({"Event-Name": "CHANNEL_HANGUP_COMPLETE"}))

    message = async_to_sync(layer.receive)(channel)
    assert message == {"type": "change.announced", "kind": "nodes.Node", "ids": [3]}


@pytest.mark.django_db(transaction=True)
def test_a_database_that_hangs_never_holds_the_esl_reader(node, esl, settings):
    release = threading.Event()
    registered = []

    def slow_register(node, *, call_id, path):
        release.wait(10)  # the database is stuck
        registered.append(call_id)

    with Running(fast(node, register=slow_register, broadcast=Broadcasts())) as listener:
        wait_for(lambda: esl.subscribers == 1, what="subscribed")
        esl.emit(record_stop("/x/first.wav", call_id="first"))
        for n in range(200):
            esl.emit(answer(f"call-{n}"))
        # The reader went on reading while the consumer waits: everything is queued.
        wait_for(lambda: listener.queue.qsize() >= 200, what="events read during the stall")
        assert registered == []
        release.set()
        wait_for(lambda: listener.queue.qsize() == 0, what="the queue drained")
    assert registered == ["first"]
    assert listener.queue.dropped == 0


@pytest.mark.django_db(transaction=True)
def test_a_failing_database_is_retried_for_a_recording(node, esl):
    calls = []

    def flaky_register(node, *, call_id, path):
        calls.append(call_id)
        if len(calls) < 2:
            raise ConnectionError("MySQL server has gone away")

    listener = fast(node, register=flaky_register, broadcast=Broadcasts())
    listener.events.retry_seconds = 0.01
    with Running(listener):
        wait_for(lambda: esl.subscribers == 1, what="subscribed")
        esl.emit(record_stop("/x/r.wav", call_id="retry@pbx"))
        wait_for(lambda: listener.events.recorded == 1, what="registered on the second try")
    assert calls == ["retry@pbx", "retry@pbx"]


@pytest.mark.django_db(transaction=True)
def test_the_listener_keeps_listening_after_freeswitch_restarts(node, esl):
    sent = Broadcasts()
    with Running(fast(node, broadcast=sent)) as listener:
        wait_for(lambda: esl.subscribers == 1, what="subscribed")
        esl.drop()
        wait_for(
            lambda: listener.listener.connections == 2 and esl.subscribers == 1, what="back after restart"
        )
        esl.emit(answer("after-restart"))
        wait_for(lambda: listener.queue.qsize() == 0 and not listener.events.changed, what="consumed")
    assert listener.events.connected is True


@pytest.mark.django_db(transaction=True)
def test_the_command_listens_to_the_named_node_until_sigterm(node, esl, settings, capsys):
    path = write_recording(settings, "node1/2026/03/02/cmd.wav")

    def drive() -> None:
        wait_for(lambda: esl.subscribers == 1, what="subscribed")
        esl.emit(record_stop(path, call_id="cmd@pbx"))
        wait_for(lambda: StoredFile.objects.filter(call_id="cmd@pbx").exists(), what="registered")
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    call_command("freeswitch_events", "--node", "node1")
    driver.join(5)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    out = capsys.readouterr().out
    assert f"listening to FreeSWITCH at 127.0.0.1:{esl.port}" in out
    assert "1 recordings registered, 0 events dropped" in out


@pytest.mark.django_db
def test_the_command_refuses_an_unknown_node_and_leaves_a_node_without_media_alone(db, capsys):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No node named 'ghost'"):
        call_command("freeswitch_events", "--node", "ghost")
    NodeFactory(name="quiet", media_enabled=False)
    call_command("freeswitch_events", "--node", "quiet")
    assert "runs no FreeSWITCH" in capsys.readouterr().out
