"""Change events: what a service announces reaches call control's snapshot in another thread.

These tests commit for real (transaction=True) and read the snapshot from another thread,
with its own database connection, the way another process of the node would: nothing here
calls snapshot.forget(), which would hide a change call control was never told about.
"""

import asyncio
import threading
import time
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django_q.models import Schedule

from apps.billing import services as billing
from apps.callcontrol import snapshot
from apps.callcontrol.generation import current_generation
from apps.core import changes, events
from apps.core.changes import Change, announce
from apps.nodes import services as node_services
from apps.nodes.models import ClusterSettings, EngineSync
from apps.opensips import provisioning
from apps.opensips.models import Address, DrGateway
from apps.peers import services as peer_services
from apps.peers.models import Endpoint, Peer
from apps.routing.quality import refresh_quality_stats
from apps.tenancy.scope import Scope
from tests.factories import make_peer, make_rate_table, make_reseller
from tests.ports import free_port

SYSTEM = Scope.system()
CHECK_SECONDS = 0.05


@pytest.fixture
def quick_snapshot(monkeypatch):
    """Call control checks its snapshot against the database every CHECK_SECONDS."""
    monkeypatch.setattr(snapshot, "CHECK_SECONDS", CHECK_SECONDS)


def in_another_thread(func):
    """Run `func` in a new thread with its own database connection; return what it returned."""
    outcome = {}

    def run():
        try:
            outcome["value"] = func()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the other thread did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def seen_by_call_control(read):
    """What `read(snapshot)` gives in another thread once the refresh interval has passed."""
    time.sleep(CHECK_SECONDS * 2)
    return in_another_thread(lambda: read(snapshot.current()))


@pytest.mark.django_db(transaction=True)
def test_a_suspended_customer_is_seen_suspended_by_call_control_within_the_refresh_interval(
    quick_snapshot,
):
    ClusterSettings.load()  # as in production: the row is there before call control reads it
    customer = make_peer("Acme")
    assert seen_by_call_control(lambda s: s.peers[customer.pk].suspended_reason) is None

    peer_services.suspend_peer(customer, actor=SYSTEM, reason="unpaid invoices")

    assert seen_by_call_control(lambda s: s.peers[customer.pk].suspended_reason) == "unpaid invoices"

    peer_services.resume_peer(customer, actor=SYSTEM)

    assert seen_by_call_control(lambda s: s.peers[customer.pk].suspended_reason) is None


# --- announce: batches, rollbacks, autocommit ---------------------------------------------

RECEIVED: list[list[Change]] = []


def record(batch):
    """An after-commit consumer for these tests: keeps every batch it is given."""
    RECEIVED.append(list(batch))


def explode(batch):
    raise RuntimeError("a consumer that always fails")


@pytest.fixture
def recorded(monkeypatch):
    """The batches after-commit consumers receive, in order (the real consumers still run)."""
    RECEIVED.clear()
    monkeypatch.setattr(changes, "AFTER_COMMIT", (*changes.AFTER_COMMIT, f"{__name__}.record"))
    yield RECEIVED
    RECEIVED.clear()


@pytest.fixture
def customer(transactional_db):
    ClusterSettings.load()
    return make_peer("Acme")


