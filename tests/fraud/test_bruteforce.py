"""SIP brute force: failed digests counted per address and per account, the ban written to
OpenSIPS's address table (every node reloads it) and the locked account taken out of the
subscriber table, both lifted when the alert ends or a person undoes it."""

import json
from datetime import timedelta

import pytest

from apps.callcontrol import endpoint
from apps.fraud import bruteforce, services
from apps.fraud.models import Action, Alert, AuthFailure, Controller, Kind
from apps.opensips import provisioning
from apps.opensips.config import render
from apps.opensips.models import Address, Subscriber
from apps.peers import services as peer_services
from apps.peers.models import SipAccount

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.7"
OTHER = "203.0.113.8"


@pytest.fixture
def reloads(monkeypatch):
    """The modules each sync asked the nodes to reload."""
    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(provisioning, "request_reload", lambda *modules: asked.append(modules))
    return asked


@pytest.fixture
def controller():
    return Controller.objects.create(
        name="SIP brute force",
        kind=Kind.SIP_AUTH,
        action=Action.BLOCK,
        window_minutes=10,
        min_count=5,
        account_limit=8,
        block_minutes=30,
    )


@pytest.fixture
def account(cast, system):
    return peer_services.add_sip_account(
        cast.a.customer, actor=system, username="pbx1", domain="sip.example.com", password="secret12345"
    )


def fail(times: int, *, source_ip=ATTACKER, username="pbx1", domain="sip.example.com", at, node=None):
    """`times` failures at `at`; what the last one answered."""
    banned = False
    for _ in range(times):
        banned = bruteforce.sip_failure(
            source_ip, username, domain=domain, node_id=node.pk if node else None, now=at
        )
    return banned


def ban_rows():
    return sorted(Address.objects.filter(grp=90).values_list("ip", "mask", "port", "proto", "context_info"))


def test_failures_below_the_threshold_are_counted_and_ban_nothing(cast, controller, now):
    assert fail(4, username="nobody", at=now, node=cast.node) is False

    assert AuthFailure.objects.filter(realm="sip", source_ip=ATTACKER, node=cast.node).count() == 4
    assert AuthFailure.objects.filter(username="nobody@sip.example.com").count() == 4
    assert not Alert.objects.exists()
    assert ban_rows() == []


def test_the_threshold_bans_the_address_in_the_ban_group_of_every_node(controller, now, reloads):
    assert fail(5, username="nobody", at=now) is True

    alert = Alert.objects.get()
    assert (alert.effect, alert.source_ip, alert.reseller_id) == (Alert.Effect.BAN_ADDRESS, ATTACKER, None)
    assert (alert.measured, alert.threshold, alert.ends_at) == (5, 5, now + timedelta(minutes=30))
    assert ban_rows() == [(ATTACKER, 32, 0, "any", "ban")]
    assert reloads == [("address",)]


def test_failures_older_than_the_window_do_not_count(controller, now):
    fail(4, username="nobody", at=now - timedelta(minutes=11))
    assert fail(4, username="nobody", at=now) is False
    assert not Alert.objects.exists()
    assert fail(1, username="nobody", at=now + timedelta(minutes=1)) is True


def test_each_address_is_counted_on_its_own(controller, now):
    fail(4, username="nobody", at=now)
    assert fail(4, source_ip=OTHER, username="nobody", at=now) is False
    assert not Alert.objects.exists()


def test_without_a_controller_failures_are_only_counted(now):
    assert fail(30, username="nobody", at=now) is False
    assert AuthFailure.objects.count() == 30
    assert not Alert.objects.exists()


def test_a_disabled_controller_bans_nothing(controller, now):
    Controller.objects.filter(pk=controller.pk).update(enabled=False)
    assert fail(10, username="nobody", at=now) is False
    assert not Alert.objects.exists()


def test_a_warn_only_controller_raises_one_warning_and_bans_nothing(controller, now):
    Controller.objects.filter(pk=controller.pk).update(action=Action.WARN)
    assert fail(12, username="nobody", at=now) is False
    alert = Alert.objects.get()
    assert alert.effect == Alert.Effect.WARNING
    assert ban_rows() == []


def test_a_banned_address_returns_at_once(controller, now, django_assert_max_num_queries):
    fail(5, username="nobody", at=now)
    with django_assert_max_num_queries(2):  # the failure written, the open ban found
        assert bruteforce.sip_failure(ATTACKER, "nobody", node_id=None, now=now) is True
    assert Alert.objects.count() == 1


def test_a_customers_endpoint_is_warned_about_never_banned(cast, system, controller, now):
    peer_services.add_endpoint(cast.a.customer, actor=system, ip="203.0.113.0", mask=24)
    assert fail(6, username="nobody", at=now) is False
    alert = Alert.objects.get()
    assert alert.effect == Alert.Effect.WARNING
    assert "customer's endpoint" in alert.detail
    assert ban_rows() == []


def test_the_ban_row_goes_when_a_person_undoes_the_ban(controller, now, system, reloads):
    fail(5, username="nobody", at=now)
    alert = Alert.objects.get()
    services.undo_alert(alert, actor=system, reason="our own office", now=now + timedelta(minutes=1))

    assert ban_rows() == []
    assert reloads == [("address",), ("address",)]
    # Counted again from the undo: the failures it was banned for do not ban it again.
    assert fail(4, username="nobody", at=now + timedelta(minutes=2)) is False
    assert fail(1, username="nobody", at=now + timedelta(minutes=2)) is True


def test_the_ban_row_goes_when_the_ban_expires(controller, now):
    fail(5, username="nobody", at=now)
    assert services.end_expired(now=now + timedelta(minutes=29)) == 0
    assert ban_rows() != []
    assert services.end_expired(now=now + timedelta(minutes=30)) == 1
    assert ban_rows() == []


