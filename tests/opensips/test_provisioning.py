"""OpenSIPS's provisioned tables follow the peers services, and only them."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.opensips import provisioning, tasks
from apps.opensips.models import TABLE_VERSIONS, Address, DrGateway, Subscriber, Version
from apps.peers import services
from apps.peers.models import Peer
from tests.factories import make_peer


@pytest.fixture
def reloads(monkeypatch):
    """The modules each committed change asked the nodes to reload, in order."""
    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(provisioning, "request_reload", lambda *modules: asked.append(modules))
    return asked


def addresses():
    return sorted(Address.objects.values_list("grp", "ip", "mask", "port", "proto", "context_info"))


def test_an_endpoint_added_shows_up_in_address_and_asks_for_a_permissions_reload(
    cast, system, reloads, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.10", port=5060, transport="udp")
    assert addresses() == [(1, "192.0.2.10", 32, 5060, "udp", str(cast.a.customer.pk))]
    assert reloads == [("address",)]


def test_endpoint_changes_and_removal_follow_the_service(cast, system, reloads):
    endpoint = services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.0", mask=24)
    assert addresses() == [(1, "192.0.2.0", 24, 0, "any", str(cast.a.customer.pk))]
    services.update_child(endpoint, actor=system, changes={"transport": "tcp", "port": 5070})
    assert addresses() == [(1, "192.0.2.0", 24, 5070, "tcp", str(cast.a.customer.pk))]
    services.update_child(endpoint, actor=system, changes={"enabled": False})
    assert addresses() == []
    services.update_child(endpoint, actor=system, changes={"enabled": True})
    services.remove_child(endpoint, actor=system)
    assert addresses() == []


def test_sip_accounts_are_provisioned_as_digests_without_password(cast, system):
    account = services.add_sip_account(
        cast.a.customer, actor=system, username="pbx1", domain="sip.example.com", password="secret12345"
    )
    row = Subscriber.objects.get()
    assert (row.username, row.domain, row.password) == ("pbx1", "sip.example.com", "")
    assert (row.ha1, row.ha1_sha256) == services.sip_digests("pbx1", "sip.example.com", "secret12345")
    services.set_sip_password(account, actor=system, password="another9876")
    row.refresh_from_db()
    assert row.ha1 == services.sip_digests("pbx1", "sip.example.com", "another9876")[0]
    services.remove_child(account, actor=system)
    assert not Subscriber.objects.exists()


def test_gateways_are_provisioned_with_our_id_and_state(
    cast, system, reloads, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        gateway = services.add_gateway(
            cast.supplier, actor=system, name="gw1", host="198.51.100.7", port=5080, probing=True
        )
    row = DrGateway.objects.get()
    assert (row.gwid, row.type, row.address, row.strip, row.pri_prefix) == (
        str(gateway.pk),
        1,
        "198.51.100.7:5080",
        0,
        "",
    )
    assert (row.probe_mode, row.state, row.socket, row.description) == (1, 0, None, "Carrier X / gw1")
    # Its address is the supplier's (group 2): calls from there deliver to our DIDs.
    assert list(Address.objects.values_list("grp", "ip", "mask", "port", "proto", "context_info")) == [
        (Address.SUPPLIER_GROUP, "198.51.100.7", 32, 0, "any", str(cast.supplier.pk))
    ]
    assert reloads == [("address", "drouting")]
    services.update_child(gateway, actor=system, changes={"enabled": False})
    row.refresh_from_db()
    assert row.state == 1
    assert not Address.objects.exists()
    services.update_child(gateway, actor=system, changes={"enabled": True, "transport": "tcp"})
    row.refresh_from_db()
    assert (row.state, row.address) == (0, "198.51.100.7:5080;transport=tcp")
    services.suspend_peer(cast.supplier, actor=system, reason="unpaid invoice")
    row.refresh_from_db()
    assert row.state == 1


def test_a_gateway_named_by_host_name_has_no_address_row(cast, system):
    services.add_gateway(cast.supplier, actor=system, name="gw1", host="sbc.carrier.example", port=5060)
    assert DrGateway.objects.count() == 1
    assert not Address.objects.exists()


def test_a_disabled_peer_disappears_and_comes_back(cast, system):
    peer = cast.a.customer
    services.add_endpoint(peer, actor=system, ip="192.0.2.20")
    services.add_sip_account(
        peer, actor=system, username="pbx2", domain="example.com", password="secret12345"
    )
    services.add_endpoint(cast.b.customer, actor=system, ip="192.0.2.30")
    services.update_peer(peer, actor=system, changes={"enabled": False})
    assert [row[1] for row in addresses()] == ["192.0.2.30"]
    assert not Subscriber.objects.exists()
    services.update_peer(peer, actor=system, changes={"enabled": True})
    assert [row[1] for row in addresses()] == ["192.0.2.20", "192.0.2.30"]
    assert Subscriber.objects.count() == 1


def test_a_suspended_customer_keeps_its_addresses_for_call_control_to_refuse(cast, system):
    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.40")
    services.suspend_peer(cast.a.customer, actor=system, reason="fraud check")
    assert [row[1] for row in addresses()] == ["192.0.2.40"]


def test_resync_is_idempotent_and_asks_for_no_reload(
    cast, system, reloads, django_capture_on_commit_callbacks
):
    provisioning.sync_versions()  # an earlier transactional test may have flushed them
    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.50")
    services.add_gateway(cast.supplier, actor=system, name="gw", host="gw.example.net")
    before = (addresses(), list(DrGateway.objects.values()))
    assert reloads == [("address",), ("drouting",)]
    reloads.clear()
    with django_capture_on_commit_callbacks(execute=True):
        results = provisioning.sync_tables()
    assert [r.changed for r in results] == [False] * len(provisioning.ALL_TABLES)
    assert (addresses(), list(DrGateway.objects.values())) == before
    assert reloads == []


def test_drift_is_reported_by_check_and_repaired_by_sync(cast, system, capsys):
    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.60")
    services.add_gateway(cast.supplier, actor=system, name="gw", host="gw.example.net")
    call_command("sync_opensips_tables", "--check")  # in step: exits normally
    # Hands in the tables: a stray address, a tampered gateway, a duplicated address.
    Address.objects.create(grp=1, ip="203.0.113.66", mask=32, port=0, proto="any", context_info="999")
    Address.objects.create(
        grp=1, ip="192.0.2.60", mask=32, port=0, proto="any", context_info=str(cast.a.customer.pk)
    )
    DrGateway.objects.update(address="evil.example:5060")
    with pytest.raises(CommandError) as failure:
        call_command("sync_opensips_tables", "--check")
    assert failure.value.returncode == 1
    assert "address, dr_gateways" in str(failure.value)
    assert Address.objects.count() == 3  # --check writes nothing
    call_command("sync_opensips_tables")
    assert "address: +0 ~0 -2" in capsys.readouterr().out
    assert [row[1] for row in addresses()] == ["192.0.2.60"]
    assert DrGateway.objects.get().address == "gw.example.net:5060"
    call_command("sync_opensips_tables", "--check")


def test_user_role_peers_are_customers_and_suppliers_in_the_tables(db, system):
    peer = make_peer("Both ways", role=Peer.Role.USER)
    services.add_endpoint(peer, actor=system, ip="192.0.2.70")
    gateway = services.add_gateway(peer, actor=system, name="back", host="192.0.2.70")
    assert [row[1] for row in addresses()] == ["192.0.2.70"]
    assert DrGateway.objects.get().gwid == str(gateway.pk)


def test_a_change_marks_only_the_changed_modules_pending_on_every_node(cast, system):
    pytest.importorskip("apps.nodes.sync", reason="apps.nodes.sync (engine reloads) is not merged")
    from apps.nodes.models import EngineSync

    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.80")
    assert EngineSync.objects.get(node=cast.node).pending_modules == ["address"]
    services.add_sip_account(
        cast.a.customer, actor=system, username="p9", domain="example.com", password="secret12345"
    )
    services.add_gateway(cast.supplier, actor=system, name="gw9", host="192.0.2.90")
    assert EngineSync.objects.get(node=cast.node).pending_modules == ["address", "drouting"]


def test_the_version_rows_opensips_checks_are_restored_by_a_resync(db):
    Version.objects.all().delete()
    Version.objects.create(table_name="acc", table_version=6)
    result = provisioning.sync_versions()
    assert (result.inserted, result.updated) == (len(TABLE_VERSIONS) - 1, 1)
    assert dict(Version.objects.values_list("table_name", "table_version")) == TABLE_VERSIONS


def test_the_periodic_repair_restores_a_row_a_concurrent_writer_lost(cast, system, reloads):
    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.70")
    Address.objects.all().delete()  # as a writer on another node that diffed without it would
    reloads.clear()
    assert tasks.repair_tables().startswith("repaired")
    assert "192.0.2.70" in [row.ip for row in Address.objects.all()]
    assert ("address",) in reloads
    assert tasks.repair_tables() == "in step"


def test_a_writer_diffs_what_is_committed_once_it_holds_the_lock(cast, system, monkeypatch):
    # Read before the lock, a writer that waited would delete the rows just committed by the
    # one it waited for: the wanted rows must be read after the lock is taken.
    services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.71")
    order = []
    real_rows = provisioning.address_rows
    real_lock = provisioning.Version.objects.select_for_update

    def rows():
        order.append("rows")
        return real_rows()

    def lock(*args, **kwargs):
        order.append("lock")
        return real_lock(*args, **kwargs)

    monkeypatch.setattr(provisioning, "address_rows", rows)
    monkeypatch.setattr(provisioning.Version.objects, "select_for_update", lock)
    provisioning.sync_addresses()
    assert order == ["lock", "rows"]
