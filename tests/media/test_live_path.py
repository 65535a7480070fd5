"""The media path, live: OpenSIPS sends a call that needs media through the node's FreeSWITCH
and takes FreeSWITCH's second leg back to the route call control chose; every other call stays
signalling-only. Real OpenSIPS, FreeSWITCH, call control under uvicorn and SIPp with RTP, on
loopback and the test database (MariaDB: OpenSIPS reads its tables there).

World: node "media1" (OpenSIPS and FreeSWITCH on 127.0.0.1, its FreeSWITCH events listener and
capture listener running), node "media2" (only a file tree, reached by rsync). Customers:
Recorded (127.0.0.50, its calls recorded and captured), Plain (127.0.0.51), Poor (127.0.0.52,
prepaid without money: refused 402 after the "no money" announcement), Prepaid (127.0.0.53,
recorded, money for three seconds). Suppliers: Pcma
(takes PCMA only; SIPp echoing the caller's audio), Any (takes any codec), Failing (answers
503). Routing: 49 → Pcma; 33 → Failing, then Pcma; 44 → Any.
"""

import json
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import setup_databases, teardown_databases

from apps.billing import services as billing
from apps.billing.models import Reservation
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.files import tasks as file_tasks
from apps.files.models import NodeStorage, StoredFile
from apps.media import announcements
from apps.media.models import RefusalKind
from apps.nodes.models import ClusterSettings, Node
from apps.opensips import dialogs, provisioning
from apps.opensips.config import mysql_url
from apps.peers.models import Peer
from apps.routing.models import Method, Route, RoutingPlan, RoutingRule
from apps.tenancy import services as tenancy_services
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD
from tests.media.test_announcements import wav as tone_wav
from tests.media.test_live_freeswitch import ESL_PASSWORD, FreeSwitch, RtpCounter, freeswitch_binary
from tests.opensips.live import modules_dir, require_opensips, require_sipp
from tests.opensips.switch import (
    DESTINATIONS,
    LOOPBACK,
    SCENARIOS,
    _customer,
    _price_list,
    _rate,
    _sipp_directory,
    _start,
    _start_opensips,
    _stop,
    _supplier,
    _uas,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    product_environment,
    sipp,
    start_call_control,
    wait_for_call_control,
)
from tests.opensips.test_live_calls import wait_for
from tests.ports import free_port

RECORDED_IP = "127.0.0.50"
PLAIN_IP = "127.0.0.51"
POOR_IP = "127.0.0.52"
PREPAID_IP = "127.0.0.53"
BERLIN = "4930123456"
PARIS = "33123456789"
LONDON = "442071234567"
HOLD_MS = 3000
SYSTEM = Scope.system()


def require_freeswitch() -> str:
    binary = freeswitch_binary()
    if binary is None:
        pytest.skip("No FreeSWITCH: put `freeswitch` on PATH or set FREESWITCH_BIN.")
    return binary


