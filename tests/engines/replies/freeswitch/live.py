"""A real FreeSWITCH for live tests, on loopback ports, with the smallest configuration they need.

Found through FREESWITCH_BIN or `freeswitch` on PATH; `freeswitch_or_skip()` skips saying
so. The configuration is one freeswitch.xml written into a temporary directory: ESL on
127.0.0.1 with a password, a SIP profile "smartswitch" on 127.0.0.1 with a gateway "far"
(no registration), and a dialplan whose extension "tone" answers and plays a 440 Hz tone
for ever. `originate loopback/tone/public &park()` makes a call with two legs and audio
without any SIP far end.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engines.freeswitch import ESLClient, ESLUnavailable
from tests.ports import free_port

FREESWITCH_BIN = os.environ.get("FREESWITCH_BIN") or shutil.which("freeswitch")
PASSWORD = "live-s3cret"
MODULES = (
    "mod_logfile",
    "mod_event_socket",
    "mod_commands",
    "mod_dptools",
    "mod_dialplan_xml",
    "mod_loopback",
    "mod_sofia",
    "mod_sndfile",
    "mod_native_file",
    "mod_tone_stream",
)

CONFIG = """\
<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration" description="">
    <configuration name="switch.conf" description="">
      <settings>
        <param name="max-sessions" value="100"/>
        <param name="sessions-per-second" value="50"/>
        <param name="loglevel" value="info"/>
        <param name="rtp-start-port" value="{rtp_first}"/>
        <param name="rtp-end-port" value="{rtp_last}"/>
      </settings>
    </configuration>
    <configuration name="modules.conf" description="">
      <modules>
{modules}
      </modules>
    </configuration>
    <configuration name="logfile.conf" description="">
      <profiles><profile name="default"><settings>
        <param name="logfile" value="{log}"/>
      </settings><mappings>
        <map name="all" value="info,notice,warning,err,crit,alert"/>
      </mappings></profile></profiles>
    </configuration>
    <configuration name="event_socket.conf" description="">
      <settings>
        <param name="listen-ip" value="127.0.0.1"/>
        <param name="listen-port" value="{esl_port}"/>
        <param name="password" value="{password}"/>
      </settings>
    </configuration>
    <configuration name="sofia.conf" description="">
      <profiles>
        <profile name="smartswitch">
          <gateways>
            <gateway name="far">
              <param name="proxy" value="127.0.0.1:{far_port}"/>
              <param name="register" value="false"/>
            </gateway>
          </gateways>
          <settings>
            <param name="sip-ip" value="127.0.0.1"/>
            <param name="sip-port" value="{sip_port}"/>
            <param name="rtp-ip" value="127.0.0.1"/>
            <param name="ext-rtp-ip" value="127.0.0.1"/>
            <param name="ext-sip-ip" value="127.0.0.1"/>
            <param name="context" value="public"/>
            <param name="dialplan" value="XML"/>
            <param name="rtp-timer-name" value="soft"/>
            <param name="auth-calls" value="false"/>
            <param name="inbound-codec-prefs" value="PCMU,PCMA"/>
            <param name="outbound-codec-prefs" value="PCMU,PCMA"/>
          </settings>
        </profile>
      </profiles>
    </configuration>
  </section>
  <section name="dialplan" description="">
    <context name="public">
      <extension name="tone">
        <condition field="destination_number" expression="^tone$">
          <action application="answer"/>
          <action application="playback" data="tone_stream://%(1000,0,440);loops=-1"/>
        </condition>
      </extension>
    </context>
  </section>
</document>
"""


def freeswitch_or_skip() -> str:
    if not FREESWITCH_BIN:
        pytest.skip("FreeSWITCH not found: set FREESWITCH_BIN or put freeswitch on PATH")
    return FREESWITCH_BIN


class LiveFreeSWITCH:
    """One FreeSWITCH process in `workdir`; restart() stops it and starts it on the same ports."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.esl_port = free_port()
        self.sip_port = free_port()
        rtp = free_port()
        self.recordings = workdir / "recordings"
        for name in ("conf", "log", "db", "run", "temp", "recordings"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        self.log = workdir / "log" / "freeswitch.log"
        self.config = workdir / "conf" / "freeswitch.xml"
        self.config.write_text(
            CONFIG.format(
                rtp_first=rtp,
                rtp_last=rtp + 40,
                modules="\n".join(f'        <load module="{name}"/>' for name in MODULES),
                log=self.log,
                esl_port=self.esl_port,
                password=PASSWORD,
                far_port=free_port(),
                sip_port=self.sip_port,
            )
        )
        self.process: subprocess.Popen | None = None

    def client(self, timeout: float = 5.0) -> ESLClient:
        return ESLClient("127.0.0.1", self.esl_port, PASSWORD, timeout=timeout)

    def start(self, seconds: float = 30) -> None:
        directories = []
        for flag, name in (
            ("-conf", "conf"),
            ("-log", "log"),
            ("-db", "db"),
            ("-run", "run"),
            ("-temp", "temp"),
        ):
            directories += [flag, str(self.workdir / name)]
        output = (self.workdir / "stdout.txt").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - the engine binary the tester named
            [self.binary, "-nf", "-nc", "-nonat", "-nocal", "-nort", *directories],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,
        )
        output.close()
        self.wait_ready(seconds)

    def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        client = self.client(timeout=1)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"FreeSWITCH exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if client.status().ready:
                    return
            except ESLUnavailable:
                pass
            time.sleep(0.2)
        pytest.fail(f"FreeSWITCH's ESL did not answer within {seconds}s:\n{self.tail()}")

    def tail(self) -> str:
        texts = [
            path.read_text(errors="replace")[-3000:]
            for path in (self.log, self.workdir / "stdout.txt")
            if path.exists()
        ]
        return "\n".join(texts)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(self, uuid: str, call_id: str | None = None) -> None:
        """Start a loopback call whose A leg is `uuid`: answered at once, with a tone from the B leg."""
        variables = f"origination_uuid={uuid}" + (f",sip_call_id={call_id}" if call_id else "")
        reply = self.client().api(f"originate {{{variables}}}loopback/tone/public &park()")
        assert reply.startswith(f"+OK {uuid}"), reply


@pytest.fixture
def freeswitch(tmp_path):
    """A running FreeSWITCH (skipped where none is installed), stopped at the end."""
    engine = LiveFreeSWITCH(freeswitch_or_skip(), tmp_path)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def shared_freeswitch(tmp_path_factory):
    """One running FreeSWITCH for a module's tests that leave it as they found it (it takes
    about 2 s to start and 4 s to stop)."""
    engine = LiveFreeSWITCH(freeswitch_or_skip(), tmp_path_factory.mktemp("freeswitch"))
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
