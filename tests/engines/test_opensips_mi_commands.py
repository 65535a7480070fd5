"""The MI client's commands, read from replies recorded from OpenSIPS 3.6.8 (tests/engines/replies):
what each sends, what it makes of the reply, and how failures are classified."""

from datetime import UTC, datetime

import pytest

from engines.opensips import (
    Contact,
    DialogState,
    GatewayStatus,
    MIClient,
    MIError,
    MIUnavailable,
    Registrant,
)
from tests.engines import Raw, RecordedMI
from tests.engines.replies import recorded


@pytest.fixture
def mi():
    with RecordedMI() as server:
        yield server


def test_version_and_uptime_are_read_from_the_recorded_replies(mi):
    mi.replies["version"] = recorded("version")
    mi.replies["uptime"] = recorded("uptime")
    client = MIClient(mi.url)

    assert client.version() == "OpenSIPS (3.6.8 (x86_64/linux))"
    uptime = client.uptime()
    assert uptime.seconds == 20
    assert uptime.up_since == "Thu Nov 26 07:50:53 2026"


@pytest.mark.parametrize(
    ("module", "command"),
    [("address", "address_reload"), ("drouting", "dr_reload"), ("registrant", "reg_reload")],
)
def test_reload_sends_the_modules_reload_command(mi, module, command):
    mi.replies[command] = recorded(command)
    MIClient(mi.url).reload(module)
    assert [r["method"] for r in mi.requests] == [command]


def test_reload_of_a_module_without_a_reload_command_is_refused_before_sending(mi):
    with pytest.raises(ValueError, match="usrloc"):
        MIClient(mi.url).reload("usrloc")
    assert mi.requests == []


def test_statistics_asks_for_the_groups_and_returns_the_counters(mi):
    mi.replies["get_statistics"] = recorded("get_statistics")
    stats = MIClient(mi.url).statistics(["dialog:", "core:", "tm:", "usrloc:"])

    assert mi.calls("get_statistics") == [{"statistics": ["dialog:", "core:", "tm:", "usrloc:"]}]
    assert stats["dialog:active_dialogs"] == 1
    assert stats["usrloc:registered_users"] == 1
    assert stats["core:rcv_requests"] == 3


def test_dialogs_reads_the_recorded_call_with_its_values_and_profiles(mi):
    mi.replies["dlg_list_ctx"] = {"result": {"count": 1, **recorded("dlg_list_ctx")["result"]}}
    [dialog] = MIClient(mi.url).dialogs()

    assert dialog.id == "1bf.db7a81e1"
    assert dialog.call_id == "rec-call-1@test"
    assert (dialog.from_uri, dialog.to_uri) == ("sip:sipp@127.0.0.1:15081", "sip:4420001@127.0.0.1:15060")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.active
    assert dialog.started_at == datetime(2026, 11, 26, 7, 51, 5, tzinfo=UTC)
    assert dialog.ends_at == datetime(2026, 11, 26, 7, 53, 6, tzinfo=UTC)
    assert (dialog.caller_tag, dialog.callee_tag) == ("2458SIPpTag001", "2418SIPpTag011")
    assert dialog.values == {"peer": "42"}
    assert dialog.profiles == (("peer", "42"),)


def test_an_ended_dialog_still_listed_is_not_active(mi):
    mi.replies["dlg_list"] = {"result": {"count": 1, **recorded("dlg_list_ended")["result"]}}
    [dialog] = MIClient(mi.url).dialogs(context=False)
    assert dialog.state is DialogState.DELETED
    assert not dialog.active
    assert dialog.ends_at is None  # OpenSIPS reports timeout 0 once it ended


def test_dialogs_reads_every_page(mi):
    # The recorded page shape ({"count": total, "Dialogs": [...]}), with 7 calls served 3 a page.
    template = recorded("dlg_list_page")["result"]["Dialogs"][0]
    calls = [{**template, "ID": f"1.{n}", "callid": f"call-{n}@test"} for n in range(7)]

    def page(params):
        start, size = params["index"], params["counter"]
        return {"result": {"count": len(calls), "Dialogs": calls[start : start + size]}}

    mi.replies["dlg_list_ctx"] = page
    dialogs = MIClient(mi.url).dialogs(page_size=3)

    assert [d.call_id for d in dialogs] == [f"call-{n}@test" for n in range(7)]
    assert mi.calls("dlg_list_ctx") == [
        {"index": 0, "counter": 3},
        {"index": 3, "counter": 3},
        {"index": 6, "counter": 3},
    ]


def test_dialogs_stops_at_the_limit_without_reading_further_pages(mi):
    template = recorded("dlg_list_page")["result"]["Dialogs"][0]
    calls = [{**template, "ID": f"1.{n}"} for n in range(7)]
    mi.replies["dlg_list_ctx"] = lambda params: {
        "result": {"count": 7, "Dialogs": calls[params["index"] : params["index"] + params["counter"]]}
    }
    assert [d.id for d in MIClient(mi.url).dialogs(page_size=3, limit=4)] == ["1.0", "1.1", "1.2", "1.3"]
    assert mi.calls("dlg_list_ctx") == [{"index": 0, "counter": 3}, {"index": 3, "counter": 1}]