def _world(ports: dict[str, int], media2_tree: Path) -> dict:
    retail = _price_list("Retail", [_rate(prefix, "0.0200", name) for prefix, name in DESTINATIONS])
    postpaid = {"account_mode": "postpaid", "credit_limit": Decimal("100")}
    recorded = _customer("Recorded", RECORDED_IP, retail, **postpaid)
    Peer.objects.filter(pk=recorded.pk).update(record_calls=True)
    Peer.objects.filter(pk=recorded.pk).update(capture_calls=True)
    plain = _customer("Plain", PLAIN_IP, retail, **postpaid)
    poor = _customer("Poor", POOR_IP, retail)
    # Three seconds of money: 0.03 at 0.60 a minute.
    prepaid = _customer("Prepaid", PREPAID_IP, _price_list("Per second", [_rate("49", "0.6000", "Germany")]))
    Peer.objects.filter(pk=prepaid.pk).update(record_calls=True)
    billing.post_payment(prepaid.account, actor=SYSTEM, amount=Decimal("0.03"))
    no_money = announcements.create_announcement(name="no-money", audio=tone_wav(2.0), actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, no_money, actor=SYSTEM)
    logins = {
        customer.name: tenancy_services.add_customer_login(
            customer, actor=SYSTEM, username=customer.name.lower(), password=PASSWORD
        ).user
        for customer in (recorded, plain)
    }
    pcma, _ = _supplier("Pcma", ports["pcma"])
    Peer.objects.filter(pk=pcma.pk).update(codecs="PCMA")
    failing, _ = _supplier("Failing", ports["failing"])
    any_codec, _ = _supplier("Any", ports["any"])
    plan = RoutingPlan.objects.create(name="Media")
    for prefix, suppliers in {"49": [pcma], "33": [failing, pcma], "44": [any_codec]}.items():
        rule = RoutingRule.objects.create(plan=plan, prefix=prefix, method=Method.PRIORITY)
        for priority, supplier in enumerate(suppliers, start=1):
            Route.objects.create(rule=rule, supplier=supplier, priority=priority, setup_timeout=2)
    ClusterSettings.load()
    ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).update(
        bind_address=LOOPBACK, default_routing_plan=plan
    )
    node = Node.objects.create(
        name="media1",
        management_address=LOOPBACK,
        sip_address=LOOPBACK,
        sip_port=ports["node"],
        media_port=ports["media"],
        esl_port=ports["esl"],
    )
    Node.objects.filter(pk=node.pk).update(esl_password=ESL_PASSWORD)
    media2 = Node.objects.create(
        name="media2", management_address="127.0.0.2", sip_address="127.0.0.2", media_enabled=False
    )
    NodeStorage.objects.create(node=media2, sync_target=str(media2_tree))
    (media2_tree / "recordings").mkdir(parents=True)
    with transaction.atomic():
        provisioning.sync_tables()
    return {
        "logins": logins,
        "media2": media2,
        "poor": poor,
        "node": Node.objects.get(pk=node.pk),
        "recorded": recorded,
        "plain": plain,
        "pcma": pcma,
        "any": any_codec,
    }


class MediaSwitch:
    def __init__(self, directory: Path, node_port: int, freeswitch: FreeSwitch, world: dict) -> None:
        self.directory, self.node_port, self.freeswitch = directory, node_port, freeswitch
        self.__dict__.update(world)
        self.tone = directory / "tone.wav"
        # Ten seconds of a 440 Hz tone, u-law: what SIPp's rtp_stream plays as PCMU.
        subprocess.run(  # noqa: S603
            [shutil.which("sox") or "sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law", str(self.tone),
             "synth", "10", "sine", "440"],
            check=True,
        )  # fmt: skip

    def call(
        self,
        source: str,
        callee: str,
        *,
        hold_ms: int = HOLD_MS,
        background: bool = False,
        scenario_name: str = "uac_rtp.xml",
    ):
        # SIPp reads no keyword inside an action's attributes: the tone and the hold time
        # are written into a copy of the scenario.
        scenario = self.directory / f"{hold_ms}-{scenario_name}"
        if not scenario.exists():
            text = (SCENARIOS / scenario_name).read_text()
            scenario.write_text(text.replace("[tone]", str(self.tone)).replace("[hold]", str(hold_ms)))
        return sipp(
            self.node_port, source=source, callee=callee, scenario=str(scenario), background=background
        )

    def listener_connections(self) -> int:
        """How many times the node's freeswitch_events has connected to FreeSWITCH."""
        log = (self.directory / "freeswitch_events.log").read_text(errors="replace")
        return log.count("INFO engines.freeswitch.events: listening to FreeSWITCH")


