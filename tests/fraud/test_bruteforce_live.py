"""Issue 16, test (c), through real OpenSIPS nodes (the switch of tests/opensips/switch.py):
20 wrong passwords from one address on node1, and that address's next INVITE with the right
password is refused on node2 too, until the ban ends (a person's undo, or its expiry).

The nodes report each failed digest to call control under uvicorn, which bans the address;
the nodes reload the `address` table as the reload task the ban queued does
(apps.nodes.sync.reload_node: no task worker runs here).
"""

from datetime import timedelta

import pytest
from django.test import override_settings

from apps.fraud import services
from apps.fraud.models import Action, Alert, AuthFailure, Controller, Kind
from apps.nodes import sync
from apps.nodes.models import EngineSync, Node
from apps.opensips.models import Address
from apps.tenancy.scope import Scope
from tests.opensips.switch import (
    BERLIN,
    Switch,
    orm_fixture,  # noqa: F401  (the fixture "orm")
    sipp,
    switch_fixture,  # noqa: F401  (the fixture "switch")
)
from tests.opensips.test_live_calls import wait_for

ATTACKER_IP = "127.0.0.51"  # nobody else in the switch calls from it
ATTEMPTS = 20


@pytest.fixture
def controller(orm):
    controller = Controller.objects.create(
        name="SIP brute force (live)",
        kind=Kind.SIP_AUTH,
        action=Action.BLOCK,
        window_minutes=10,
        min_count=ATTEMPTS,
        account_limit=None,  # the right password must still work once the ban ends
        block_minutes=30,
    )
    yield controller
    for alert in Alert.objects.open():
        services.end_alert(alert)
    AuthFailure.objects.all().delete()
    controller.delete()


def digest_call(switch: Switch, port: int, password: str, *, calls: int = 1):
    """alice@sip.test calling Berlin from ATTACKER_IP with `password`."""
    return sipp(
        port,
        source=ATTACKER_IP,
        callee=BERLIN,
        scenario="uac_digest.xml",
        hold_ms=500,
        calls=calls,
        extra=["-key", "caller", "alice", "-key", "domain", "sip.test", "-au", "alice", "-ap", password],
    )


def reload_nodes(switch: Switch) -> None:
    """What each node's queued reload task does: reload what is pending, over its own MI."""
    for name, mi in (("node1", switch.node1_mi), ("node2", switch.node2_mi)):
        node = Node.objects.get(name=name)
        assert EngineSync.objects.get(node=node).pending_address
        with override_settings(OPENSIPS_MI_URL=mi.replace("127.0.0.1", "{address}")):
            outcome = sync.reload_node(node)
        assert outcome.ok and "address" in outcome.reloaded, outcome


def ban(switch: Switch) -> Alert:
    """20 wrong passwords on node1; the ban they raise, in force on both nodes."""
    start = AuthFailure.objects.filter(source_ip=ATTACKER_IP).count()
    digest_call(switch, switch.node1_port, "wrong-" + switch.phone_password, calls=ATTEMPTS)
    alert = wait_for(
        lambda: Alert.objects.open().filter(effect=Alert.Effect.BAN_ADDRESS, source_ip=ATTACKER_IP).first(),
        what="the ban of the address",
    )
    # Each wrong digest was reported once; the 20 challenges of requests without
    # credentials were not.
    wait_for(
        lambda: AuthFailure.objects.filter(source_ip=ATTACKER_IP).count() >= start + ATTEMPTS,
        what="every failure counted",
    )
    assert AuthFailure.objects.filter(source_ip=ATTACKER_IP).count() == start + ATTEMPTS
    assert Address.objects.filter(grp=90, ip=ATTACKER_IP).exists()
    reload_nodes(switch)
    return alert


def assert_refused(call) -> None:
    assert "SIP/2.0 403 Forbidden" in call.messages, call.log
    assert "SIP/2.0 407" not in call.messages, call.log


def test_a_brute_forced_address_is_refused_on_every_node_until_the_ban_ends(switch: Switch, controller):
    alert = ban(switch)

    # The right password, on the other node: refused before any challenge.
    assert_refused(digest_call(switch, switch.node2_port, switch.phone_password))
    assert_refused(digest_call(switch, switch.node1_port, switch.phone_password))

    # A person undoes the ban: the row goes, the nodes reload, the call goes through.
    services.undo_alert(alert, actor=Scope.system(), reason="live test")
    assert not Address.objects.filter(grp=90).exists()
    reload_nodes(switch)
    call = digest_call(switch, switch.node2_port, switch.phone_password)
    assert call.returncode == 0, call.log

    # Banned again by 20 more (counted from the undo), then the ban runs out.
    alert = ban(switch)
    assert_refused(digest_call(switch, switch.node2_port, switch.phone_password))
    assert services.end_expired(now=alert.ends_at + timedelta(seconds=1)) == 1
    reload_nodes(switch)
    call = digest_call(switch, switch.node2_port, switch.phone_password)
    assert call.returncode == 0, call.log
