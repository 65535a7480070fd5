"""A node's FreeSWITCH configuration rendered from the database (loaded for real in
test_live_freeswitch.py; here: what each file says, for every setting that shapes it)."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from apps.media.config import CODECS, MODULES, render
from apps.nodes.models import ClusterSettings
from apps.nodes.rendering import render_node
from apps.opensips.config import RenderError
from apps.peers.models import CODECS as PEER_CODECS
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(settings, tmp_path):
    settings.RECORDINGS_DIR = tmp_path / "recordings"
    settings.ANNOUNCEMENTS_DIR = tmp_path / "announcements"
    return NodeFactory(
        name="edge1",
        management_address="10.1.0.1",
        sip_address="198.51.100.1",
        sip_port=5060,
        media_port=5080,
        esl_port=8021,
    )


@pytest.fixture
def cluster():
    return ClusterSettings.load()


def parse(text: str) -> ET.Element:
    """Our own rendered files, not untrusted input."""
    return ET.fromstring(text)  # noqa: S314


def files(node, cluster) -> dict[str, str]:
    return render(node, cluster)


def xml(node, cluster, name: str) -> ET.Element:
    return parse(files(node, cluster)[f"freeswitch/{name}"])


def params(element: ET.Element) -> dict[str, str]:
    return {param.get("name"): param.get("value") for param in element.iter("param")}


def test_every_file_is_well_formed_xml_and_the_main_one_includes_the_others(node, cluster):
    rendered = files(node, cluster)
    for content in rendered.values():
        parse(content)
    main = rendered["freeswitch/freeswitch.xml"]
    included = {
        f"freeswitch/{element.get('data')}"
        for element in parse(main).iter("X-PRE-PROCESS")
        if element.get("cmd") == "include"
    }
    assert included == set(rendered) - {"freeswitch/freeswitch.xml"}


def test_the_directory_sits_beside_opensips_in_the_nodes_rendered_files(node, settings, tmp_path):
    settings.OPENSIPS_MODULES_DIR = str(tmp_path)
    (tmp_path / "tm.so").write_text("")
    settings.CALL_CONTROL_URL = "http://127.0.0.1:8000/call-control/v1/"
    settings.OPENSIPS_DB_URL = "mysql://opensips:secret@db.example:3306/smartswitch"
    rendered = render_node(node)
    assert "opensips/opensips.cfg" in rendered
    assert "freeswitch/autoload_configs/sofia.conf.xml" in rendered


def test_a_node_without_freeswitch_renders_none(node, cluster):
    node.media_enabled = False
    assert files(node, cluster) == {}


def test_only_the_built_modules_the_media_path_uses_are_loaded(node, cluster):
    loaded = [
        load.get("module") for load in xml(node, cluster, "autoload_configs/modules.conf.xml").iter("load")
    ]
    assert loaded == list(MODULES)
    assert "mod_xml_curl" not in loaded  # it refuses to load without a binding


def test_the_profile_listens_on_the_nodes_media_port_for_its_opensips_only(node, cluster):
    profile = xml(node, cluster, "autoload_configs/sofia.conf.xml").find("profiles/profile")
    settings = params(profile)
    assert profile.get("name") == "smartswitch"
    assert (settings["sip-ip"], settings["sip-port"], settings["rtp-ip"]) == (
        "198.51.100.1",
        "5080",
        "198.51.100.1",
    )
    assert settings["apply-inbound-acl"] == "smartswitch_opensips"
    assert settings["auth-calls"] == "false"
    assert settings["disable-register"] == "true"
    assert settings["rtp-timer-name"] == "soft"
    assert settings["context"] == "smartswitch"
    lists = {
        item.get("name"): item for item in xml(node, cluster, "autoload_configs/acl.conf.xml").iter("list")
    }
    opensips = lists["smartswitch_opensips"]
    assert opensips.get("default") == "deny"
    assert [entry.get("cidr") for entry in opensips] == ["198.51.100.1/32"]


def test_in_shared_ip_mode_the_b_leg_goes_to_opensips_on_the_shared_ip(node, cluster):
    cluster.origination_mode = ClusterSettings.OriginationMode.SHARED
    cluster.shared_ip = "198.51.100.100"
    acl = xml(node, cluster, "autoload_configs/acl.conf.xml")
    opensips = next(item for item in acl.iter("list") if item.get("name") == "smartswitch_opensips")
    assert [entry.get("cidr") for entry in opensips] == ["198.51.100.1/32", "198.51.100.100/32"]
    dialplan = files(node, cluster)["freeswitch/dialplan/smartswitch.xml"]
    assert ";fs_path=sip:198.51.100.100:5060" in dialplan


def test_shared_ip_mode_without_the_shared_ip_is_refused_clearly(node, cluster):
    cluster.origination_mode = ClusterSettings.OriginationMode.SHARED
    cluster.shared_ip = None
    with pytest.raises(RenderError, match="shared IP"):
        files(node, cluster)


def test_ipv6_addresses_are_bracketed_in_uris_and_sized_in_acls(node, cluster):
    node.sip_address = "2001:db8::1"
    acl = xml(node, cluster, "autoload_configs/acl.conf.xml")
    opensips = next(item for item in acl.iter("list") if item.get("name") == "smartswitch_opensips")
    assert [entry.get("cidr") for entry in opensips] == ["2001:db8::1/128"]
    assert ";fs_path=sip:[2001:db8::1]:5060" in files(node, cluster)["freeswitch/dialplan/smartswitch.xml"]


def test_esl_listens_on_the_management_address_with_the_nodes_password_for_the_cluster(node, cluster):
    NodeFactory(name="edge2", management_address="10.1.0.2")
    NodeFactory(name="old", management_address="10.1.0.9", enabled=False)
    settings = params(xml(node, cluster, "autoload_configs/event_socket.conf.xml"))
    assert settings["listen-ip"] == "10.1.0.1"
    assert settings["listen-port"] == "8021"
    assert settings["password"] == node.esl_password
    assert settings["apply-inbound-acl"] == "smartswitch_esl"
    acl = xml(node, cluster, "autoload_configs/acl.conf.xml")
    esl = next(item for item in acl.iter("list") if item.get("name") == "smartswitch_esl")
    assert [entry.get("cidr") for entry in esl] == ["10.1.0.1/32", "10.1.0.2/32"]


def test_codecs_are_those_peers_may_name_in_freeswitchs_spelling(node, cluster):
    assert [codec.upper() for codec in PEER_CODECS] == list(CODECS)
    main = files(node, cluster)["freeswitch/freeswitch.xml"]
    assert 'data="codecs=PCMU,PCMA,G722,OPUS,GSM"' in main
    settings = params(xml(node, cluster, "autoload_configs/sofia.conf.xml").find("profiles/profile"))
    assert settings["inbound-codec-prefs"] == settings["outbound-codec-prefs"] == "$${codecs}"
    assert settings["disable-transcoding"] == "false"


def test_recordings_and_announcements_directories_come_from_the_settings(node, cluster, tmp_path):
    main = files(node, cluster)["freeswitch/freeswitch.xml"]
    assert f'data="recordings_dir={tmp_path / "recordings"}"' in main
    assert f'data="announcements_dir={tmp_path / "announcements"}"' in main


def test_switch_settings_come_from_the_settings(node, cluster, settings):
    settings.FREESWITCH_RTP_START_PORT = 20000
    settings.FREESWITCH_RTP_END_PORT = 29999
    settings.FREESWITCH_MAX_SESSIONS = 500
    switch = params(xml(node, cluster, "autoload_configs/switch.conf.xml"))
    assert (switch["rtp-start-port"], switch["rtp-end-port"], switch["max-sessions"]) == (
        "20000",
        "29999",
        "500",
    )


@pytest.mark.parametrize("ports", [(30000, 20000), (80, 20000), (20000, 70000)])
def test_an_impossible_rtp_range_is_refused(node, cluster, settings, ports):
    settings.FREESWITCH_RTP_START_PORT, settings.FREESWITCH_RTP_END_PORT = ports
    with pytest.raises(RenderError, match="RTP ports"):
        files(node, cluster)


def test_an_unknown_log_level_is_refused(node, cluster, settings):
    settings.FREESWITCH_LOG_LEVEL = "chatty"
    with pytest.raises(RenderError, match="FREESWITCH_LOG_LEVEL"):
        files(node, cluster)


def test_the_log_level_maps_that_level_and_above(node, cluster, settings):
    settings.FREESWITCH_LOG_LEVEL = "warning"
    logfile = xml(node, cluster, "autoload_configs/logfile.conf.xml")
    assert logfile.find(".//map").get("value") == "warning,err,crit,alert"


# --- the dialplan: the header protocol of docs/MEDIA.md ---------------------------------------


def extensions(node, cluster) -> dict[str, ET.Element]:
    context = xml(node, cluster, "dialplan/smartswitch.xml").find("context")
    assert context.get("name") == "smartswitch"
    return {extension.get("name"): extension for extension in context.iter("extension")}


def actions(extension: ET.Element, kind: str = "action") -> list[tuple[str, str]]:
    return [(action.get("application"), action.get("data")) for action in extension.iter(kind)]


def test_the_dialplan_hunts_announce_then_bridge_with_nothing_copied_by_default(node, cluster):
    found = extensions(node, cluster)
    assert list(found) == [
        "defaults",
        "announce",
        "b-leg",
        "b-leg-codecs",
        "record",
        "bridge-legs",
        "bridge",
        "no-instructions",
    ]
    assert ("set", "sip_copy_custom_headers=false") in actions(found["defaults"])
    assert ("set", "hangup_after_bridge=true") in actions(found["defaults"])
    # Only the extensions that add to the call go on hunting.
    assert [name for name, item in found.items() if item.get("continue") == "true"] == [
        "defaults",
        "b-leg",
        "b-leg-codecs",
        "record",
    ]


def test_legs_are_tried_in_turn_until_an_answer_opensips_would_not_fail_over_on(node, cluster):
    defaults = actions(extensions(node, cluster)["defaults"])
    assert {app for app, _ in defaults} == {"set"}
    settings = dict(data.split("=", 1) for _, data in defaults)
    stop = settings["fail_on_single_reject"].split(",")
    assert {"USER_BUSY", "CALL_REJECTED", "UNALLOCATED_NUMBER", "NO_USER_RESPONSE"} <= set(stop)
    # 503 (and 500, 400) and 408 go on to the next route, as in OpenSIPS.
    assert "NORMAL_TEMPORARY_FAILURE" not in stop
    assert "RECOVERY_ON_TIMER_EXPIRE" not in stop
    assert settings["originate_continue_on_timeout"] == "true"


def test_an_announcement_is_early_media_then_the_code(node, cluster):
    announce = extensions(node, cluster)["announce"]
    assert [app for app, _ in actions(announce)] == ["pre_answer", "playback", "respond"]
    assert actions(announce)[1][1] == "$${announcements_dir}/${sip_h_X-SS-Announce}"
    assert actions(announce)[2][1] == "${sip_h_X-SS-Code} ${sip_h_X-SS-Reason}"


def test_every_b_leg_carries_the_socket_the_leg_mark_and_the_calls_call_id(node, cluster):
    exported = [data for app, data in actions(extensions(node, cluster)["b-leg"]) if app == "export"]
    assert exported[:3] == [
        "nolocal:sip_h_X-SS-Socket=${sip_h_X-SS-Socket}",
        "nolocal:sip_h_X-SS-Leg=b",
        "nolocal:sip_h_X-SS-Call-ID=${sip_call_id}",
    ]


def test_the_legs_of_x_ss_dial_are_bridged_else_x_ss_target_through_opensips(node, cluster):
    # The default offer in {}, with the legs' own [] winning over it (local_var_clobber).
    default = "{local_var_clobber=true,absolute_codec_string='${ss_b_codecs}'}"
    assert actions(extensions(node, cluster)["bridge-legs"]) == [("bridge", f"{default}${{sip_h_X-SS-Dial}}")]
    (bridge,) = actions(extensions(node, cluster)["bridge"])
    assert bridge == (
        "bridge",
        "{absolute_codec_string='${ss_b_codecs}'}"
        "sofia/smartswitch/${sip_h_X-SS-Target};fs_path=sip:198.51.100.1:5060",
    )


def test_the_b_leg_offers_x_ss_codecs_else_what_the_caller_offered_else_ours(node, cluster):
    codecs = extensions(node, cluster)["b-leg-codecs"]
    assert actions(codecs) == [
        ("set", "ss_b_codecs=${sip_h_X-SS-Codecs}"),
        ("set", "ss_b_codecs=${ep_codec_string}"),
    ]
    assert actions(codecs, "anti-action") == [("set", "ss_b_codecs=$${codecs}")]
    assert not [app for app, _ in actions(codecs) if app == "export"]  # it would beat the legs'


def test_recording_starts_on_answer_below_the_recordings_directory(node, cluster):
    record = extensions(node, cluster)["record"]
    assert ("set", "RECORD_ANSWER_REQ=true") in actions(record)
    target = "$${recordings_dir}/${sip_h_X-SS-Record}"
    assert ("record_session", target) in actions(record)
    assert ("record_session", target) in actions(record, "anti-action")


# Legs as call control writes them (apps.callcontrol.decision.Decision.media_leg).
LEG_ONE = (
    "[leg_timeout=60,leg_progress_timeout=5,absolute_codec_string='PCMA,G722',"
    "sip_h_X-SS-Route=3:4:4930123456]sofia/smartswitch/4930123456@192.0.2.7:5060"
    ";fs_path=sip:198.51.100.1:5060"
)
LEG_TWO = (
    "[leg_timeout=60,sip_h_X-SS-Route=5:0:4930123456]sofia/smartswitch/4930123456@192.0.2.8"
    ";fs_path=sip:[2001:db8::1]:5060"
)

# What each header pattern lets through: a header that fails its pattern is ignored (no
# recording, no announcement), so a path can never leave its directory.
HEADER_CASES = [
    ("announce", "X-SS-Announce", "no-money.wav", True),
    ("announce", "X-SS-Announce", "../etc/passwd", False),
    ("announce", "X-SS-Announce", "sub/file.wav", False),
    ("announce", "X-SS-Announce", ".hidden", False),
    ("announce", "X-SS-Code", "402", True),
    ("announce", "X-SS-Code", "200", False),
    ("announce", "X-SS-Code", "4020", False),
    ("record", "X-SS-Record", "edge1/2026/01/02/abc-7.wav", True),
    ("record", "X-SS-Record", "edge1/../../etc/x.wav", False),
    ("record", "X-SS-Record", "/etc/x.wav", False),
    ("record", "X-SS-Record", "edge1/x.mp3", False),
    ("record", "X-SS-Record-Stereo", "true", True),
    ("record", "X-SS-Record-Stereo", "false", False),
    ("b-leg-codecs", "X-SS-Codecs", "PCMA", True),
    ("b-leg-codecs", "X-SS-Codecs", "PCMA,G722,opus", True),
    ("b-leg-codecs", "X-SS-Codecs", "PCMA,}", False),
    ("bridge", "X-SS-Target", "sip:4930123456@192.0.2.7:5070", True),
    ("bridge", "X-SS-Target", "sip:4930123456@192.0.2.7;user=phone", True),
    ("bridge", "X-SS-Target", "sip:a@b,sofia/other/x", False),
    ("bridge", "X-SS-Target", "tel:+4930123456", False),
    ("bridge", "X-SS-Target", "sip:${system(id)}@h", False),
    ("bridge-legs", "X-SS-Dial", LEG_ONE, True),
    ("bridge-legs", "X-SS-Dial", f"{LEG_ONE}|{LEG_TWO}", True),
    ("bridge-legs", "X-SS-Dial", "sofia/smartswitch/4930123456@192.0.2.7", True),
    ("bridge-legs", "X-SS-Dial", "sofia/external/4930123456@192.0.2.7", False),
    ("bridge-legs", "X-SS-Dial", f"{LEG_ONE}|loopback/4930123456", False),
    ("bridge-legs", "X-SS-Dial", "[x=${system(id)}]sofia/smartswitch/1@192.0.2.7", False),
    ("bridge-legs", "X-SS-Dial", "sofia/smartswitch/${system(id)}", False),
]


@pytest.mark.parametrize(("extension", "header", "value", "accepted"), HEADER_CASES)
def test_header_patterns(node, cluster, extension, header, value, accepted):
    conditions = extensions(node, cluster)[extension].iter("condition")
    (condition,) = [item for item in conditions if item.get("field") == f"${{sip_h_{header}}}"]
    # FreeSWITCH's PCRE and Python's re agree on these patterns (no lookarounds, no classes
    # beyond \w \d \s).
    assert bool(re.search(condition.get("expression"), value)) is accepted


def test_templates_have_no_file_the_renderer_forgets():
    root = Path(__file__).resolve().parents[2] / "apps" / "media" / "templates" / "freeswitch"
    on_disk = {f"freeswitch/{path.relative_to(root)}" for path in root.rglob("*.xml")}
    node = NodeFactory.build(name="edge9", management_address="10.9.0.1", sip_address="198.51.100.9")
    assert on_disk == set(render(node, ClusterSettings()))
