"""The rendered FreeSWITCH configuration, loaded by the real FreeSWITCH and called with SIPp.

One FreeSWITCH per test module on loopback, on free ports, from `apps.media.config.render`.
SIPp plays the caller (OpenSIPS's A leg, with its X-SS-* headers) and, on the node's SIP
port, OpenSIPS receiving the B leg. Skips, saying why, without FreeSWITCH or SIPp.
"""

import io
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import wave
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import override_settings

from apps.media import announcements
from apps.media.announcements import write_announcements
from apps.media.config import render
from apps.nodes.models import ClusterSettings, Node
from apps.tenancy.scope import Scope
from tests.ports import free_port

SCENARIOS = Path(__file__).parent / "scenarios"
ESL_PASSWORD = "live-test-secret"
ANNOUNCEMENT_SECONDS = 1.5
START_TIMEOUT = 40
SIPP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")  # Debian's sip-tester


def freeswitch_binary() -> str | None:
    return os.environ.get("FREESWITCH_BIN") or shutil.which("freeswitch")


pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not freeswitch_binary(), reason="FreeSWITCH not found: set FREESWITCH_BIN or put freeswitch on PATH"
    ),
    pytest.mark.skipif(not shutil.which("sipp"), reason="SIPp not found: install sip-tester"),
]


# --- ports, ESL --------------------------------------------------------------------------


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _read_message(reader) -> tuple[dict[str, str], str]:
    """One ESL message: its headers, and its body if it has one."""
    headers = {}
    while True:
        line = reader.readline().decode().rstrip("\n")
        if not line:
            if headers:
                break
            continue
        name, _, value = line.partition(": ")
        headers[name] = value
    length = int(headers.get("Content-Length", 0))
    return headers, reader.read(length).decode() if length else ""


def esl(port: int, password: str, command: str = "", *, timeout: float = 5) -> tuple[str, str]:
    """(auth reply, `api command` reply) over FreeSWITCH's inbound event socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        reader = connection.makefile("rb")
        _read_message(reader)  # auth/request
        connection.sendall(f"auth {password}\n\n".encode())
        auth = _read_message(reader)[0].get("Reply-Text", "")
        if not command or not auth.startswith("+OK"):
            return auth, ""
        connection.sendall(f"api {command}\n\n".encode())
        return auth, _read_message(reader)[1]


# --- FreeSWITCH --------------------------------------------------------------------------


class FreeSwitch:
    """A FreeSWITCH running the rendered configuration of `node` below `root`."""

    def __init__(self, node: Node, root: Path) -> None:
        self.node, self.root = node, root
        self.recordings = root / "recordings"
        self.announcements = root / "announcements"
        self.log = root / "log" / "freeswitch.log"
        self.process: subprocess.Popen | None = None

    def api(self, command: str) -> str:
        return esl(self.node.esl_port, ESL_PASSWORD, command)[1]

    def start(self) -> None:
        conf = self.root / "conf"
        with override_settings(RECORDINGS_DIR=self.recordings, ANNOUNCEMENTS_DIR=self.announcements):
            files = render(self.node, ClusterSettings())
        for relative, content in files.items():
            path = conf / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        dirs = {name: self.root / name for name in ("log", "db", "run", "temp")}
        for directory in (*dirs.values(), self.recordings, self.announcements):
            directory.mkdir(parents=True, exist_ok=True)
        command = [freeswitch_binary(), "-nf", "-nc", "-nonat", "-nocal", "-nort"]
        command += ["-conf", str(conf / "freeswitch")]
        for name, directory in dirs.items():
            command += [f"-{name}", str(directory)]
        self.process = subprocess.Popen(  # noqa: S603
            command,
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr").open("w"),
            start_new_session=True,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"FreeSWITCH exited with {self.process.returncode}: see {self.log}")
            try:
                if "RUNNING" in self.api("sofia status"):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"FreeSWITCH's smartswitch profile not up in {START_TIMEOUT}s: see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def errors(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "[ERR]" in line or "[CRIT]" in line]


def tone(seconds: float, *, rate: int) -> bytes:
    """A 440 Hz mono 16-bit WAV: the announcement the caller must hear."""
    samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def freeswitch(tmp_path_factory, django_db_setup, django_db_blocker):
    """FreeSWITCH on loopback; the node's SIP port is where SIPp plays OpenSIPS."""
    root = tmp_path_factory.mktemp("freeswitch")
    sip_port = free_port()
    node = Node(
        name="edge1",
        management_address="127.0.0.1",
        sip_address="127.0.0.1",
        sip_port=sip_port,
        media_port=free_port(),
        esl_port=free_port(),
        esl_password=ESL_PASSWORD,
    )
    engine = FreeSwitch(node, root)
    with django_db_blocker.unblock():
        try:
            engine.start()
        except BaseException:
            engine.stop()
            raise
    yield engine
    engine.stop()