@pytest.fixture(scope="module", name="media")
def media_fixture(django_db_setup, django_db_blocker, tmp_path_factory):
    opensips = require_opensips()
    require_sipp()
    require_freeswitch()
    if shutil.which("sox") is None:
        pytest.skip("No sox (Debian package sox): the test makes its tone and measures recordings with it.")
    if connection.vendor != "mysql":
        pytest.skip(f"OpenSIPS reads MariaDB: run with DATABASE_URL=mysql://… (not {connection.vendor}).")
    directory = tmp_path_factory.mktemp("media-path")
    _sipp_directory.append(directory / "sipp")
    ports = {
        name: free_port() for name in ("node", "media", "esl", "pcma", "failing", "any", "cc", "mi", "hep")
    }

    recordings = directory / "freeswitch" / "recordings"
    processes: list[subprocess.Popen] = []
    freeswitch = None
    with django_db_blocker.unblock(), override_settings(RECORDINGS_DIR=recordings):
        created = None
        if not connection.settings_dict["NAME"].startswith("test_"):
            created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        try:
            world = _world(ports, directory / "media2")
            database = connection.settings_dict
            environment = product_environment(
                directory,
                NODE_NAME="media1",
                RECORDINGS_DIR=str(recordings),
                CAPTURES_DIR=str(directory / "captures"),
                CAPTURE_HEP_PORT=str(ports["hep"]),
            )
            uvicorn = start_call_control(ports["cc"], directory, environment)
            processes.append(uvicorn)
            processes.append(
                _start(
                    [
                        require_sipp(),
                        "-sf",
                        str(SCENARIOS / "uas_pcma.xml"),
                        "-i",
                        LOOPBACK,
                        "-p",
                        str(ports["pcma"]),
                        "-mp",
                        str(free_port()),
                        "-rtp_echo",
                        "-nostdin",
                        "-trace_msg",
                        "-message_file",
                        str(directory / "pcma.messages"),
                    ],
                    directory / "pcma.log",
                )
            )
            processes.append(_uas(ports["failing"], directory / "failing.log", scenario="uas_busy_503.xml"))
            processes.append(_uas(ports["any"], directory / "any.log"))
            cc_url = wait_for_call_control(uvicorn, ports["cc"], directory)
            node = world["node"]
            dialogs.ensure_table(node.pk)
            common = {
                "CALL_CONTROL_URL": cc_url,
                "OPENSIPS_DB_URL": mysql_url(database),
                "OPENSIPS_MODULES_DIR": modules_dir(opensips),
                "CAPTURE_HEP_PORT": ports["hep"],
            }
            processes.append(_start_opensips(opensips, node, directory, ports["mi"], common))
            freeswitch = FreeSwitch(node, directory / "freeswitch")
            announcements.write_announcements(freeswitch.announcements)
            freeswitch.start()
            for command in ("freeswitch_events", "capture_listener"):
                processes.append(
                    _start(
                        [sys.executable, "manage.py", command],
                        directory / f"{command}.log",
                        env=environment,
                        cwd=settings.BASE_DIR,
                    )
                )
            yield MediaSwitch(directory, ports["node"], freeswitch, world)
        finally:
            if freeswitch is not None:
                freeswitch.stop()
            for process in reversed(processes):
                _stop(process)
            call_command("flush", interactive=False, verbosity=0)
            if created is not None:
                teardown_databases(created, verbosity=0)


