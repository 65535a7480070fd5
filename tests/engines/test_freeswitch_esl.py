"""The ESL client: what it sends, how it reads FreeSWITCH's replies and refusals, and that it
never waits longer than its timeout, against a server answering with replies recorded from
FreeSWITCH 1.10.12 (tests/engines/replies/freeswitch). test_freeswitch_esl_live.py runs the
same against a real FreeSWITCH."""

import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from engines import EngineError
from engines.freeswitch import CallEnd, ESLClient, ESLError, ESLUnavailable, NoSuchChannel
from tests.engines.replies.freeswitch import (
    CANNOT_LOCATE,
    CUT,
    INVALID_PROFILE,
    NO_REPLY,
    NO_SUCH_CHANNEL,
    RECORD_USAGE,
    RECORDED_FILE,
    RECORDED_UUID,
    SILENT,
    RecordedESL,
    recorded,
)
from tests.ports import free_port

PASSWORD = "s3cret"


@pytest.fixture
def esl():
    with RecordedESL(PASSWORD) as server:
        yield server


def client(server: RecordedESL, **options) -> ESLClient:
    return ESLClient(server.host, server.port, PASSWORD, **options)


# --- Requests and replies --------------------------------------------------------------


def test_a_command_authenticates_then_runs_as_api_and_returns_the_text(esl):
    esl.replies["status"] = recorded("status.txt")
    assert client(esl).api("status") == recorded("status.txt")
    assert esl.commands == [f"auth {PASSWORD}", "api status"]


def test_each_command_without_a_session_has_a_connection_of_its_own(esl):
    esl.replies["reloadxml"] = "+OK [Success]\n"
    esl_client = client(esl)
    esl_client.reload_xml()
    esl_client.reload_xml()
    assert esl.connections_made == 2


def test_a_session_asks_several_questions_over_one_connection(esl):
    esl.replies["status"] = recorded("status.txt")
    esl.replies["show"] = recorded("show_channels.json")
    with client(esl) as session:
        assert session.status().sessions == 2
        assert session.channels().total == 2
    assert esl.connections_made == 1
    assert esl.commands == [f"auth {PASSWORD}", "api status", "api show channels as json"]


def test_an_error_reply_raises_esl_error_with_the_reply_and_the_command(esl):
    with pytest.raises(ESLError) as raised:
        client(esl).api("nosuch")
    error = raised.value
    assert (error.reply, error.command, error.retryable) == (
        "-ERR nosuch Command not found!",
        "nosuch",
        False,
    )
    assert str(error) == "ESL nosuch: -ERR nosuch Command not found!"
    assert isinstance(error, EngineError)
    assert not isinstance(error, NoSuchChannel)


def test_a_usage_reply_is_an_esl_error(esl):
    esl.replies["uuid_record"] = RECORD_USAGE
    with pytest.raises(ESLError, match="-USAGE"):
        client(esl).api(f"uuid_record {RECORDED_UUID}")


def test_a_wrong_password_is_an_esl_error_that_retrying_will_not_mend(esl):
    with pytest.raises(ESLError) as raised:
        ESLClient(esl.host, esl.port, "wrong").status()
    assert (raised.value.command, raised.value.reply, raised.value.retryable) == (
        "auth",
        "-ERR invalid",
        False,
    )
    assert "wrong" not in str(raised.value)


def test_a_command_of_more_than_one_line_is_refused_before_sending(esl):
    with pytest.raises(ValueError):
        client(esl).api("status\n\napi reloadxml")
    assert esl.commands == []


# --- Unreachable, hung and vanishing FreeSWITCH ---------------------------------------------


def test_a_refused_connection_is_esl_unavailable():
    port = free_port()
    with pytest.raises(ESLUnavailable, match="refused") as raised:
        ESLClient("127.0.0.1", port, PASSWORD, timeout=1).status()
    assert raised.value.retryable is True
    assert f"127.0.0.1:{port}" in str(raised.value)


def test_a_freeswitch_that_never_greets_is_unavailable_within_the_timeout():
    # The kernel accepts the connection into the backlog; nothing ever sends auth/request.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        started = time.monotonic()
        with pytest.raises(ESLUnavailable, match=r"no answer within 0\.3s"):
            ESLClient("127.0.0.1", listener.getsockname()[1], PASSWORD, timeout=0.3).status()
        assert 0.25 <= time.monotonic() - started < 1.0


