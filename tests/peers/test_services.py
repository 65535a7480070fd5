"""Peers are written only through services, which validate, scope and audit."""

import hashlib

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEntry
from apps.billing.models import Account
from apps.core.errors import DomainError, NotAllowed
from apps.peers import services
from apps.peers.models import Endpoint, Peer, RewriteRule, SipAccount
from apps.tenancy.scope import Scope
from tests.factories import make_peer, make_rate_table


def test_creating_a_peer_opens_its_account_and_audits(cast):
    actor = Scope.of_user(cast.a.staff)
    peer = services.create_peer(
        actor=actor, name="New PBX", role="customer", sell_rate_table_id=cast.a.sell_table.pk
    )
    assert peer.reseller == cast.a.reseller
    account = Account.objects.get(peer=peer)
    assert (account.currency, account.balance) == ("USD", 0)
    entry = AuditEntry.objects.get(action="peer.created", object_id=str(peer.pk))
    assert entry.actor == cast.a.staff
    assert entry.reseller_id == cast.a.reseller.pk


def test_reseller_staff_always_create_for_their_own_reseller(cast):
    peer = services.create_peer(
        actor=Scope.of_user(cast.a.staff), name="Sneaky", role="customer", reseller_id=cast.b.reseller.pk
    )
    assert peer.reseller_id == cast.a.reseller.pk


def test_a_reseller_cannot_use_another_resellers_price_list(cast):
    with pytest.raises(ValidationError) as error:
        services.create_peer(
            actor=Scope.of_user(cast.a.staff),
            name="X",
            role="customer",
            sell_rate_table_id=cast.b.sell_table.pk,
        )
    assert "sell_rate_table" in error.value.message_dict
    assert not Peer.objects.filter(name="X").exists()


def test_a_reseller_cannot_change_or_suspend_another_resellers_peer(cast):
    staff_b = Scope.of_user(cast.b.staff)
    with pytest.raises(NotAllowed):
        services.update_peer(cast.a.customer, actor=staff_b, changes={"max_calls": 1})
    with pytest.raises(NotAllowed):
        services.suspend_peer(cast.a.customer, actor=staff_b, reason="spite")
    cast.a.customer.refresh_from_db()
    assert (cast.a.customer.max_calls, cast.a.customer.suspended_at) == (None, None)


def test_suspension_needs_a_reason_and_can_be_lifted(cast, system):
    with pytest.raises(DomainError):
        services.suspend_peer(cast.a.customer, actor=system, reason=" ")
    peer = services.suspend_peer(cast.a.customer, actor=system, reason="unpaid invoice")
    assert (peer.status, peer.suspended_reason) == ("suspended", "unpaid invoice")
    assert not Peer.objects.active().filter(pk=peer.pk).exists()
    peer = services.resume_peer(peer, actor=system)
    assert peer.status == "active"
    assert list(
        AuditEntry.objects.filter(object_id=str(peer.pk), action__startswith="peer.s").values_list(
            "action", flat=True
        )
    ) == ["peer.suspended"]


def test_update_refuses_fields_that_are_not_settings(cast, system):
    with pytest.raises(NotAllowed):
        services.update_peer(cast.a.customer, actor=system, changes={"reseller_id": cast.b.reseller.pk})
    changed = services.update_peer(
        cast.a.customer, actor=system, changes={"max_calls": 30, "tech_prefix": "123"}
    )
    assert (changed.max_calls, changed.tech_prefix) == (30, "123")
    entry = AuditEntry.objects.filter(action="peer.changed").latest("id")
    assert entry.data["changes"]["max_calls"] == [None, 30]


@pytest.mark.parametrize(
    ("role", "reseller", "error_field"),
    [("supplier", True, "role"), ("customer", False, None)],
)
def test_suppliers_belong_to_the_operator(cast, system, role, reseller, error_field):
    owner = cast.a.reseller.pk if reseller else None
    if error_field:
        with pytest.raises(ValidationError) as error:
            services.create_peer(actor=system, name="Z", role=role, reseller_id=owner)
        assert error_field in error.value.message_dict
    else:
        assert services.create_peer(actor=system, name="Z", role=role, reseller_id=owner).pk