# --- SIPp --------------------------------------------------------------------------------


def sipp_command(
    scenario: str, port: int, trace: Path, keys: dict[str, str], *extra: str, address: str = "127.0.0.1"
) -> list[str]:
    command = ["sipp", "-sf", str(SCENARIOS / scenario), "-i", address, "-p", str(port)]
    command += ["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error", "-max_recv_loops", "1000"]
    command += ["-trace_msg", "-message_file", str(trace), "-trace_err", "-error_file", f"{trace}.err"]
    for name, value in keys.items():
        command += ["-key", name, value]
    return command + list(extra)


@contextmanager
def opensips_stand_in(
    freeswitch: FreeSwitch, scenario: str, tmp_path: Path, *, port: int | None = None, **keys: str
):
    """SIPp where FreeSWITCH sends B legs (fs_path): the node's SIP port unless `port` says
    otherwise (a leg of X-SS-Dial names its own). Yields its message trace."""
    port = port or freeswitch.node.sip_port
    trace = tmp_path / f"{scenario}-{port}.log"
    command = sipp_command(scenario, port, trace, {"rtp_port": str(free_port()), **keys})
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + 5
    while not udp_port_taken(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield trace
        assert process.wait(timeout=30) == 0, _sipp_failure(trace)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def call(
    freeswitch: FreeSwitch, scenario: str, tmp_path: Path, keys: dict, *extra: str, address: str = "127.0.0.1"
) -> Path:
    """Run the caller's scenario from `address` against FreeSWITCH's profile; its message trace."""
    trace = tmp_path / f"{scenario}.log"
    command = sipp_command(scenario, free_port(), trace, keys, *extra, address=address)
    command.append(f"127.0.0.1:{freeswitch.node.media_port}")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=45, check=False)  # noqa: S603
    assert result.returncode == 0, _sipp_failure(trace)
    return trace


def _sipp_failure(trace: Path) -> str:
    errors = Path(f"{trace}.err")
    return (errors.read_text() if errors.exists() else "") + (trace.read_text() if trace.exists() else "")


def received(trace: Path, first_line: str, *, direction: str = "received") -> list[str]:
    """The messages of a SIPp trace that were received (or sent) and start with `first_line`."""
    blocks = trace.read_text().split("----------------------------------------------- ")
    messages = []
    for block in blocks:
        heading, _, message = block.partition("\n\n")
        if f"message {direction}" in heading and message.lstrip().startswith(first_line):
            messages.append(message.lstrip())
    return messages


def header(message: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in message.splitlines() if line.startswith(f"{name}:"))


def x_ss_headers(message: str) -> dict[str, str]:
    return {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in message.splitlines()
        if line.lower().startswith("x-ss-")
    }


def received_at(trace: Path, first_line: str) -> float:
    """When the first received message starting with `first_line` came (seconds, SIPp's clock)."""
    for block in trace.read_text().split("----------------------------------------------- ")[1:]:
        heading, _, message = block.partition("\n\n")
        if "message received" in heading and message.lstrip().startswith(first_line):
            clock = heading.split()[1]
            hours, minutes, seconds = clock.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    raise AssertionError(f"no {first_line!r} in {trace}")


