"""Call control's answer says which calls need FreeSWITCH: recording, codecs, capture."""

from apps.billing.models import Reservation
from apps.capture.models import CaptureSettings
from apps.capture.policy import sampled
from apps.media import announcements
from apps.media.models import RefusalKind
from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.routing.models import Route
from tests.media.test_announcements import wav
from tests.switching import BERLIN, SYSTEM, cluster, rate, update_peer

POOR_IP = "203.0.113.40"


def _route_answers(response: dict) -> dict[int, dict]:
    return {route["supplier_id"]: route for route in response["routes"]}


def test_a_plain_call_needs_no_media(world):
    response = world.call(BERLIN).as_response()

    assert (response["recording"], response["capture"]) == (None, False)
    assert all(route["record"] is False and route["codecs"] is None for route in response["routes"])
    assert all(route["codecs_re"] is None for route in response["routes"])


def test_a_recorded_customer_records_on_every_route_to_a_file_named_after_its_call(world):
    update_peer(world.customer, record_calls=True)
    decision = world.call(BERLIN, call_id="a84b4c76e66710@pc33.example.com")
    response = decision.as_response()

    assert all(route["record"] for route in response["routes"])
    day = decision.at.strftime("%Y/%m/%d")
    assert response["recording"] == {
        "path": f"node1/{day}/a84b4c76e66710_pc33.example.com-{decision.reservation}.wav",
        "stereo": True,
    }


def test_a_recorded_route_records_only_there(world):
    Route.objects.filter(pk=world.routes["Delta"].pk).update(record_calls=True)
    response = world.call(BERLIN).as_response()

    routes = _route_answers(response)
    assert routes[world.suppliers["Delta"].pk]["record"] is True
    assert [r["record"] for r in response["routes"]].count(True) == 1
    assert response["recording"]["path"].endswith(".wav")


def test_a_rejected_call_has_no_recording(world):
    update_peer(world.customer, record_calls=True)
    response = world.call("81312345678").as_response()

    assert (response["action"], response["recording"], response["capture"]) == ("reject", None, False)


def test_codecs_come_from_the_route_else_from_the_supplier(world):
    Peer.objects.filter(pk=world.suppliers["Bravo"].pk).update(codecs="PCMA,G722")
    Peer.objects.filter(pk=world.suppliers["Delta"].pk).update(codecs="PCMA")
    Route.objects.filter(pk=world.routes["Delta"].pk).update(codecs="opus,PCMU")
    routes = _route_answers(world.call(BERLIN).as_response())

    bravo, delta = routes[world.suppliers["Bravo"].pk], routes[world.suppliers["Delta"].pk]
    assert (bravo["codecs"], bravo["codecs_re"]) == ("PCMA,G722", "^(PCMA|G722)$")
    assert (delta["codecs"], delta["codecs_re"]) == ("opus,PCMU", "^(opus|PCMU)$")
    alpha = routes[world.suppliers["Alpha"].pk]
    assert (alpha["codecs"], alpha["codecs_re"]) == (None, None)


def test_a_codec_list_that_does_not_read_means_any_codec(world):
    # Written around the form's validation (a bulk update): call control goes on.
    Peer.objects.filter(pk=world.suppliers["Bravo"].pk).update(codecs="PCMA,G729")
    routes = _route_answers(world.call(BERLIN).as_response())

    assert routes[world.suppliers["Bravo"].pk]["codecs"] is None


def test_capture_is_asked_for_by_the_customer_the_route_or_the_supplier(world):
    assert world.call(BERLIN, call_id="c1").as_response()["capture"] is False
    Peer.objects.filter(pk=world.suppliers["Charlie"].pk).update(capture_calls=True)
    assert world.call(BERLIN, call_id="c2").as_response()["capture"] is True
    Peer.objects.filter(pk=world.suppliers["Charlie"].pk).update(capture_calls=False)
    update_peer(world.customer, capture_calls=True)
    assert world.call(BERLIN, call_id="c3").as_response()["capture"] is True