def test_a_command_freeswitch_never_answers_is_unavailable_within_the_timeout(esl):
    esl.replies["status"] = SILENT
    started = time.monotonic()
    with pytest.raises(ESLUnavailable, match=r"status at .*: no answer within 0\.3s"):
        client(esl, timeout=0.3).status()
    assert 0.25 <= time.monotonic() - started < 1.0


def test_after_a_timeout_in_a_session_the_connection_is_not_reused(esl):
    # A late reply to the command given up on would be read as the next command's answer.
    esl.replies["status"] = SILENT
    esl.replies["reloadxml"] = "+OK [Success]\n"
    with client(esl, timeout=0.3) as session:
        with pytest.raises(ESLUnavailable):
            session.status()
        with pytest.raises(ESLUnavailable, match="is closed"):
            session.reload_xml()
    assert esl.connections_made == 1


def test_a_reply_cut_short_by_a_closed_connection_fails_at_once_without_spinning(esl):
    # greenswitch alone loops for ever on a short body (sock.read returns b"" at EOF).
    esl.replies["status"] = CUT
    started = time.monotonic()
    with pytest.raises(ESLUnavailable, match="closed the connection"):
        client(esl, timeout=5).status()
    assert time.monotonic() - started < 1.0


def test_freeswitch_stopping_during_a_command_fails_it_at_once_not_after_the_timeout(esl):
    esl.replies["status"] = SILENT
    threading.Timer(0.2, esl.drop).start()
    started = time.monotonic()
    with pytest.raises(ESLUnavailable, match="closed the connection"):
        client(esl, timeout=5).status()
    assert time.monotonic() - started < 1.5


def test_a_session_whose_freeswitch_went_away_says_so_on_the_next_command(esl):
    esl.replies["reloadxml"] = "+OK [Success]\n"
    with client(esl, timeout=1) as session:
        session.reload_xml()
        esl.drop()
        time.sleep(0.2)
        # Noticed when the reader next runs: on this command, or before it.
        with pytest.raises(ESLUnavailable, match="closed"):
            session.reload_xml()