def test_an_endpoint_is_a_network_and_cannot_be_shared_without_a_tech_prefix(cast, system):
    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.0", mask=24)
    with pytest.raises(ValidationError):
        services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.1", mask=24)  # host bits set
    with pytest.raises(ValidationError):
        services.add_endpoint(cast.b.customer, actor=system, ip="192.0.2.0", mask=24)
    services.update_peer(cast.b.customer, actor=system, changes={"tech_prefix": "777"})
    cast.b.customer.refresh_from_db()
    services.add_endpoint(cast.b.customer, actor=system, ip="192.0.2.0", mask=24)
    assert Endpoint.objects.filter(ip="192.0.2.0").count() == 2


def test_suppliers_get_gateways_and_customers_do_not(cast, system):
    gateway = services.add_gateway(
        cast.supplier, actor=system, name="gw1", host="203.0.113.10", transport="tcp"
    )
    assert gateway.uri == "sip:203.0.113.10:5060;transport=tcp"
    with pytest.raises(ValidationError):
        services.add_gateway(cast.a.customer, actor=system, name="gw1", host="203.0.113.11")


def test_sip_accounts_store_only_digests(cast, system):
    account = services.add_sip_account(
        cast.a.customer, actor=system, username="pbx100", domain="sip.example.com", password="Corr3ct-Horse"
    )
    stored = SipAccount.objects.get(pk=account.pk)
    assert stored.ha1 == hashlib.md5(b"pbx100:sip.example.com:Corr3ct-Horse").hexdigest()
    assert stored.ha1_sha256 == hashlib.sha256(b"pbx100:sip.example.com:Corr3ct-Horse").hexdigest()
    assert "Corr3ct-Horse" not in str(SipAccount.objects.filter(pk=account.pk).values().get())
    with pytest.raises(DomainError):
        services.add_sip_account(
            cast.a.customer, actor=system, username="pbx101", domain="sip.example.com", password="short"
        )


def test_a_customer_can_change_its_own_sip_password_only(cast, system):
    mine = services.add_sip_account(
        cast.a.customer, actor=system, username="a1", domain="sip.example.com", password="Initial-pass-1"
    )
    theirs = services.add_sip_account(
        cast.b.customer, actor=system, username="b1", domain="sip.example.com", password="Initial-pass-1"
    )
    before = theirs.ha1
    services.set_sip_password(mine, actor=Scope.of_user(cast.a.customer_user), password="Another-pass-2")
    with pytest.raises(NotAllowed):
        services.set_sip_password(
            theirs, actor=Scope.of_user(cast.a.customer_user), password="Another-pass-2"
        )
    theirs.refresh_from_db()
    assert theirs.ha1 == before


def test_rewrite_rules_are_valid_regular_expressions(cast, system):
    rule = services.add_rewrite_rule(
        cast.a.customer, actor=system, field="callee", pattern=r"^00(\d+)$", replacement=r"\1"
    )
    assert rule.apply("0044123") == "44123"
    with pytest.raises(ValidationError):
        services.add_rewrite_rule(cast.a.customer, actor=system, field="callee", pattern="(unclosed")
    with pytest.raises(ValidationError):
        services.add_rewrite_rule(
            cast.a.customer, actor=system, field="callee", pattern=r"^(\d+)$", replacement=r"\2"
        )
    assert RewriteRule.objects.count() == 1


def test_visibility_follows_the_owner(cast):
    extra = make_peer(
        "A second",
        reseller=cast.a.reseller,
        sell_rate_table_id=make_rate_table("Retail A2", reseller=cast.a.reseller).pk,
    )
    assert set(Peer.objects.visible_to(cast.a.staff)) == {cast.a.customer, extra}
    assert set(Peer.objects.visible_to(Scope.of_user(cast.b.customer_user))) == {cast.b.customer}
    assert Peer.objects.visible_to(None).count() == 0


