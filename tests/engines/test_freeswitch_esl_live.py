"""The ESL driver against a real FreeSWITCH (skipped, saying why, where none is installed):
the recorded replies' shapes, a live call listed, recorded into a file with audio in it and
hung up, reloadxml, sofia's status, and the event listener across a FreeSWITCH restart."""

import threading
import time
import wave
from array import array

import pytest

from engines.freeswitch import CallEnd, ESLError, EventListener, EventQueue, NoSuchChannel
from tests.engines.replies.freeswitch.live import PASSWORD, freeswitch, shared_freeswitch  # noqa: F401 - fixtures

UUID = "6a1f0c52-4d0e-4b8a-9a55-live00000001"


def wait_for(condition, seconds: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {seconds}s")


def loudest_sample(path) -> int:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
        samples = array("h", wav.readframes(wav.getnframes()))
    return max((abs(sample) for sample in samples), default=0)


def next_event(events: EventQueue, name: str, uuid: str, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = events.get(0.2)
        if event is not None and event.name == name and event.uuid == uuid:
            return event
    pytest.fail(f"no {name} for {uuid} within {seconds}s")


def test_status_reads_a_real_freeswitch(shared_freeswitch):  # noqa: F811
    status = shared_freeswitch.client().status()
    assert status.version.startswith("1.10")
    assert status.ready is True
    assert (status.sessions, status.max_sessions, status.sessions_per_second_max) == (0, 100, 50)
    assert status.uptime_seconds is not None and status.uptime_seconds < 600


def test_a_live_call_is_listed_recorded_into_a_file_with_audio_and_hung_up(shared_freeswitch):  # noqa: F811
    path = shared_freeswitch.recordings / "2026" / "live-call.wav"
    with shared_freeswitch.client() as esl:
        assert esl.channels().total == 0
        shared_freeswitch.call(UUID, call_id="live-call-1@test")
        # FreeSWITCH writes its channels table from a queue: the call shows a moment later.
        page = wait_for(lambda: (found := esl.channels()).total == 2 and found, what="two legs listed")
        leg = next(channel for channel in page.channels if channel.uuid == UUID)
        assert (leg.name, leg.answered) == ("loopback/tone-a", True)
        assert esl.channels(limit=1).more is True

        esl.start_recording(UUID, str(path))
        assert esl.recordings(UUID) == [str(path)]
        time.sleep(1.5)
        esl.stop_recording(UUID, str(path))
        assert esl.recordings(UUID) == []

        assert esl.hang_up(UUID) is CallEnd.ENDED
        wait_for(lambda: esl.channels().total == 0, what="both legs gone")
        assert esl.hang_up(UUID) is CallEnd.GONE
        with pytest.raises(NoSuchChannel):
            esl.start_recording(UUID, str(path))
        assert esl.recordings(UUID) == []
    # FreeSWITCH made the directories; the file holds the B leg's 440 Hz tone, not silence.
    assert path.stat().st_size > 8000
    assert loudest_sample(path) > 1000


def test_reloadxml_succeeds_and_reports_a_configuration_that_does_not_parse(shared_freeswitch):  # noqa: F811
    esl = shared_freeswitch.client()
    esl.reload_xml()
    good = shared_freeswitch.config.read_text()
    shared_freeswitch.config.write_text(good.replace("</document>", ""))
    try:
        with pytest.raises(ESLError) as raised:
            esl.reload_xml()
        assert raised.value.command == "reloadxml"
        assert raised.value.reply.startswith("+OK [") and "Success" not in raised.value.reply
    finally:
        shared_freeswitch.config.write_text(good)
    esl.reload_xml()
    assert esl.status().ready  # the old configuration stayed in force meanwhile


def test_sofia_status_profile_and_gateways_read_a_real_freeswitch(shared_freeswitch):  # noqa: F811
    esl = shared_freeswitch.client()
    entries = {entry.name: entry for entry in esl.sofia_status()}
    profile = entries["smartswitch"]
    assert (profile.type, profile.state, profile.calls, profile.running) == ("profile", "RUNNING", 0, True)
    assert profile.data == f"sip:mod_sofia@127.0.0.1:{shared_freeswitch.sip_port}"
    assert (entries["far"].type, entries["far"].state) == ("gateway", "NOREG")
    details = esl.sofia_profile("smartswitch")
    assert (details.sip_ip, details.context, details.inbound_codecs) == ("127.0.0.1", "public", "PCMU,PCMA")
    assert esl.sofia_profile("nope") is None
    [gateway] = esl.sofia_gateways()
    assert (gateway.name, gateway.profile, gateway.state) == ("far", "smartswitch", "NOREG")


def test_refused_commands_read_as_recorded(shared_freeswitch):  # noqa: F811
    esl = shared_freeswitch.client()
    with pytest.raises(ESLError) as raised:
        esl.api("nosuch")
    assert raised.value.reply == "-ERR nosuch Command not found!"
    with pytest.raises(ESLError, match="-USAGE"):
        esl.api(f"uuid_record {UUID}")
    with pytest.raises(ESLError) as raised:
        type(esl)("127.0.0.1", shared_freeswitch.esl_port, "wrong", timeout=2).status()
    assert raised.value.command == "auth"


def test_the_listener_hears_a_call_and_its_recording_and_hears_again_after_a_restart(freeswitch):  # noqa: F811
    events = EventQueue()
    listener = EventListener(
        "127.0.0.1", freeswitch.esl_port, PASSWORD, on_event=events, backoff_first=0.2, backoff_most=1
    )
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: listener.connections == 1, what="the listener subscribed")
        path = freeswitch.recordings / "before.wav"
        freeswitch.call(UUID, call_id="before@test")
        answered = next_event(events, "CHANNEL_ANSWER", UUID)
        assert answered.call_id == "before@test"
        esl = freeswitch.client()
        esl.start_recording(UUID, str(path))
        time.sleep(0.5)
        esl.hang_up(UUID)
        stopped = next_event(events, "RECORD_STOP", UUID)
        assert (stopped.record_path, stopped.call_id) == (str(path), "before@test")
        hangup = next_event(events, "CHANNEL_HANGUP_COMPLETE", UUID)
        assert hangup.hangup_cause == "NORMAL_CLEARING"

        freeswitch.restart()
        wait_for(lambda: listener.connections == 2, seconds=30, what="the listener back after the restart")
        after = UUID.replace("live", "back")
        freeswitch.call(after, call_id="after@test")
        assert next_event(events, "CHANNEL_ANSWER", after).call_id == "after@test"
        freeswitch.client().hang_up(after)
        next_event(events, "CHANNEL_HANGUP_COMPLETE", after)
    finally:
        listener.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert events.dropped == 0
