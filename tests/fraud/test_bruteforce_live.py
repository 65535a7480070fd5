"""Issue 16, test (c), through real OpenSIPS nodes (the switch of tests/opensips/switch.py):
20 wrong passwords from one address on node1, and that address's next INVITE with the right
password is refused on node2 too, until the ban ends (a person's undo, or its expiry); and a
SIP account locked after its own limit fails with the right password until it is unlocked.

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

ATTACKER_IP = "127.0.0.51"  # nobody else in the switch calls from these
GUESSER_IP = "127.0.0.52"
ATTEMPTS = 20


def make_controller(**fields) -> Controller:
    values = {"window_minutes": 10, "block_minutes": 30, **fields}
    return Controller.objects.create(
        name="SIP brute force (live)", kind=Kind.SIP_AUTH, action=Action.BLOCK, **values
    )


@pytest.fixture
def cleanup(orm):
    yield
    for alert in Alert.objects.open():
        services.end_alert(alert)
    AuthFailure.objects.all().delete()
    Controller.objects.all().delete()


@pytest.fixture
def controller(cleanup):
    # No account limit: the right password must still work once the ban ends.
    return make_controller(min_count=ATTEMPTS, account_limit=None)


def digest_call(
    switch: Switch, port: int, password: str, *, calls: int = 1, user: str = "alice", source=ATTACKER_IP
):
    """`user`@sip.test calling Berlin from `source` with `password`."""
    return sipp(
        port,
        source=source,
        callee=BERLIN,
        scenario="uac_digest.xml",
        hold_ms=500,
        calls=calls,
        extra=["-key", "caller", user, "-key", "domain", "sip.test", "-au", user, "-ap", password],
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


def test_a_locked_sip_account_fails_with_the_right_password_until_it_is_unlocked(switch: Switch, cleanup):
    make_controller(min_count=1000, account_limit=3)
    digest_call(switch, switch.node1_port, "wrong", calls=3, user="bob", source=GUESSER_IP)
    alert = wait_for(
        lambda: Alert.objects.open().filter(effect=Alert.Effect.LOCK_ACCOUNT).first(),
        what="the lock of bob@sip.test",
    )
    assert alert.sip_account.username == "bob" and alert.sip_account.locked_at is not None

    # The right password, on the other node: challenged again (the scenario's "refused"
    # ending), never routed. The subscriber table is read per request: no reload.
    refused = digest_call(switch, switch.node2_port, switch.phone_password, user="bob", source=GUESSER_IP)
    assert refused.messages.count("SIP/2.0 407") == 2, refused.log
    assert "SIP/2.0 200" not in refused.messages, refused.log

    services.undo_alert(alert, actor=Scope.system(), reason="live test")
    call = digest_call(switch, switch.node2_port, switch.phone_password, user="bob", source=GUESSER_IP)
    assert call.returncode == 0, call.log
    assert "SIP/2.0 200" in call.messages, call.log