def test_two_bans_of_one_address_are_one_row(controller, now):
    Controller.objects.create(name="Strict", kind=Kind.SIP_AUTH, action=Action.BLOCK, min_count=3)
    fail(3, username="nobody", at=now)
    assert fail(5, username="nobody", source_ip=ATTACKER, at=now) is True
    assert ban_rows() == [(ATTACKER, 32, 0, "any", "ban")]


def test_alerts_of_other_effects_leave_the_address_table_alone(controller, now, reloads, cast):
    other = Controller.objects.create(name="Repeats", kind=Kind.REPEATED_NUMBER, metric="callee", min_count=5)
    services.raise_alert(
        other,
        services.Subject(text="Number 4930123", number="4930123"),
        effect=Alert.Effect.BLOCK_NUMBER,
        measured=6,
        threshold=5,
        now=now,
    )
    assert reloads == []


def test_an_account_is_locked_after_its_own_limit_and_leaves_the_subscriber_table(
    cast, controller, account, now, reloads
):
    # From many addresses, none of them past its own threshold.
    for number in range(8):
        assert fail(1, source_ip=f"198.51.100.{number}", at=now) is False

    alert = Alert.objects.get()
    assert alert.effect == Alert.Effect.LOCK_ACCOUNT
    assert (alert.sip_account_id, alert.peer_id, alert.reseller_id) == (
        account.pk,
        cast.a.customer.pk,
        cast.a.reseller.pk,
    )
    assert alert.username == "pbx1@sip.example.com"
    assert SipAccount.objects.get(pk=account.pk).locked_at == now
    assert not Subscriber.objects.filter(username="pbx1").exists()
    # The subscriber table is read per request: nothing to reload.
    assert reloads == []
    # Unlike a ban, a lock does not run out: a person unlocks it.
    assert alert.ends_at is None
    assert services.end_expired(now=now + timedelta(days=30)) == 0
    assert SipAccount.objects.get(pk=account.pk).locked_at == now


def test_unlocking_the_account_provisions_it_again(cast, controller, account, now, system):
    for number in range(8):
        fail(1, source_ip=f"198.51.100.{number}", at=now)
    services.undo_alert(Alert.objects.get(), actor=system, reason="customer called", now=now)

    assert SipAccount.objects.get(pk=account.pk).locked_at is None
    assert Subscriber.objects.filter(username="pbx1", domain="sip.example.com").exists()
    # The count starts again from the unlock.
    fail(1, source_ip=OTHER, at=now + timedelta(minutes=1))
    assert SipAccount.objects.get(pk=account.pk).locked_at is None


def test_an_account_of_another_domain_is_not_locked(cast, controller, account, now):
    for number in range(8):
        fail(1, source_ip=f"198.51.100.{number}", domain="other.example.com", at=now)
    assert not Alert.objects.exists()
    assert SipAccount.objects.get(pk=account.pk).locked_at is None


def test_the_endpoint_counts_a_failure_of_a_known_node_only(cast, controller):
    payload = {"node": cast.node.name, "source_ip": ATTACKER, "username": "pbx1", "domain": "sip.example.com"}
    status, answer = endpoint.handle(
        "auth-failed", json.dumps(payload).encode(), f"Bearer {cast.node.call_control_secret}"
    )
    assert (status, answer) == (200, {"banned": 0})
    failure = AuthFailure.objects.get()
    assert (failure.node_id, failure.username) == (cast.node.pk, "pbx1@sip.example.com")

    status, _ = endpoint.handle("auth-failed", json.dumps(payload).encode(), "Bearer wrong")
    assert status == 401
    payload["source_ip"] = "not an address"
    status, answer = endpoint.handle(
        "auth-failed", json.dumps(payload).encode(), f"Bearer {cast.node.call_control_secret}"
    )
    assert (status, answer) == (400, {"errors": {"source_ip": "Not an IP address."}})
    assert AuthFailure.objects.count() == 1


def test_a_long_made_up_user_is_still_counted(cast, controller):
    payload = {"node": cast.node.name, "source_ip": ATTACKER, "username": "x" * 300}
    status, _ = endpoint.handle(
        "auth-failed", json.dumps(payload).encode(), f"Bearer {cast.node.call_control_secret}"
    )
    assert status == 200
    assert AuthFailure.objects.get().username == "x" * 150


def test_the_cfg_refuses_banned_sources_first_and_reports_failed_digests(cast, settings, tmp_path):
    settings.OPENSIPS_MODULES_DIR = str(tmp_path)
    settings.OPENSIPS_DB_URL = "mysql://opensips@db.example/smartswitch"
    settings.CALL_CONTROL_URL = "http://127.0.0.1:8000/call-control/v1/"
    from apps.nodes.models import ClusterSettings

    text = render(cast.node, ClusterSettings.load())["opensips/opensips.cfg"]
    main = text[text.index("route {") :]
    first = main[: main.index("mf_process_maxfwd_header")]
    assert "check_source_address(90)" in first and 'sl_send_reply(403, "Forbidden")' in first
    identify = text[text.index("route[identify]") : text.index("route[register]")]
    register = text[text.index("route[register]") : text.index("route[auth_failed]")]
    for block in (identify, register):
        assert "$var(auth_rc) == -1 || $var(auth_rc) == -2" in block and "route(auth_failed);" in block
    report = text[text.index("route[auth_failed]") : text.index("route[authorize]")]
    assert 'launch(rest_post("http://127.0.0.1:8000/call-control/v1/auth-failed"' in report
    assert f"Authorization: Bearer {cast.node.call_control_secret}" in report