class RtpCounter:
    """A UDP port standing for the caller's phone: counts the RTP packets sent to it."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        # The address the caller's SDP names (SIPp's -i): FreeSWITCH sends the audio there.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((address, 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count, daemon=True)

    def _count(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(2048)
            except TimeoutError:
                continue
            if len(data) > 12 and data[0] >> 6 == 2:  # RTP version 2
                self.packets += 1

    def __enter__(self) -> "RtpCounter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


# --- the tests ---------------------------------------------------------------------------


def test_the_rendered_configuration_loads_without_an_error(freeswitch):
    (profile,) = [line for line in freeswitch.api("sofia status").splitlines() if "smartswitch" in line]
    assert f"sip:mod_sofia@127.0.0.1:{freeswitch.node.media_port}" in profile
    assert "RUNNING" in profile
    # `show codec` names them: G.711 ulaw is PCMU, G.711 alaw PCMA.
    names = {line.split(",")[1].upper() for line in freeswitch.api("show codec").splitlines() if "," in line}
    assert {"G.711 ULAW", "G.711 ALAW", "G.722", "OPUS (STANDARD)", "GSM"} <= names, names
    assert freeswitch.errors() == []
    # How a change is applied: the rendered files read again, without a restart.
    assert freeswitch.api("reloadxml").startswith("+OK")
    assert freeswitch.api("reloadacl").startswith("+OK")


def test_only_the_nodes_opensips_may_send_calls(freeswitch, tmp_path):
    target = f"sip:4930123456@127.0.0.1:{freeswitch.node.sip_port}"
    keys = {"target": target, "rtp_port": str(free_port())}
    trace = call(freeswitch, "uac_stranger.xml", tmp_path, keys, address="127.0.0.2")
    assert received(trace, "SIP/2.0 403")


def test_esl_answers_the_nodes_password_only(freeswitch):
    assert esl(freeswitch.node.esl_port, ESL_PASSWORD)[0] == "+OK accepted"
    assert esl(freeswitch.node.esl_port, "wrong")[0] == "-ERR invalid"


@pytest.mark.parametrize("rate", [8000, 16000])
def test_an_uploaded_announcement_is_played_as_early_media_before_the_refusal(freeswitch, tmp_path, rate):
    # As in production: uploaded (validated), written into the node's directory, named by
    # call control from announcement_map().
    announcement = announcements.create_announcement(
        name="No money", audio=tone(ANNOUNCEMENT_SECONDS, rate=rate), actor=Scope.system()
    )
    write_announcements(freeswitch.announcements)
    with RtpCounter() as phone:
        keys = {"announce": announcement.file_name, "rtp_port": str(phone.port)}
        trace = call(freeswitch, "uac_announce.xml", tmp_path, keys)

    (early,) = received(trace, "SIP/2.0 183")
    assert "m=audio" in early
    refusal = received(trace, "SIP/2.0 402")
    assert refusal and "Insufficient funds" in refusal[0].splitlines()[0]
    played = received_at(trace, "SIP/2.0 402") - received_at(trace, "SIP/2.0 183")
    assert played >= ANNOUNCEMENT_SECONDS - 0.3
    # 20 ms packets for the whole announcement, give or take the start.
    assert phone.packets >= ANNOUNCEMENT_SECONDS * 50 * 0.8


def test_a_call_is_bridged_back_to_opensips_with_only_the_b_leg_headers(freeswitch, tmp_path):
    # The supplier's address: nothing listens there, the B leg goes to OpenSIPS (fs_path).
    target = f"sip:4930123456@127.0.0.1:{free_port()};user=phone"
    with opensips_stand_in(freeswitch, "uas_answer.xml", tmp_path) as b_leg, RtpCounter() as phone:
        keys = {
            "target": target,
            "dial": "",
            "codecs": "PCMA",
            "record": "",
            "stereo": "",
            "rtp_port": str(phone.port),
        }
        trace = call(freeswitch, "uac_bridge.xml", tmp_path, keys, "-d", "1000")

    (invite,) = received(b_leg, "INVITE")
    assert invite.startswith(f"INVITE {target} SIP/2.0")
    (a_leg,) = received(trace, "INVITE", direction="sent")
    assert x_ss_headers(invite) == {
        "X-SS-Socket": "udp:127.0.0.1:5060",
        "X-SS-Leg": "b",
        "X-SS-Call-ID": header(a_leg, "Call-ID"),
    }
    # The B leg offers what X-SS-Codecs says; the caller keeps its PCMU: FreeSWITCH transcodes.
    assert audio_formats(invite) in (["8"], ["8", "101"])
    # The B leg's ringing reaches the caller; its answer answers the A leg, with the caller's codec.
    assert received(trace, "SIP/2.0 180")
    (answer,) = [message for message in received(trace, "SIP/2.0 200") if "m=audio" in message]
    assert "RTP/AVP 0" in answer
    # The caller's BYE ended the B leg too: uas_answer.xml waits for it, or SIPp fails.


def audio_formats(message: str) -> list[str]:
    """The payload types of an SDP's audio line."""
    return next(line for line in message.splitlines() if line.startswith("m=audio")).split()[3:]


def leg(route: str, port: int, **variables: str) -> str:
    """One leg of X-SS-Dial as call control writes it, to OpenSIPS stood in for on `port`."""
    names = ",".join(f"{name}={value}" for name, value in {"leg_timeout": "20", **variables}.items())
    return (
        f"[{names},sip_h_X-SS-Route={route}]sofia/smartswitch/4930123456@192.0.2.{route[0]}"
        f";fs_path=sip:127.0.0.1:{port}"
    )


