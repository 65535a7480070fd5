"""The node's admin page: its OpenSIPS's version, uptime, counters, live calls (with hang
up), registrations and outbound registrations, read over MI; the sync state with "reload
now"; a page that still renders when OpenSIPS does not answer; operator only."""

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.nodes import sync
from apps.nodes.models import EngineSync
from tests.conftest import PASSWORD
from tests.engines.replies import recorded
from tests.factories import NodeFactory


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def node(cast):
    cast.node.management_address = "127.0.0.1"
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
    return reverse("admin:nodes_node_hang_up", args=[node.pk])


def test_the_node_page_shows_what_its_opensips_reports(operator, node, mi):
    page = operator.get(change_url(node))

    assert page.status_code == 200
    html = page.content.decode()
    assert "OpenSIPS (3.6.8 (x86_64/linux))" in html
    assert "Thu Nov 26 07:50:53 2026 (20 s)" in html  # up since, and for how long
    assert '<td id="active-calls">1</td>' in html
    assert "active_dialogs" in html and "rcv_requests" in html and "UAS_transactions" in html
    # The live call, with its values and a link to hang it up.
    assert "rec-call-1@test" in html and "sip:4420001@127.0.0.1:15060" in html and "peer=42" in html
    assert f"{hang_up_url(node)}?call_id=rec-call-1%40test" in html
    # The registration and the outbound registration.
    assert "sip:alice@127.0.0.1:15080" in html and "SIPp registrar test" in html
    assert "sip:acct1@supplier.example" in html and "REGISTERING_STATE" in html
    assert {r["method"] for r in mi.requests} == {
        "version",
        "uptime",
        "get_statistics",
        "dlg_list_ctx",
        "ul_dump",
        "reg_list",
    }


def test_the_node_page_says_when_it_lists_only_some_of_the_calls(operator, node, mi):
    stats = recorded("get_statistics")
    mi.replies["get_statistics"] = {"result": {**stats["result"], "dialog:active_dialogs": 500}}
    html = operator.get(change_url(node)).content.decode()
    assert '<td id="active-calls">500</td>' in html
    assert "1 of 500 calls are listed" in html
    assert mi.calls("dlg_list_ctx") == [{"index": 0, "counter": 200}]


def test_the_node_page_renders_when_opensips_does_not_answer(operator, node, dead_mi):
    page = operator.get(change_url(node))

    assert page.status_code == 200
    html = page.content.decode()
    assert "OpenSIPS on node1 did not answer: MI version at http://127.0.0.1:" in html
    assert "Connection refused" in html
    assert 'id="engine-calls"' not in html
    assert 'id="engine-sync"' in html  # the sync state is ours: it is always shown


def test_a_command_opensips_refuses_is_named_and_the_rest_is_shown(operator, node, mi):
    mi.replies["reg_list"] = {"error": {"code": -32601, "message": "Method not found"}}
    html = operator.get(change_url(node)).content.decode()
    assert "OpenSIPS refused reg_list: -32601 Method not found" in html
    assert "rec-call-1@test" in html
    assert "No outbound registrations." in html


def test_hang_up_asks_for_confirmation_then_ends_the_call_and_audits_it(operator, node, mi):
    confirm = operator.get(hang_up_url(node), {"call_id": "rec-call-1@test"})
    assert confirm.status_code == 200
    assert "End the call <strong>rec-call-1@test</strong> on node1?" in confirm.content.decode()
    assert mi.calls("dlg_end_dlg") == []  # a GET ends nothing

    done = operator.post(hang_up_url(node), {"call_id": "rec-call-1@test", "confirm": "yes"})

    assert done.status_code == 302 and done.url == change_url(node)
    assert mi.calls("dlg_end_dlg") == [{"dialog_id": "rec-call-1@test"}]
    entry = AuditEntry.objects.get(action="call.hung_up")
    assert (entry.object_id, entry.data) == (str(node.pk), {"call_id": "rec-call-1@test", "result": "ended"})
    assert entry.actor.get_username() == "operator"


