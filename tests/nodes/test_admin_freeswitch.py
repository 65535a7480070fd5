"""The node page's FreeSWITCH: status, SIP profiles, channels with their recording state and a
"hang up" (uuid_kill, confirmed by a POST with CSRF, audited, operator only), a dead or hung
FreeSWITCH shown as such while the page still renders, and the node's media fields in its
form with the ESL password never shown. FreeSWITCH is a server on loopback answering with
replies recorded from 1.10.12 (tests/engines/replies/freeswitch)."""

import time

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.nodes import services
from tests.conftest import PASSWORD
from tests.engines.replies.freeswitch import (
    NO_SUCH_CHANNEL,
    RECORDED_FILE,
    RECORDED_UUID,
    SILENT,
    RecordedESL,
    recorded,
)
from tests.ports import free_port

ESL_PASSWORD = "node-esl-Secret-do-not-show"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def esl():
    """The node's FreeSWITCH, with the recorded call up and its A leg recorded."""
    with RecordedESL(ESL_PASSWORD) as server:
        server.replies["status"] = recorded("status.txt")
        server.replies["show"] = recorded("show_channels.json")
        server.replies[f"uuid_buglist {RECORDED_UUID}"] = recorded("uuid_buglist.xml")
        server.replies["uuid_buglist"] = "<media-bugs>\n</media-bugs>\n"
        server.replies["sofia"] = recorded("sofia_xmlstatus.xml")
        server.replies["uuid_kill"] = "+OK\n"
        yield server


@pytest.fixture
def node(cast, esl):
    cast.node.management_address = "127.0.0.1"
    cast.node.esl_port = esl.port
    cast.node.esl_password = ESL_PASSWORD
    cast.node.media_enabled = True
    cast.node.save()
    return cast.node


@pytest.fixture
def operator(client, cast):
    assert client.login(username=cast.operator.get_username(), password=PASSWORD)
    return client


@pytest.fixture
def reseller_staff(client, cast):
    assert client.login(username=cast.a.staff.get_username(), password=PASSWORD)
    return client


def change_url(node) -> str:
    return reverse("admin:nodes_node_change", args=[node.pk])


def hang_up_url(node) -> str:
    return reverse("admin:nodes_node_hang_up_media", args=[node.pk])


def api_commands(server: RecordedESL) -> list[str]:
    return [command for command in server.commands if command.startswith("api ")]


def test_the_node_page_shows_what_its_freeswitch_reports(operator, node, esl, mi):
    page = operator.get(change_url(node))
    assert page.status_code == 200
    html = page.content.decode()
    assert "FreeSWITCH now" in html
    assert "1.10.12-release" in html
    assert '<td id="media-sessions">2 of 100' in html
    assert "SIP profile smartswitch</th><td>RUNNING, 0 calls" in html
    assert "SIP gateway far</th><td>NOREG" in html
    # Both legs of the recorded call, the A leg's recording, and a hang-up link per channel.
    assert RECORDED_UUID in html and "loopback/tone-b" in html
    assert f"recording to {RECORDED_FILE}" in html
    assert f"{hang_up_url(node)}?uuid={RECORDED_UUID}" in html
    # One ESL session for the whole page, authenticated with the node's own password.
    assert esl.connections_made == 1
    assert esl.commands[0] == f"auth {ESL_PASSWORD}"
    assert api_commands(esl)[:2] == ["api status", "api show channels as json"]


def test_the_node_form_has_the_media_fields_and_never_the_esl_password(operator, node, esl, mi):
    html = operator.get(change_url(node)).content.decode()
    for name in ("media_enabled", "media_port", "esl_port"):
        assert f'name="{name}"' in html
    assert "esl_password" not in html
    assert ESL_PASSWORD not in html
    changelist = operator.get(reverse("admin:nodes_node_changelist")).content.decode()
    assert ESL_PASSWORD not in changelist


