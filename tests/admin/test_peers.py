"""Peers through the admin: created, changed, suspended and given rows only through services."""

import hashlib
from decimal import Decimal

from apps.audit.models import AuditEntry
from apps.billing.models import Account
from apps.peers.models import Endpoint, Peer, SipAccount
from tests.admin.conftest import admin_url, form_payload, listed, messages_of, tool_url
from tests.admin.test_choices import peer_form


def test_creating_a_peer_opens_its_account_and_audits_it(cast, login):
    response = login(cast.operator).post(
        admin_url(Peer, "add"),
        peer_form(
            name="Acme",
            sell_rate_table=cast.a.sell_table.pk,
            reseller=cast.a.reseller.pk,
            currency="usd",
            account_mode="postpaid",
            credit_limit="25",
            nodes=[cast.node.pk],
        ),
    )
    assert response.status_code == 302
    peer = Peer.objects.get(name="Acme")
    account = Account.objects.get(peer=peer)
    assert (account.currency, account.mode, account.credit_limit, account.balance) == (
        "USD",
        "postpaid",
        Decimal("25"),
        Decimal("0"),
    )
    assert list(peer.nodes.all()) == [cast.node]
    audit = AuditEntry.objects.get(action="peer.created", object_id=str(peer.pk))
    assert (audit.actor, audit.reseller) == (cast.operator, cast.a.reseller)
    assert AuditEntry.objects.filter(action="account.opened", object_id=str(account.pk)).exists()


def test_a_refused_account_option_is_shown_and_nothing_is_created(cast, login):
    # A prepaid account with credit is refused by the account's validation, after the peer
    # was created in the same transaction: both must be gone.
    response = login(cast.a.staff).post(admin_url(Peer, "add"), peer_form(name="Acme", credit_limit="25"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credit_limit"] == [
        "A prepaid account has no credit limit."
    ]
    assert not Peer.objects.filter(name="Acme").exists()
    assert not AuditEntry.objects.filter(action="peer.created", object_repr="Acme").exists()


def test_reseller_staff_cannot_create_suppliers(cast, login):
    response = login(cast.a.staff).post(admin_url(Peer, "add"), peer_form(name="Carrier Y", role="supplier"))
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert not Peer.objects.filter(name="Carrier Y").exists()


def test_changing_a_peer_goes_through_update_peer(cast, login):
    peer = cast.a.customer
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(peer)))
    payload["max_calls"] = "30"
    assert client.post(admin_url(peer), payload).status_code == 302
    peer.refresh_from_db()
    assert peer.max_calls == 30
    audit = AuditEntry.objects.get(action="peer.changed", object_id=str(peer.pk))
    assert audit.data["changes"] == {"max_calls": [None, 30]}
    assert audit.actor == cast.a.staff


def inline_rows(payload, prefix, rows):
    payload[f"{prefix}-TOTAL_FORMS"] = str(int(payload[f"{prefix}-INITIAL_FORMS"]) + len(rows))
    start = int(payload[f"{prefix}-INITIAL_FORMS"])
    for index, row in enumerate(rows, start=start):
        for key, value in row.items():
            payload[f"{prefix}-{index}-{key}"] = value
    return payload


def test_inline_rows_are_added_through_the_services(cast, login):
    peer = cast.a.customer
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(peer)))
    inline_rows(
        payload,
        "endpoints",
        [{"ip": "203.0.113.5", "mask": "32", "port": "0", "transport": "any", "enabled": "on"}],
    )
    inline_rows(
        payload,
        "sip_accounts",
        [{"username": "office", "domain": "sip.example.com", "password": "Sup3rSecret99", "enabled": "on"}],
    )
    assert client.post(admin_url(peer), payload).status_code == 302
    endpoint = Endpoint.objects.get(peer=peer, ip="203.0.113.5")
    account = SipAccount.objects.get(peer=peer, username="office")
    assert account.ha1 == hashlib.md5(b"office:sip.example.com:Sup3rSecret99").hexdigest()
    assert AuditEntry.objects.filter(action="endpoint.created", object_id=str(endpoint.pk)).exists()
    assert AuditEntry.objects.filter(action="sipaccount.created", object_id=str(account.pk)).exists()
    page = client.get(admin_url(peer)).content.decode()
    assert account.ha1 not in page
    assert account.ha1_sha256 not in page


def test_a_refused_inline_row_rolls_back_the_whole_save(cast, login):
    peer = cast.a.customer
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(peer)))
    payload["max_calls"] = "30"
    inline_rows(
        payload,
        "sip_accounts",
        [{"username": "office", "domain": "sip.example.com", "password": "short", "enabled": "on"}],
    )
    response = client.post(admin_url(peer), payload)
    assert response.status_code == 200
    sip_formset = next(
        f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "sip_accounts"
    )
    assert sip_formset.forms[-1].errors["password"] == ["A SIP password has at least 10 characters."]
    peer.refresh_from_db()
    assert peer.max_calls is None
    assert not SipAccount.objects.filter(username="office").exists()