def sox_stat(path: Path) -> dict[str, float]:
    """sox's `stat` of an audio file: its length in seconds and RMS amplitude, among others."""
    result = subprocess.run(  # noqa: S603
        [shutil.which("sox") or "sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True
    )
    values = {}
    for line in result.stderr.splitlines():
        name, _, value = line.partition(":")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            continue
    return values


def supplier_invites(media: "MediaSwitch") -> list[str]:
    """The INVITEs Pcma's SIPp received, as logged."""
    text = (media.directory / "pcma.messages").read_text(errors="replace")
    messages = (block.partition("\n\n")[2] for block in text.split("-" * 47 + " "))
    return [message for message in messages if message.startswith("INVITE sip:")]


def channels(media: "MediaSwitch") -> int:
    """FreeSWITCH's live channels."""
    reply = media.freeswitch.api("show channels count")
    return int(reply.split()[0]) if reply.split() and reply.split()[0].isdigit() else 0


def caller_channel(media: "MediaSwitch", call_id: str) -> str | None:
    """The uuid of FreeSWITCH's channel of the caller's leg of `call_id`, once it is up (the
    list may still hold channels of calls just ended)."""
    rows = json.loads(media.freeswitch.api("show channels as json")).get("rows", [])
    for row in rows:
        if media.freeswitch.api(f"uuid_getvar {row['uuid']} sip_call_id").strip() == call_id:
            return row["uuid"]
    return None


def cdr_of(call_id: str) -> Cdr:
    wait_for(lambda: ingest.ingest_batch() or Cdr.objects.filter(call_id=call_id).exists(), what="the CDR")
    return Cdr.objects.get(call_id=call_id)


def test_a_recorded_call_goes_through_freeswitch_and_leaves_a_wav_as_long_as_the_call(media, orm, client):
    call = media.call(RECORDED_IP, BERLIN)

    assert call.returncode == 0, call.log
    reservation = Reservation.objects.get(call_id=call.call_id)
    day = reservation.created_at.strftime("%Y/%m/%d")
    relative = f"media1/{day}/{call.call_id}-{reservation.pk}.wav"
    path = media.freeswitch.recordings / relative
    wait_for(lambda: path.exists(), what=f"the recording {path}")
    stat = wait_for(lambda: (s := sox_stat(path)).get("Length (seconds)", 0) > 0 and s, what="a whole WAV")
    assert abs(stat["Length (seconds)"] - HOLD_MS / 1000) <= 1.0, stat
    assert stat["RMS     amplitude"] > 0.01, stat  # not silence: the tone (and its echo)
    # One call, one CDR: the first leg's, priced as any other.
    cdr = cdr_of(call.call_id)
    assert (cdr.customer_id, cdr.supplier_id, cdr.sip_code) == (media.recorded.pk, media.pcma.pk, 200)
    assert Cdr.objects.filter(call_id=call.call_id).count() == 1

    # The node's FreeSWITCH listener registered it for file sync (RECORD_STOP) ...
    stored = wait_for(
        lambda: StoredFile.objects.filter(kind="recording", call_id=call.call_id).first(),
        what="the recording registered by freeswitch_events",
    )
    assert (stored.relative_path, stored.size) == (relative, path.stat().st_size)
    # ... so that rsync copies it to the other node ...
    with override_settings(RECORDINGS_DIR=media.freeswitch.recordings):
        file_tasks.sync_copy(stored, media.media2)
    assert (media.directory / "media2" / "recordings" / relative).read_bytes() == path.read_bytes()
    # ... and its customer, and nobody else, downloads it from the portal.
    url = f"/portal/calls/{cdr.pk}/recordings/{stored.pk}/"
    with override_settings(RECORDINGS_DIR=media.freeswitch.recordings):
        client.force_login(media.logins["Plain"])
        assert client.get(url).status_code == 404
        client.force_login(media.logins["Recorded"])
        response = client.get(url, HTTP_RANGE="bytes=0-43")
        assert (response.status_code, b"".join(response.streaming_content)[:4]) == (206, b"RIFF")


def test_a_captured_call_through_freeswitch_leaves_a_pcap_with_both_legs(media, orm):
    call = media.call(RECORDED_IP, BERLIN)

    assert call.returncode == 0, call.log
    stored = wait_for(
        lambda: StoredFile.objects.filter(kind="capture", call_id=call.call_id).first(),
        what="the capture written by capture_listener",
    )
    pcap = media.directory / "captures" / stored.relative_path
    result = subprocess.run(  # noqa: S603
        [shutil.which("tshark") or "tshark", "-r", str(pcap), "-Y", "sip", "-T", "fields",
         "-e", "sip.Call-ID", "-e", "sip.Method", "-e", "sip.Status-Code"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    call_ids = {row[0] for row in rows}
    assert call.call_id in call_ids and len(call_ids) == 2, rows  # the customer's leg and FreeSWITCH's
    for leg in call_ids:
        methods = [row[1] for row in rows if row[0] == leg]
        assert "INVITE" in methods and "BYE" in methods, (leg, rows)


def test_a_refused_caller_hears_the_announcement_before_the_402(media, orm):
    with RtpCounter(address=POOR_IP) as phone:
        call = sipp(
            media.node_port,
            source=POOR_IP,
            callee=BERLIN,
            scenario="uac_announced.xml",
            extra=["-key", "rtp_port", str(phone.port)],
        )

    assert call.returncode == 0, call.log
    assert "SIP/2.0 402 Insufficient funds" in call.messages, call.log
    assert phone.packets > 50  # 2 s of audio are 100 packets of 20 ms
    assert not Reservation.objects.filter(call_id=call.call_id).exists()


def test_a_pcmu_caller_reaches_a_pcma_only_supplier_through_freeswitch(media, orm):
    seen = len(supplier_invites(media))
    call = media.call(PLAIN_IP, BERLIN)

    assert call.returncode == 0, call.log
    assert "RTP/AVP 0" in call.messages  # the caller was answered in PCMU
    invite = supplier_invites(media)[seen]
    assert "m=audio" in invite and "PCMA" in invite and "PCMU" not in invite, invite
    assert "X-SS-" not in invite, invite


def test_a_call_whose_supplier_takes_the_callers_codec_stays_signalling_only(media, orm):
    call = media.call(PLAIN_IP, LONDON, background=True)
    time.sleep(1.5)
    during = channels(media)
    call.wait()

    assert call.returncode == 0, call.log
    assert during == 0
    assert cdr_of(call.call_id).supplier_id == media.any.pk


def test_hunting_fails_over_from_a_503_supplier_to_the_next_through_freeswitch(media, orm):
    call = media.call(RECORDED_IP, PARIS)

    assert call.returncode == 0, call.log
    assert cdr_of(call.call_id).supplier_id == media.pcma.pk


def test_killing_the_channel_in_freeswitch_ends_both_sides_and_leaves_the_cdr(media, orm):
    call = media.call(RECORDED_IP, BERLIN, hold_ms=20000, background=True)
    caller_leg = wait_for(
        lambda: caller_channel(media, call.call_id), what="the caller's channel in FreeSWITCH"
    )
    assert media.freeswitch.api(f"uuid_kill {caller_leg}").startswith("+OK")
    call.wait()

    # The caller got the BYE (its scenario then fails on its own BYE's answer, or ends).
    assert "BYE sip:" in call.messages, call.log
    cdr = cdr_of(call.call_id)
    assert cdr.sip_code == 200 and cdr.duration_ms < 20000
    wait_for(lambda: channels(media) == 0, what="FreeSWITCH to drop both legs")


def test_with_freeswitch_down_a_call_to_record_is_refused_and_a_plain_one_connects(media, orm):
    media.freeswitch.stop()
    try:
        refused = media.call(RECORDED_IP, BERLIN)
        plain = media.call(PLAIN_IP, LONDON)
    finally:
        media.freeswitch.start()
        # The node's events listener is back too before the next call (it retries with backoff).
        wait_for(lambda: media.listener_connections() >= 2, what="freeswitch_events to reconnect", timeout=40)

    assert "SIP/2.0 503 Media unavailable" in refused.messages, refused.log
    assert not Reservation.objects.filter(call_id=refused.call_id, released_at__isnull=True).exists()
    assert plain.returncode == 0, plain.log


def test_a_recorded_prepaid_call_is_cut_at_its_granted_duration_on_both_sides(media, orm):
    call = media.call(PREPAID_IP, BERLIN, scenario_name="uac_rtp_held.xml")

    assert call.returncode == 0, call.log  # the switch sent the caller its BYE
    cdr = cdr_of(call.call_id)
    assert cdr.sip_code == 200 and 2500 <= cdr.duration_ms <= 4500, cdr.duration_ms
    wait_for(lambda: channels(media) == 0, what="FreeSWITCH to drop both legs")
    reservation = Reservation.objects.get(call_id=call.call_id)
    assert reservation.max_duration == 3
    stored = wait_for(
        lambda: StoredFile.objects.filter(kind="recording", call_id=call.call_id).first(),
        what="the recording",
    )
    length = sox_stat(media.freeswitch.recordings / stored.relative_path)["Length (seconds)"]
    assert abs(length - 3) <= 1.0, length