@pytest.mark.skipif(
    "media_port" not in services.NODE_SETTINGS,
    reason="apps.nodes.services.NODE_SETTINGS does not take the media fields yet",
)
def test_the_media_fields_are_saved_from_the_node_form(operator, node, esl, mi):
    form = operator.get(change_url(node)).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if name in form.fields and value is not None}
    data.update({"media_port": 5090, "esl_port": esl.port, "media_enabled": "on", "enabled": "on"})
    response = operator.post(change_url(node), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    node.refresh_from_db()
    assert (node.media_port, node.media_enabled, node.esl_password) == (5090, True, ESL_PASSWORD)


def test_the_node_page_renders_when_freeswitch_is_down(operator, node, mi):
    node.esl_port = free_port()  # nothing listens: refused
    node.save()
    page = operator.get(change_url(node))
    assert page.status_code == 200
    html = page.content.decode()
    assert "FreeSWITCH did not answer" in html and "refused" in html
    assert "Media channels" not in html
    assert "OpenSIPS now" in html  # the rest of the page is there


def test_the_node_page_renders_within_the_timeout_when_freeswitch_hangs(operator, node, esl, mi):
    esl.replies["status"] = SILENT
    started = time.monotonic()
    html = operator.get(change_url(node)).content.decode()
    assert time.monotonic() - started < 3
    assert "FreeSWITCH did not answer" in html and "no answer within 1.0s" in html
    assert api_commands(esl) == ["api status"]  # the first unanswered question stops the rest


def test_a_freeswitch_refusing_the_password_is_shown_as_refused(operator, node, esl, mi):
    node.esl_password = "out-of-date"
    node.save()
    html = operator.get(change_url(node)).content.decode()
    assert "FreeSWITCH refused the connection" in html
    assert "out-of-date" not in html


def test_a_node_without_media_asks_no_freeswitch(operator, node, esl, mi):
    node.media_enabled = False
    node.save()
    html = operator.get(change_url(node)).content.decode()
    assert "This node runs no FreeSWITCH" in html
    assert esl.connections_made == 0


def test_a_command_freeswitch_refuses_is_named_and_the_rest_is_shown(operator, node, esl, mi):
    esl.replies["sofia"] = "-ERR sofia Command not found!\n"
    html = operator.get(change_url(node)).content.decode()
    assert "FreeSWITCH refused sofia xmlstatus: -ERR sofia Command not found!" in html
    assert RECORDED_UUID in html


def test_hang_up_asks_for_confirmation_then_kills_the_channel_and_audits_it(operator, node, esl, mi):
    confirm = operator.get(hang_up_url(node), {"uuid": RECORDED_UUID})
    assert confirm.status_code == 200
    assert f"Hang up the channel <strong>{RECORDED_UUID}</strong> on node1" in confirm.content.decode()
    assert api_commands(esl) == []  # a GET ends nothing

    done = operator.post(hang_up_url(node), {"uuid": RECORDED_UUID, "confirm": "yes"})

    assert done.status_code == 302 and done.url == change_url(node) + "#freeswitch-channels"
    assert api_commands(esl) == [f"api uuid_kill {RECORDED_UUID}"]
    entry = AuditEntry.objects.get(action="call.hung_up")
    assert (entry.object_id, entry.data) == (
        str(node.pk),
        {"uuid": RECORDED_UUID, "engine": "freeswitch", "result": "ended"},
    )
    assert entry.actor.get_username() == "operator"


def test_hang_up_of_a_channel_already_gone_says_so(operator, node, esl, mi):
    esl.replies["uuid_kill"] = NO_SUCH_CHANNEL
    page = operator.post(hang_up_url(node), {"uuid": "gone-uuid", "confirm": "yes"}, follow=True)
    assert "Channel gone-uuid had already ended on node1." in page.content.decode()
    assert AuditEntry.objects.get(action="call.hung_up").data["result"] == "gone"


def test_hang_up_when_freeswitch_is_down_shows_the_error_and_audits_nothing(operator, node, mi):
    node.esl_port = free_port()
    node.save()
    page = operator.post(hang_up_url(node), {"uuid": RECORDED_UUID, "confirm": "yes"}, follow=True)
    assert f"FreeSWITCH on node1 did not hang up {RECORDED_UUID}" in page.content.decode()
    assert not AuditEntry.objects.filter(action="call.hung_up").exists()


def test_hang_up_of_a_uuid_that_would_add_arguments_is_refused(operator, node, esl, mi):
    page = operator.post(hang_up_url(node), {"uuid": "abc NORMAL_CLEARING", "confirm": "yes"}, follow=True)
    assert "did not hang up" in page.content.decode()
    assert not any("uuid_kill" in command for command in esl.commands)


def test_hang_up_needs_the_csrf_token(cast, node, esl, mi):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast.operator)
    refused = browser.post(hang_up_url(node), {"uuid": RECORDED_UUID, "confirm": "yes"})
    assert refused.status_code == 403
    assert api_commands(esl) == []


def test_reseller_staff_can_neither_see_freeswitch_nor_hang_up(reseller_staff, node, esl, mi):
    assert reseller_staff.get(change_url(node)).status_code in (403, 404)
    assert reseller_staff.get(hang_up_url(node), {"uuid": RECORDED_UUID}).status_code in (403, 404)
    posted = reseller_staff.post(hang_up_url(node), {"uuid": RECORDED_UUID, "confirm": "yes"})
    assert posted.status_code in (403, 404)
    assert esl.commands == []
    assert not AuditEntry.objects.filter(action="call.hung_up").exists()
