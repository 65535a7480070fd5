"""Admin and portal logins: repeated failures of one user from one address lock that user out
from that address (even with the right password) until the lockout ends or a person undoes it."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.fraud import login as lockout
from apps.fraud import rules, services
from apps.fraud.models import Action, Alert, AuthFailure, Controller, Kind
from apps.tenancy.scope import Scope
from tests.admin.conftest import tool_url
from tests.conftest import PASSWORD

ATTACKER = "198.51.100.7"
ELSEWHERE = "198.51.100.8"
PAGES = {"admin": "admin:login", "portal": "portal:login"}


def sign_in(client, page: str, user, password: str, address: str):
    client.logout()
    return client.post(
        reverse(PAGES[page]), {"username": user.get_username(), "password": password}, REMOTE_ADDR=address
    )


def signed_in(response) -> bool:
    return response.status_code == 302


@pytest.mark.parametrize("page", ["admin", "portal"])
def test_ten_failures_from_one_address_lock_that_user_out_from_there_only(page, cast, client, login):
    user = cast.a.staff if page == "admin" else cast.a.customer_user
    for _ in range(9):
        assert not signed_in(sign_in(client, page, user, "wrong-password", ATTACKER))
    assert not Alert.objects.exists()
    assert not signed_in(sign_in(client, page, user, "wrong-password", ATTACKER))
    alert = Alert.objects.get()
    assert (alert.effect, alert.username, alert.source_ip) == ("lock_login", user.username, ATTACKER)
    assert alert.reseller_id == cast.a.reseller.pk  # its reseller's staff may see and undo it
    # The right password no longer helps from that address; from another it does.
    refused = sign_in(client, page, user, PASSWORD, ATTACKER)
    assert not signed_in(refused) and "_auth_user_id" not in client.session
    assert signed_in(sign_in(client, page, user, PASSWORD, ELSEWHERE))
    # A person's undo lifts it at once, audited.
    login(cast.operator).post(tool_url(alert, "undo"), {"reason": "it was me"})
    assert AuditEntry.objects.filter(action="alert.undone", object_id=str(alert.pk)).exists()
    assert signed_in(sign_in(client, page, user, PASSWORD, ATTACKER))


def test_attempts_while_locked_out_are_not_counted_and_do_not_extend_it(cast, client):
    now = timezone.now()
    for _ in range(10):
        lockout.record_failure(cast.a.staff.username, ATTACKER, now=now - timedelta(minutes=1))
    alert = Alert.objects.get()
    failures = AuthFailure.objects.count()
    for password in ("wrong-password", PASSWORD):
        assert not signed_in(sign_in(client, "admin", cast.a.staff, password, ATTACKER))
    assert AuthFailure.objects.count() == failures
    assert Alert.objects.get(pk=alert.pk).ends_at == alert.ends_at


def test_the_default_lockout_counts_ten_failures_in_fifteen_minutes_and_holds_fifteen(cast):
    now = timezone.now()
    name = cast.a.staff.username
    # Nine failures, then the tenth sixteen minutes later: never ten within 15 minutes.
    for second in range(9):
        assert lockout.record_failure(name, ATTACKER, now=now + timedelta(seconds=second)) is None
    later = now + timedelta(minutes=16)
    for second in range(9):
        assert lockout.record_failure(name, ATTACKER, now=later + timedelta(seconds=second)) is None
    started = later + timedelta(seconds=9)
    alert = lockout.record_failure(name, ATTACKER, now=started)
    assert alert is not None and alert.controller.name == lockout.DEFAULT_NAME
    assert (alert.measured, alert.threshold) == (10, 10)
    assert lockout.locked_out(name, ATTACKER, now=started + timedelta(minutes=14))
    assert not lockout.locked_out(name, ATTACKER, now=started + timedelta(minutes=15))
    assert not lockout.locked_out(name, ELSEWHERE, now=started)
    assert Controller.objects.filter(kind=Kind.LOGIN).count() == 1  # created once, lazily


def test_after_a_lockout_ends_the_user_starts_afresh(cast):
    now = timezone.now()
    name = cast.a.staff.username
    for second in range(10):
        lockout.record_failure(name, ATTACKER, now=now + timedelta(seconds=second))
    alert = Alert.objects.get()
    services.undo_alert(alert, actor=Scope.system(), now=now + timedelta(minutes=1))
    # The ten failures before the undo are still in the window, but no longer count.
    assert lockout.record_failure(name, ATTACKER, now=now + timedelta(minutes=2)) is None
    assert not lockout.locked_out(name, ATTACKER, now=now + timedelta(minutes=2))


def test_the_operators_own_login_controller_replaces_the_default(cast):
    now = timezone.now()
    rule = rules.create_controller(
        actor=Scope.system(),
        name="Strict logins",
        kind=Kind.LOGIN,
        min_count=3,
        window_minutes=60,
        block_minutes=0,
        action=Action.BLOCK,
    )
    for second in range(3):
        alert = lockout.record_failure("nobody-known", ATTACKER, now=now + timedelta(seconds=second))
    assert alert.controller == rule and alert.ends_at is None  # until a person undoes it
    assert alert.reseller_id is None  # an unknown user: the operator's
    assert not Controller.objects.filter(name=lockout.DEFAULT_NAME).exists()
    # Disabled, it locks nobody out (and no default comes back in its place).
    rules.update_controller(rule, actor=Scope.system(), changes={"enabled": False})
    for second in range(5):
        assert lockout.record_failure("someone", ATTACKER, now=now + timedelta(seconds=second)) is None


def test_a_warning_controller_records_but_locks_nobody_out(cast):
    rules.create_controller(
        actor=Scope.system(), name="Watch logins", kind=Kind.LOGIN, min_count=2, action=Action.WARN
    )
    now = timezone.now()
    for second in range(2):
        assert lockout.record_failure("someone", ATTACKER, now=now + timedelta(seconds=second)) is None
    assert Alert.objects.get().effect == Alert.Effect.WARNING
    assert not lockout.locked_out("someone", ATTACKER, now=now)


def test_behind_the_local_proxy_the_forwarded_address_counts(rf):
    proxied = rf.post("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.5")
    assert lockout.client_ip(proxied) == "203.0.113.5"
    # Anyone else's X-Forwarded-For is theirs to invent: ignored.
    direct = rf.post("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert lockout.client_ip(direct) == "192.0.2.1"
    assert lockout.client_ip(rf.post("/", REMOTE_ADDR="::1", HTTP_X_FORWARDED_FOR="junk")) == "::1"