def test_a_dialog_listed_on_two_pages_is_returned_once(mi):
    # A call that ends between two requests shifts the next page down by one.
    template = recorded("dlg_list_page")["result"]["Dialogs"][0]
    first = [{**template, "ID": f"1.{n}"} for n in range(2)]
    second = [{**template, "ID": "1.1"}, {**template, "ID": "1.2"}]
    pages = iter([first, second])
    mi.replies["dlg_list_ctx"] = lambda params: {"result": {"count": 4, "Dialogs": next(pages, [])}}

    assert [d.id for d in MIClient(mi.url).dialogs(page_size=2)] == ["1.0", "1.1", "1.2"]


def test_no_dialogs_is_an_empty_list(mi):
    mi.replies["dlg_list_ctx"] = recorded("dlg_list_page_empty")
    assert MIClient(mi.url).dialogs() == []
    assert len(mi.requests) == 1


def test_registrations_lists_every_contact_of_ul_dump(mi):
    mi.replies["ul_dump"] = recorded("ul_dump")
    assert MIClient(mi.url).registrations() == [
        Contact(
            aor="alice",
            contact="sip:alice@127.0.0.1:15080",
            expires=3592,
            call_id="1-2401@127.0.0.1",
            user_agent="SIPp registrar test",
            socket="udp:127.0.0.1:15060",
            state="CS_NEW",
            domain="location",
        )
    ]


def test_contact_shows_an_aors_contacts_and_none_for_an_unregistered_one(mi):
    mi.replies["ul_show_contact"] = lambda params: (
        recorded("ul_show_contact") if params["aor"] == "alice" else recorded("ul_show_contact_unknown")
    )
    client = MIClient(mi.url)

    [contact] = client.contact("alice")
    assert (contact.aor, contact.contact, contact.user_agent) == (
        "alice",
        "sip:alice@127.0.0.1:15080",
        "SIPp registrar test",
    )
    assert client.contact("nobody") == []
    assert mi.calls("ul_show_contact") == [
        {"table_name": "location", "aor": "alice"},
        {"table_name": "location", "aor": "nobody"},
    ]


def test_profile_size_counts_the_dialogs_of_a_profile_value(mi):
    mi.replies["profile_get_size"] = recorded("profile_get_size")
    assert MIClient(mi.url).profile_size("peer", "42") == 1
    assert mi.calls("profile_get_size") == [{"profile": "peer", "value": "42"}]


def test_profile_size_of_an_unknown_profile_is_an_error(mi):
    mi.replies["profile_get_size"] = recorded("profile_get_size_unknown")
    with pytest.raises(MIError) as raised:
        MIClient(mi.url).profile_size("nope")
    assert (raised.value.code, raised.value.message) == (404, "Profile not found")
    assert mi.calls("profile_get_size") == [{"profile": "nope"}]


def test_gateway_status_lists_drouting_gateways(mi):
    mi.replies["dr_gw_status"] = recorded("dr_gw_status")
    gateways = MIClient(mi.url).gateway_status()
    assert gateways == [
        GatewayStatus(id="gw7", address="127.0.0.1:5999", state="Active"),
        GatewayStatus(id="gw8", address="127.0.0.1:5998", state="Active"),
    ]
    assert all(gateway.active for gateway in gateways)


def test_registrants_lists_outbound_registrations_and_their_state(mi):
    mi.replies["reg_list"] = recorded("reg_list")
    [registrant] = MIClient(mi.url).registrants()
    assert registrant == Registrant(
        aor="sip:acct1@supplier.example",
        registrar="sip:127.0.0.1:5997",
        state="REGISTERING_STATE",
        enabled=True,
        expires=600,
        binding="sip:acct1@127.0.0.1:15060",
        socket="udp:127.0.0.1:15060",
        last_register_sent="Thu Nov 26 07:50:58 2026",
    )
    assert not registrant.registered


# --- Failures ------------------------------------------------------------------------


def test_an_http_5xx_without_a_json_rpc_error_is_retryable_unavailability(mi):
    # mi_http answers 500 with no body when it could not build the reply.
    mi.replies["dr_reload"] = Raw(500)
    with pytest.raises(MIUnavailable, match="HTTP status 500") as raised:
        MIClient(mi.url).reload("drouting")
    assert raised.value.retryable is True


def test_a_json_rpc_error_is_an_mi_error_even_in_an_http_5xx(mi):
    mi.replies["dr_reload"] = Raw(
        500, b'{"jsonrpc": "2.0", "error": {"code": 500, "message": "Reload failed"}}'
    )
    with pytest.raises(MIError) as raised:
        MIClient(mi.url).reload("drouting")
    assert (raised.value.code, raised.value.message, raised.value.retryable) == (500, "Reload failed", False)


def test_a_recorded_error_reply_keeps_its_code_and_message(mi):
    mi.replies["ul_show_contact"] = recorded("ul_show_contact_unknown")
    with pytest.raises(MIError) as raised:
        MIClient(mi.url).execute("ul_show_contact", {"table_name": "location", "aor": "x"})
    assert str(raised.value) == "MI ul_show_contact: 404 AOR not found"