def test_a_sip_password_is_set_through_its_tool_and_never_shown(world, cast, login):
    account = world.a.sipaccount
    client = login(cast.a.staff)
    response = client.post(tool_url(account, "password"), {"password": "N3wPassword77"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.ha1 == hashlib.md5(b"pbx-a:sip.example.com:N3wPassword77").hexdigest()
    page = client.get(admin_url(account)).content.decode()
    assert account.ha1 not in page
    assert "ha1" not in page


def test_suspending_selected_peers_asks_for_a_reason_and_records_it(cast, login):
    client = login(cast.a.staff)
    url = admin_url(Peer, "changelist")
    selection = {"action": "suspend_selected", "_selected_action": [cast.a.customer.pk]}
    asked = client.post(url, selection)
    assert asked.status_code == 200
    assert "reason" in asked.context["form"].fields
    cast.a.customer.refresh_from_db()
    assert cast.a.customer.suspended_at is None
    response = client.post(url, {**selection, "apply": "1", "reason": "Unpaid invoice"}, follow=True)
    cast.a.customer.refresh_from_db()
    assert cast.a.customer.status == "suspended"
    assert cast.a.customer.suspended_reason == "Unpaid invoice"
    assert AuditEntry.objects.filter(action="peer.suspended", actor=cast.a.staff).exists()
    assert "1 peer(s) suspended." in messages_of(response)
    client.post(url, {"action": "resume_selected", "_selected_action": [cast.a.customer.pk]})
    cast.a.customer.refresh_from_db()
    assert cast.a.customer.status == "active"


def test_the_peer_list_shows_status_owner_and_balance(cast, login):
    page = login(cast.operator).get(admin_url(Peer, "changelist")).content.decode()
    assert "Reseller A" in page
    assert ">active<" in page
    assert "0.00 USD" in page
    staff_page = login(cast.a.staff).get(admin_url(Peer, "changelist")).content.decode()
    assert "Reseller A" not in staff_page  # the owner column is the operator's


def test_a_supplier_page_has_gateways_and_a_customer_page_has_none(cast, login):
    client = login(cast.operator)
    supplier = {
        f.formset.prefix for f in client.get(admin_url(cast.supplier)).context["inline_admin_formsets"]
    }
    customer = {
        f.formset.prefix for f in client.get(admin_url(cast.a.customer)).context["inline_admin_formsets"]
    }
    assert supplier == {"gateways", "rewrite_rules"}
    assert customer == {"endpoints", "sip_accounts", "rewrite_rules"}


def test_peer_search_finds_a_peer_by_name_or_source_address(world, cast, login):
    client = login(cast.operator)
    by_ip = listed(client.get(admin_url(Peer, "changelist"), {"q": "192.0.2.20"}))
    assert by_ip == {cast.b.customer.pk}
    by_name = listed(client.get(admin_url(Peer, "changelist"), {"q": "Customer"}))
    assert by_name == {cast.a.customer.pk, cast.b.customer.pk, cast.operator_customer.pk}
    # Reseller staff searching for another reseller's address find nothing.
    assert listed(login(cast.a.staff).get(admin_url(Peer, "changelist"), {"q": "192.0.2.20"})) == set()


def test_gateways_and_rewrite_rules_are_added_to_a_supplier_through_the_services(cast, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(cast.supplier)))
    inline_rows(
        payload,
        "gateways",
        [
            {
                "name": "gw1",
                "host": "203.0.113.10",
                "port": "5060",
                "transport": "tcp",
                "prefix": "",
                "strip_digits": "0",
                "priority": "0",
                "weight": "1",
                "enabled": "on",
            }
        ],
    )
    inline_rows(
        payload,
        "rewrite_rules",
        [
            {
                "direction": "egress",
                "field": "callee",
                "pattern": r"^(\d+)$",
                "replacement": r"00\1",
                "position": "0",
                "enabled": "on",
            }
        ],
    )
    assert client.post(admin_url(cast.supplier), payload).status_code == 302
    gateway = cast.supplier.gateways.get()
    rule = cast.supplier.rewrite_rules.get()
    assert (gateway.uri, rule.apply("331234")) == ("sip:203.0.113.10:5060;transport=tcp", "00331234")
    assert set(AuditEntry.objects.filter(actor=cast.operator).values_list("action", flat=True)) >= {
        "gateway.created",
        "rewriterule.created",
    }