def test_freeswitch_hunts_from_a_503_leg_to_the_next_with_each_legs_route_and_codecs(freeswitch, tmp_path):
    first, second = free_port(), free_port()
    dial = "|".join(
        [leg("1:11:4930123456", first), leg("2:22:4930123456", second, absolute_codec_string="'PCMA'")]
    )
    with (
        opensips_stand_in(freeswitch, "uas_unavailable.xml", tmp_path, port=first) as refused,
        opensips_stand_in(freeswitch, "uas_answer.xml", tmp_path, port=second) as answered,
        RtpCounter() as phone,
    ):
        target = "sip:4930123456@192.0.2.1"
        keys = {
            "target": target,
            "dial": dial,
            "codecs": "",
            "record": "",
            "stereo": "",
            "rtp_port": str(phone.port),
        }
        trace = call(freeswitch, "uac_bridge.xml", tmp_path, keys, "-d", "500")

    (a_leg,) = received(trace, "INVITE", direction="sent")
    (one,), (two,) = received(refused, "INVITE"), received(answered, "INVITE")
    assert x_ss_headers(one)["X-SS-Route"] == "1:11:4930123456"
    assert x_ss_headers(two)["X-SS-Route"] == "2:22:4930123456"
    assert {x_ss_headers(one)["X-SS-Call-ID"], x_ss_headers(two)["X-SS-Call-ID"]} == {
        header(a_leg, "Call-ID")
    }
    # The caller offered PCMU only; the second route takes PCMA only, its leg says so.
    assert audio_formats(one)[0] == "0"
    assert audio_formats(two) in (["8"], ["8", "101"])
    assert [message for message in received(trace, "SIP/2.0 200") if "m=audio" in message]


def test_a_busy_leg_ends_the_hunt_as_in_opensips(freeswitch, tmp_path):
    busy = free_port()
    # Nothing listens for the second leg: trying it would end in another code than 486.
    dial = "|".join([leg("1:11:4930123456", busy), leg("2:22:4930123456", free_port())])
    with (
        opensips_stand_in(freeswitch, "uas_busy.xml", tmp_path, port=busy),
        RtpCounter() as phone,
    ):
        keys = {"target": "sip:4930123456@192.0.2.1", "dial": dial, "rtp_port": str(phone.port)}
        trace = call(freeswitch, "uac_refused.xml", tmp_path, keys)

    assert received(trace, "SIP/2.0 486")


def test_the_b_legs_refusal_is_the_a_legs_answer(freeswitch, tmp_path):
    target = f"sip:4930123456@127.0.0.1:{freeswitch.node.sip_port}"
    with opensips_stand_in(freeswitch, "uas_unavailable.xml", tmp_path), RtpCounter() as phone:
        keys = {"target": target, "dial": "", "rtp_port": str(phone.port)}
        trace = call(freeswitch, "uac_refused.xml", tmp_path, keys)

    assert received(trace, "SIP/2.0 503")
    assert not received(trace, "SIP/2.0 200")


@pytest.mark.skipif(not SIPP_PCAP.exists(), reason=f"{SIPP_PCAP} (sip-tester's audio) not found")
def test_a_recorded_call_leaves_a_stereo_wav_where_x_ss_record_says(freeswitch, tmp_path):
    target = f"sip:4930123456@127.0.0.1:{freeswitch.node.sip_port}"
    relative = "edge1/2026/01/02/call-7.wav"
    shutil.copy(SIPP_PCAP, tmp_path / "caller.pcap")
    with opensips_stand_in(freeswitch, "uas_answer.xml", tmp_path) as b_leg:
        keys = {"target": target, "record": relative, "stereo": "true"}
        call(freeswitch, "uac_record.xml", tmp_path, keys, "-d", "3000", "-mp", str(free_port()))

    # Without X-SS-Codecs the B leg offers what the caller offered (PCMA), nothing more.
    (invite,) = received(b_leg, "INVITE")
    offer = next(line for line in invite.splitlines() if line.startswith("m=audio"))
    assert offer.split()[3:] in (["8"], ["8", "101"])

    path = freeswitch.recordings / relative
    deadline = time.monotonic() + 5  # written out as the channel is torn down
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with wave.open(str(path)) as recording:
        assert recording.getnchannels() == 2
        seconds = recording.getnframes() / recording.getframerate()
        frames = recording.readframes(recording.getnframes())
    assert 2 <= seconds <= 4.5
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    caller = samples[0::2]  # left: what the caller said
    assert max(abs(sample) for sample in caller) > 1000, "the caller's side of the recording is silent"