@pytest.mark.django_db(transaction=True)
def test_one_transaction_is_one_batch_one_change_per_kind_and_one_bump(customer, recorded):
    before = current_generation()
    with transaction.atomic():
        peer_services.suspend_peer(customer, actor=SYSTEM, reason="fraud")
        endpoint = peer_services.add_endpoint(customer, actor=SYSTEM, ip="192.0.2.10")
        peer_services.update_peer(customer, actor=SYSTEM, changes={"max_calls": 2})
        assert recorded == []  # nothing before the commit

    assert recorded == [
        [
            Change(
                "peers.Peer",
                frozenset({customer.pk}),
                frozenset({"suspended_at", "suspended_reason", "max_calls"}),
            ),
            Change("peers.Endpoint", frozenset({endpoint.pk})),
        ]
    ]
    assert current_generation() == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_announces_nothing_and_provisions_nothing(customer, recorded):
    before = current_generation()
    with pytest.raises(RuntimeError), transaction.atomic():
        peer_services.add_endpoint(customer, actor=SYSTEM, ip="192.0.2.10")
        assert Address.objects.filter(ip="192.0.2.10").exists()  # synced in the transaction
        raise RuntimeError("changed my mind")

    assert recorded == []
    assert current_generation() == before
    assert not Address.objects.exists()
    assert not EngineSync.objects.filter(pending_address=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_savepoint_rolled_back_takes_its_announcements_with_it(customer, recorded):
    with transaction.atomic():
        announce("peers.Peer", [customer.pk])
        with pytest.raises(RuntimeError), transaction.atomic():
            announce("peers.Gateway", [1])
            raise RuntimeError("inner part refused")
        announce("peers.Endpoint", [2])

    assert [[change.kind for change in batch] for batch in recorded] == [["peers.Peer", "peers.Endpoint"]]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_every_consumer_runs_at_once(customer, recorded):
    endpoint = Endpoint.objects.create(peer=customer, ip="192.0.2.10")  # as a script would
    before = current_generation()

    announce("peers.Endpoint", [endpoint.pk])

    assert recorded == [[Change("peers.Endpoint", frozenset({endpoint.pk}))]]
    assert current_generation() == before + 1
    assert Address.objects.filter(ip="192.0.2.10").exists()


def test_a_misspelt_kind_is_refused(db):
    with pytest.raises(LookupError):
        announce("peers.Pear", [1])


@pytest.mark.django_db(transaction=True)
def test_a_failing_after_commit_consumer_is_logged_and_the_others_still_run(
    customer, recorded, monkeypatch, caplog
):
    monkeypatch.setattr(changes, "AFTER_COMMIT", (f"{__name__}.explode", *changes.AFTER_COMMIT))
    before = current_generation()

    peer_services.suspend_peer(customer, actor=SYSTEM, reason="fraud")

    assert "change consumer explode failed on peers.Peer" in caplog.text
    assert [[change.kind for change in batch] for batch in recorded] == [["peers.Peer"]]
    assert current_generation() == before + 1
    assert Peer.objects.get(pk=customer.pk).is_suspended


def test_a_failing_table_sync_rolls_the_service_back(cast, system, monkeypatch):
    def broken(tables):
        raise RuntimeError("the address table is unwritable")

    monkeypatch.setattr(provisioning, "sync_tables", broken)
    with pytest.raises(RuntimeError):
        peer_services.add_endpoint(cast.a.customer, actor=system, ip="192.0.2.10")
    assert not Endpoint.objects.filter(ip="192.0.2.10").exists()


# --- the OpenSIPS tables: in the announcing transaction ----------------------------------


def test_a_suspended_supplier_has_its_gateways_disabled_in_the_same_transaction(cast, system):
    gateway = peer_services.add_gateway(cast.supplier, actor=system, name="gw1", host="192.0.2.1")
    assert DrGateway.objects.get(gwid=str(gateway.pk)).state == provisioning.GATEWAY_ENABLED

    peer_services.suspend_peer(cast.supplier, actor=system, reason="quality")

    assert DrGateway.objects.get(gwid=str(gateway.pk)).state == provisioning.GATEWAY_DISABLED
    # The gateway's address (group 2: a supplier's calls to our DIDs) and its drouting row.
    assert EngineSync.objects.get(node=cast.node).pending_modules == ["address", "drouting"]


@pytest.mark.parametrize(
    ("change", "tables"),
    [
        (Change("peers.Endpoint", frozenset({1})), ["address"]),
        (Change("peers.Peer", fields=frozenset({"max_calls"})), []),
        (Change("peers.Peer", fields=frozenset({"suspended_at", "suspended_reason"})), ["dr_gateways"]),
        (
            Change("peers.Peer", fields=frozenset({"enabled"})),
            ["address", "subscriber", "dr_gateways", "registrant"],
        ),
        (Change("peers.Peer"), ["address", "subscriber", "dr_gateways", "registrant"]),
        (Change("nodes.Node", fields=frozenset({"call_control_secret"})), []),
        (Change("nodes.ClusterSettings", fields=frozenset({"origination_mode"})), ["registrant"]),
        (Change("routing.Route"), []),
    ],
)
def test_each_change_syncs_the_tables_made_from_it(db, change, tables):
    assert provisioning.tables_for(change) == tables


def test_a_peer_without_rows_in_a_table_leaves_that_table_alone(cast):
    gateway_only = Change("peers.Peer", frozenset({cast.supplier.pk}))
    assert provisioning.tables_for(gateway_only) == []
    peer_services.add_gateway(cast.supplier, actor=Scope.system(), name="gw1", host="192.0.2.1")
    assert provisioning.tables_for(gateway_only) == ["address", "dr_gateways"]


# --- the Channels groups ------------------------------------------------------------------


@pytest.fixture
def channel_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


def listen(layer, group: str) -> str:
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def next_event(layer, channel: str, timeout: float = 1.0):
    async def receive():
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(receive)()


@pytest.mark.django_db(transaction=True)
def test_a_committed_change_is_sent_to_the_changes_group_and_its_kinds_group(customer, channel_layer):
    everything = listen(channel_layer, events.CHANGES)
    peers = listen(channel_layer, events.group_for("peers.Peer"))
    endpoints = listen(channel_layer, events.group_for("peers.Endpoint"))

    peer_services.suspend_peer(customer, actor=SYSTEM, reason="fraud")

    expected = {"type": "change.announced", "kind": "peers.Peer", "ids": [customer.pk]}
    assert next_event(channel_layer, everything) == expected
    assert next_event(channel_layer, peers) == expected
    with pytest.raises(TimeoutError):
        next_event(channel_layer, endpoints, timeout=0.1)
    with pytest.raises(TimeoutError):
        next_event(channel_layer, everything, timeout=0.1)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_is_not_sent(customer, channel_layer):
    everything = listen(channel_layer, events.CHANGES)
    with pytest.raises(RuntimeError), transaction.atomic():
        peer_services.suspend_peer(customer, actor=SYSTEM, reason="fraud")
        raise RuntimeError("changed my mind")
    with pytest.raises(TimeoutError):
        next_event(channel_layer, everything, timeout=0.1)


@pytest.mark.django_db(transaction=True)
def test_a_channel_layer_that_cannot_be_reached_never_fails_a_service(customer, settings, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    before = current_generation()

    peer = peer_services.suspend_peer(customer, actor=SYSTEM, reason="fraud")

    assert peer.is_suspended
    assert current_generation() == before + 1
    assert "change events not broadcast (peers.Peer)" in caplog.text


def test_an_event_naming_too_many_rows_says_some_or_all():
    many = Change("peers.BlocklistEntry", frozenset(range(events.MAX_IDS + 1)))
    assert events.change_event(many)["ids"] == []
    few = Change("peers.BlocklistEntry", frozenset({3, 1, 2}))
    assert events.change_event(few)["ids"] == [1, 2, 3]


# --- what call control does not hold is announced too -------------------------------------


def _register(cast, system):
    return peer_services.add_registration(
        cast.supplier,
        actor=system,
        node=cast.node,
        registrar="sip:registrar.example",
        aor="sip:4420@carrier.example",
        username="4420",
        password="pw",
    )


def _set_sip_password(cast, system):
    account = peer_services.add_sip_account(
        cast.a.customer, actor=system, username="pbx", domain="sip.test", password="secret12345"
    )
    return peer_services.set_sip_password(account, actor=system, password="another9876")


def _refresh_quality(cast, system):
    refresh_quality_stats()


ANNOUNCED_ELSEWHERE = {
    "add_registration": (_register, "peers.Registration"),
    "set_sip_password": (_set_sip_password, "peers.SipAccount"),
    "create_reseller": (lambda cast, system: make_reseller("Reseller C"), "tenancy.Reseller"),
    "update_account": (
        lambda cast, system: billing.update_account(
            cast.operator_customer.account, actor=system, changes={"credit_limit": Decimal("50")}
        ),
        "billing.Account",
    ),
    "open_account": (lambda cast, system: make_peer("Newcomer").account, "billing.Account"),
    "create_rate_table": (lambda cast, system: make_rate_table("Spare"), "rates.RateTable"),
    "refresh_quality_stats": (_refresh_quality, "routing.QualityStat"),
}


@pytest.mark.parametrize("verb", ANNOUNCED_ELSEWHERE)
def test_verbs_whose_changes_call_control_does_not_hold_announce_them_too(
    cast, system, recorded, verb, django_capture_on_commit_callbacks
):
    act, kind = ANNOUNCED_ELSEWHERE[verb]
    with django_capture_on_commit_callbacks(execute=True):
        written = act(cast, system)
    announced = {change.kind: change.ids for batch in recorded for change in batch}
    assert kind in announced
    if written is not None:
        assert written.pk in announced[kind]


@pytest.mark.django_db(transaction=True)
def test_a_node_disabled_through_the_service_loses_its_schedule_rows():
    Schedule.objects.all().delete()
    node_services.create_node(
        actor=SYSTEM, name="node1", management_address="10.1.0.1", sip_address="100.64.1.1"
    )
    second = node_services.create_node(
        actor=SYSTEM, name="node2", management_address="10.1.0.2", sip_address="100.64.1.2"
    )
    assert set(Schedule.objects.values_list("cluster", flat=True)) == {"node1", "node2"}

    node_services.update_node(second, actor=SYSTEM, changes={"enabled": False})

    assert set(Schedule.objects.values_list("cluster", flat=True)) == {"node1"}