def test_hang_up_of_a_call_already_over_says_so(operator, node, mi):
    mi.replies["dlg_end_dlg"] = {"error": {"code": 404, "message": "Requested Dialog not found"}}
    page = operator.post(hang_up_url(node), {"call_id": "gone@test", "confirm": "yes"}, follow=True)
    assert "Call gone@test had already ended on node1." in page.content.decode()


def test_hang_up_when_opensips_does_not_answer_shows_the_error(operator, node, dead_mi):
    page = operator.post(hang_up_url(node), {"call_id": "x@test", "confirm": "yes"}, follow=True)
    assert "OpenSIPS on node1 did not end x@test: MI dlg_end_dlg at" in page.content.decode()
    assert not AuditEntry.objects.filter(action="call.hung_up").exists()


def test_hang_up_needs_the_csrf_token(cast, node, mi):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast.operator)
    refused = browser.post(hang_up_url(node), {"call_id": "rec-call-1@test", "confirm": "yes"})
    assert refused.status_code == 403
    assert mi.calls("dlg_end_dlg") == []


def test_reseller_staff_cannot_see_the_node_page_nor_hang_up(reseller_staff, node, mi):
    assert reseller_staff.get(change_url(node)).status_code in (403, 404)
    assert reseller_staff.get(hang_up_url(node), {"call_id": "rec-call-1@test"}).status_code in (403, 404)
    posted = reseller_staff.post(hang_up_url(node), {"call_id": "rec-call-1@test", "confirm": "yes"})
    assert posted.status_code in (403, 404)
    reload_url = reverse("admin:nodes_node_tool", args=[node.pk, "reload-engine"])
    assert reseller_staff.post(reload_url).status_code in (403, 404)
    assert mi.requests == []


def test_the_node_page_shows_the_sync_state_and_reload_now_clears_it(operator, node, mi):
    mi.replies["dr_reload"] = {"error": {"code": 500, "message": "dr_reload failed"}}
    sync.request_reload("drouting")
    sync.reload_node(node)  # fails: recorded on the row

    html = operator.get(change_url(node)).content.decode()
    assert "pending drouting: failed 1x" in html
    assert "not retryable: MI dr_reload: 500 dr_reload failed" in html

    mi.replies["dr_reload"] = recorded("dr_reload")
    reload_url = reverse("admin:nodes_node_tool", args=[node.pk, "reload-engine"])
    done = operator.post(reload_url, follow=True)
    assert "OpenSIPS on node1 reloaded address, drouting, registrant." in done.content.decode()
    state = EngineSync.objects.get(node=node)
    assert (state.pending_modules, state.attempts) == ([], 0)
    assert AuditEntry.objects.filter(action="node.engine_reloaded", object_id=str(node.pk)).exists()


def test_reload_now_on_a_dead_node_says_it_failed_and_keeps_it_pending(operator, node, dead_mi):
    reload_url = reverse("admin:nodes_node_tool", args=[node.pk, "reload-engine"])
    page = operator.post(reload_url, follow=True).content.decode()
    assert "OpenSIPS on node1 did not reload: MI address_reload at" in page
    assert EngineSync.objects.get(node=node).pending_modules == ["address", "drouting", "registrant"]


def test_the_node_list_shows_each_nodes_sync_state(
    operator, cast, node, dead_mi, django_assert_max_num_queries
):
    node2 = NodeFactory(name="node2", management_address="127.0.0.1")
    NodeFactory(name="node3")
    sync.request_reload("address")
    sync.reload_node(node2)  # fails against the dead MI
    EngineSync.objects.filter(node=node).update(pending_address=False)

    with django_assert_max_num_queries(12):
        html = operator.get(reverse("admin:nodes_node_changelist")).content.decode()
    assert "in sync" in html  # node1
    assert "pending address: failed 1x" in html  # node2
    assert "never changed" not in html  # node3 was enabled: it was marked too
    assert html.count("pending address") == 2  # node2 and node3