def test_gateways_accept_ipv6_and_host_names_but_not_junk(cast, system):
    v6 = services.add_gateway(cast.supplier, actor=system, name="v6", host="2001:db8::10")
    assert v6.uri == "sip:[2001:db8::10]:5060"
    services.add_gateway(cast.supplier, actor=system, name="dns", host="sip.carrier.example")
    with pytest.raises(ValidationError) as error:
        services.add_gateway(cast.supplier, actor=system, name="bad", host="not a host!")
    assert "host" in error.value.message_dict


def test_duplicate_names_are_reported_on_the_name_field_for_every_owner(cast, system):
    for owner in (cast.a.reseller.pk, None):
        services.create_peer(actor=system, name="Twin", role="customer", reseller_id=owner)
        with pytest.raises(ValidationError) as error:
            services.create_peer(actor=system, name="Twin", role="customer", reseller_id=owner)
        assert list(error.value.message_dict) == ["name"]


@pytest.mark.parametrize(
    ("theirs", "mine", "clash"),
    [
        (("198.51.100.0", 24, 0, "any"), ("198.51.100.9", 32, 5060, "udp"), True),  # inside their network
        (("198.51.100.0", 24, 5060, "udp"), ("198.51.100.0", 23, 0, "any"), True),  # around it
        (("198.51.100.0", 24, 5060, "udp"), ("198.51.100.0", 24, 5062, "udp"), False),  # other port
        (("198.51.100.0", 24, 5060, "tcp"), ("198.51.100.0", 24, 5060, "udp"), False),  # other transport
        (("198.51.100.0", 24, 0, "any"), ("198.51.101.0", 24, 0, "any"), False),  # next door
    ],
)
def test_overlapping_endpoints_of_two_peers_need_distinct_tech_prefixes(cast, system, theirs, mine, clash):
    ip, mask, port, transport = theirs
    services.add_endpoint(cast.a.customer, actor=system, ip=ip, mask=mask, port=port, transport=transport)
    ip, mask, port, transport = mine
    add = lambda: services.add_endpoint(  # noqa: E731
        cast.b.customer, actor=system, ip=ip, mask=mask, port=port, transport=transport
    )
    if clash:
        with pytest.raises(ValidationError) as error:
            add()
        assert "ip" in error.value.message_dict
    else:
        assert add().pk


def test_changing_a_tech_prefix_cannot_create_a_clash(cast, system):
    services.update_peer(cast.a.customer, actor=system, changes={"tech_prefix": "11"})
    services.add_endpoint(cast.a.customer, actor=system, ip="198.51.100.9")
    services.add_endpoint(cast.b.customer, actor=system, ip="198.51.100.9")
    with pytest.raises(ValidationError):
        services.update_peer(cast.b.customer, actor=system, changes={"tech_prefix": "11"})
    cast.b.customer.refresh_from_db()
    assert cast.b.customer.tech_prefix == ""


def test_an_endpoint_cannot_be_the_whole_internet(cast, system):
    with pytest.raises(ValidationError) as error:
        services.add_endpoint(cast.a.customer, actor=system, ip="0.0.0.0", mask=0)  # noqa: S104
    assert "mask" in error.value.message_dict


def test_a_price_list_and_its_account_share_one_currency(cast, system):
    from apps.core.errors import DomainError as Refused

    with pytest.raises(Refused) as error:
        services.create_peer(
            actor=system,
            name="Euro Co",
            role="customer",
            sell_rate_table_id=cast.operator_customer.sell_rate_table_id,
            currency="EUR",
        )
    assert error.value.field == "sell_rate_table"
    assert not Peer.objects.filter(name="Euro Co").exists()
    euro = make_rate_table("Euro retail", currency="EUR")
    with pytest.raises(Refused):
        services.update_peer(cast.operator_customer, actor=system, changes={"sell_rate_table_id": euro.pk})
    cast.operator_customer.refresh_from_db()
    assert cast.operator_customer.sell_rate_table.currency == "USD"


def test_only_the_operator_assigns_nodes(cast, system):
    with pytest.raises(NotAllowed):
        services.assign_peer_to_nodes(cast.a.customer, [cast.node], actor=Scope.of_user(cast.a.staff))
    services.assign_peer_to_nodes(cast.a.customer, [cast.node], actor=system)
    assert list(cast.a.customer.nodes.all()) == [cast.node]