def test_an_acl_rejection_is_an_esl_error():
    # mod_event_socket answers a client outside its ACL with text/rude-rejection and closes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def reject() -> None:
            conn, _ = listener.accept()
            body = b"Access Denied, go away.\n"
            conn.sendall(b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n%s" % (len(body), body))
            conn.close()

        threading.Thread(target=reject, daemon=True).start()
        with pytest.raises(ESLError, match="ACL") as raised:
            ESLClient("127.0.0.1", listener.getsockname()[1], PASSWORD, timeout=1).status()
        assert raised.value.retryable is False


def test_a_freeswitch_on_ipv6_loopback_is_reached():
    try:
        server = RecordedESL(PASSWORD, host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        server.replies["reloadxml"] = "+OK [Success]\n"
        ESLClient("[::1]", server.port, PASSWORD).reload_xml()
    assert server.commands[-1] == "api reloadxml"


@pytest.mark.parametrize(
    ("host", "port", "timeout"),
    [("", 8021, 1), ("127.0.0.1", 0, 1), ("127.0.0.1", 70000, 1), ("127.0.0.1", 8021, 0)],
)
def test_a_client_refuses_addresses_and_timeouts_it_cannot_use(host, port, timeout):
    with pytest.raises(ValueError):
        ESLClient(host, port, PASSWORD, timeout=timeout)


# --- Commands, read from the recorded replies ------------------------------------------------


def test_status_is_read_from_the_recorded_reply(esl):
    esl.replies["status"] = recorded("status.txt")
    status = client(esl).status()
    assert status.version.startswith("1.10.12-release")
    assert status.ready is True
    assert status.sessions == 2
    assert status.max_sessions == 100
    assert status.sessions_per_second_max == 50
    assert status.uptime_seconds is not None and status.uptime_seconds >= 0
    assert status.idle_cpu is not None


def test_an_uptime_of_years_days_and_hours_is_counted_in_seconds(esl):
    esl.replies["status"] = recorded("status.txt").replace(
        recorded("status.txt").splitlines()[0],
        "UP 1 year, 2 days, 3 hours, 4 minutes, 5 seconds, 6 milliseconds, 7 microseconds",
    )
    assert client(esl).status().uptime_seconds == 365 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5


def test_channels_are_read_oldest_first_with_their_legs(esl):
    esl.replies["show"] = recorded("show_channels.json")
    page = client(esl).channels()
    assert esl.commands[-1] == "api show channels as json"
    assert (page.total, page.more) == (2, False)
    first, second = page.channels
    assert first.uuid == RECORDED_UUID
    assert (first.name, first.direction, first.call_state, first.answered) == (
        "loopback/tone-a",
        "outbound",
        "ACTIVE",
        True,
    )
    assert first.destination == "tone"
    assert first.created_at == datetime.fromtimestamp(int(first.values["created_epoch"]), UTC)
    assert second.name == "loopback/tone-b"
    assert first.values["callstate"] == "ACTIVE"


def test_a_page_of_channels_is_cut_here_and_says_there_are_more(esl):
    esl.replies["show"] = recorded("show_channels.json")
    page = client(esl).channels(limit=1)
    assert (page.total, len(page.channels), page.more) == (2, 1, True)
    assert page.channels[0].uuid == RECORDED_UUID
    assert client(esl).channels(offset=1, limit=5).channels[0].name == "loopback/tone-b"
    assert client(esl).channels(offset=2).channels == []


def test_no_channels_is_an_empty_page(esl):
    esl.replies["show"] = recorded("show_channels_empty.json")
    page = client(esl).channels()
    assert (page.total, page.channels, page.more) == (0, [], False)


def test_a_reply_that_is_not_the_commands_shape_is_an_esl_error(esl):
    esl.replies["show"] = "<html>not FreeSWITCH</html>\n"
    esl.replies["status"] = "+OK\n"
    with pytest.raises(ESLError, match="unreadable reply"):
        client(esl).channels()
    with pytest.raises(ESLError, match="unreadable reply"):
        client(esl).status()


def test_hang_up_sends_uuid_kill_and_reports_the_call_ended(esl):
    esl.replies["uuid_kill"] = "+OK\n"
    assert client(esl).hang_up(RECORDED_UUID) is CallEnd.ENDED
    assert client(esl).hang_up(RECORDED_UUID, "USER_BUSY") == "ended"
    assert esl.commands[-3:] == [
        f"api uuid_kill {RECORDED_UUID}",
        f"auth {PASSWORD}",
        f"api uuid_kill {RECORDED_UUID} USER_BUSY",
    ]


def test_hang_up_of_a_channel_freeswitch_does_not_have_is_gone_not_raised(esl):
    esl.replies["uuid_kill"] = NO_SUCH_CHANNEL
    assert client(esl).hang_up("no-such-uuid") is CallEnd.GONE


def test_hang_up_refuses_a_uuid_or_cause_that_would_add_arguments(esl):
    for uuid, cause in [("a b", None), ("", None), (RECORDED_UUID, "NORMAL CLEARING")]:
        with pytest.raises(ValueError):
            client(esl).hang_up(uuid, cause)
    assert esl.commands == []


def test_recording_is_started_and_stopped_with_uuid_record(esl):
    esl.replies["uuid_record"] = "+OK Success\n"
    esl_client = client(esl)
    esl_client.start_recording(RECORDED_UUID, RECORDED_FILE)
    esl_client.start_recording(RECORDED_UUID, "/rec/b.wav", limit_seconds=3600)
    esl_client.stop_recording(RECORDED_UUID, RECORDED_FILE)
    esl_client.stop_recording(RECORDED_UUID)
    assert [c for c in esl.commands if c.startswith("api")] == [
        f"api uuid_record {RECORDED_UUID} start {RECORDED_FILE}",
        f"api uuid_record {RECORDED_UUID} start /rec/b.wav 3600",
        f"api uuid_record {RECORDED_UUID} stop {RECORDED_FILE}",
        f"api uuid_record {RECORDED_UUID} stop all",
    ]


def test_recording_a_channel_that_is_gone_raises_no_such_channel(esl):
    esl.replies["uuid_record"] = CANNOT_LOCATE
    with pytest.raises(NoSuchChannel) as raised:
        client(esl).start_recording("no-such-uuid", "/rec/x.wav")
    assert raised.value.retryable is False


def test_a_recording_path_with_a_space_is_refused(esl):
    # uuid_record splits its arguments on spaces: the rest would be read as a limit.
    with pytest.raises(ValueError):
        client(esl).start_recording(RECORDED_UUID, "/rec/my call.wav")
    assert esl.commands == []


def test_the_files_a_channel_is_recorded_to_are_read_from_its_media_bugs(esl):
    esl.replies["uuid_buglist"] = recorded("uuid_buglist.xml")
    assert client(esl).recordings(RECORDED_UUID) == [RECORDED_FILE]
    esl.replies["uuid_buglist"] = "<media-bugs>\n</media-bugs>\n"
    assert client(esl).recordings(RECORDED_UUID) == []
    esl.replies["uuid_buglist"] = NO_REPLY
    assert client(esl).recordings("no-such-uuid") == []


def test_reloadxml_succeeds_on_success_and_raises_with_freeswitchs_reason_otherwise(esl):
    esl.replies["reloadxml"] = "+OK [Success]\n"
    client(esl).reload_xml()
    # FreeSWITCH says +OK even when the XML does not parse; the old configuration stays.
    esl.replies["reloadxml"] = "+OK [Error on line 12: unclosed tag]\n"
    with pytest.raises(ESLError, match="unclosed tag") as raised:
        client(esl).reload_xml()
    assert raised.value.command == "reloadxml"


def test_sofia_status_lists_the_profile_and_the_gateway(esl):
    esl.replies["sofia"] = recorded("sofia_xmlstatus.xml")
    profile, gateway = client(esl).sofia_status()
    assert esl.commands[-1] == "api sofia xmlstatus"
    assert (profile.name, profile.type, profile.state, profile.calls, profile.running) == (
        "smartswitch",
        "profile",
        "RUNNING",
        0,
        True,
    )
    assert profile.data.startswith("sip:mod_sofia@127.0.0.1:")
    assert (gateway.name, gateway.type, gateway.state) == ("far", "gateway", "NOREG")


def test_a_tls_listener_of_a_profile_is_its_own_entry(esl):
    esl.replies["sofia"] = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<profiles>\n'
        "<profile>\n<name>p</name>\n<type>profile</type>\n<data>sips:mod_sofia@10.0.0.1:5061</data>\n"
        "<state>RUNNING (3) (TLS)</state>\n</profile>\n"
        "<gateway>\n<name>g</name>\n<type>gateway</type>\n<data>sip:x@10.0.0.9</data>\n"
        "<state>FAILED</state>\n</gateway>\n (retry: 28s)\n</profiles>\n"
    )
    profile, gateway = client(esl).sofia_status()
    assert (profile.state, profile.calls, profile.transport) == ("RUNNING", 3, "TLS")
    assert (gateway.state, gateway.running) == ("FAILED", False)


def test_a_sofia_profile_is_read_with_its_addresses_and_codecs(esl):
    esl.replies["sofia xmlstatus profile smartswitch"] = recorded("sofia_xmlstatus_profile.xml")
    profile = client(esl).sofia_profile("smartswitch")
    assert (profile.name, profile.sip_ip, profile.context, profile.dialplan) == (
        "smartswitch",
        "127.0.0.1",
        "public",
        "XML",
    )
    assert profile.rtp_ip == ("127.0.0.1",)
    assert (profile.inbound_codecs, profile.outbound_codecs) == ("PCMU,PCMA", "PCMU,PCMA")
    assert profile.info["rtp-ip"] == "127.0.0.1"


def test_a_sofia_profile_that_does_not_run_is_none(esl):
    esl.replies["sofia"] = INVALID_PROFILE
    assert client(esl).sofia_profile("nope") is None


def test_sofia_gateways_are_read_with_their_state(esl):
    esl.replies["sofia xmlstatus gateway"] = recorded("sofia_xmlstatus_gateway.xml")
    [gateway] = client(esl).sofia_gateways()
    assert (gateway.name, gateway.profile, gateway.state, gateway.status) == (
        "far",
        "smartswitch",
        "NOREG",
        "UP",
    )
    assert (gateway.calls_in, gateway.calls_out, gateway.failed_calls_out) == (0, 0, 0)
    assert gateway.ping_time == 0.0
    assert gateway.info["proxy"] == "sip:127.0.0.1:15999"