def test_a_call_to_record_on_a_node_without_freeswitch_is_refused_before_any_money_is_held(world):
    Node.objects.filter(name="node1").update(media_enabled=False)
    update_peer(world.customer, record_calls=True)
    decision = world.call(BERLIN)

    assert (decision.action, decision.code, decision.reason) == ("reject", 503, "Media unavailable")
    assert decision.as_response()["routes"] == []
    assert not Reservation.objects.exists()


def test_a_node_without_freeswitch_still_routes_calls_that_need_no_recording(world):
    Node.objects.filter(name="node1").update(media_enabled=False)
    assert world.call(BERLIN).routed


def test_each_route_gives_freeswitch_a_leg_back_through_this_nodes_opensips(world, settings):
    settings.OPENSIPS_RINGING_TIMEOUT = 45
    Route.objects.filter(pk=world.routes["Delta"].pk).update(setup_timeout=3, codecs="PCMA,G722")
    routes = _route_answers(world.call(BERLIN).as_response())

    delta = world.suppliers["Delta"].pk
    assert routes[delta]["leg"] == (
        f"[leg_timeout=45,leg_progress_timeout=3,absolute_codec_string='PCMA,G722',"
        f"sip_h_X-SS-Route={delta}:{world.gateways['Delta'].pk}:{BERLIN}]"
        f"sofia/smartswitch/{BERLIN}@192.0.2.4:5060;fs_path=sip:{world.node.sip_address}:{world.node.sip_port}"
    )


def test_a_rejected_call_has_no_legs(world):
    assert world.call("81312345678").as_response()["routes"] == []


def test_a_refusal_with_an_announcement_tells_opensips_which_file_to_play_first(world):
    no_money = announcements.create_announcement(name="no-money", audio=wav(), actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, no_money, actor=SYSTEM)
    world.add_customer("Poor", POOR_IP, rates=[rate("49", "0.60")], balance="0")

    response = world.call(source_ip=POOR_IP).as_response()

    assert (response["action"], response["code"]) == ("reject", 402)
    assert response["announce"] == {
        "file": announcements.announcement_map()[(None, RefusalKind.INSUFFICIENT_FUNDS)],
        "code": 402,
        "reason": "Insufficient funds",
    }


def test_a_peer_may_silence_the_announcement_and_a_node_without_freeswitch_plays_none(world):
    no_money = announcements.create_announcement(name="no-money", audio=wav(), actor=SYSTEM)
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, no_money, actor=SYSTEM)
    poor = world.add_customer("Poor", POOR_IP, rates=[rate("49", "0.60")], balance="0")
    Node.objects.filter(name="node1").update(media_enabled=False)
    assert world.call(source_ip=POOR_IP).as_response()["announce"] is None

    Node.objects.filter(name="node1").update(media_enabled=True)
    assert world.call(source_ip=POOR_IP).as_response()["announce"] is not None
    announcements.set_rule(RefusalKind.INSUFFICIENT_FUNDS, None, peer=poor, actor=SYSTEM)
    assert world.call(source_ip=POOR_IP).as_response()["announce"] is None


def test_a_sampled_share_of_calls_is_captured_the_same_way_on_every_try(world):
    CaptureSettings.objects.update_or_create(pk=CaptureSettings.load().pk, defaults={"sample_percent": 50})
    calls = {f"s{n}": world.call(BERLIN, call_id=f"s{n}", reserve=False) for n in range(40)}
    captured = {call_id: decision.as_response()["capture"] for call_id, decision in calls.items()}

    assert 5 < sum(captured.values()) < 35
    assert all(captured[call] == sampled(call, 50) for call in captured)


def test_recordings_are_mixed_to_one_channel_when_the_cluster_says_so(world):
    update_peer(world.customer, record_calls=True)
    assert world.call(BERLIN).as_response()["recording"]["stereo"] is True

    cluster(recording_stereo=False)
    assert world.call(BERLIN).as_response()["recording"]["stereo"] is False
