"""Controllers and alerts in the admin: who sees which alerts (g), and a person's undo of every
automatic action, audited (h)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.fraud import rules, services
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.peers import services as peer_services
from apps.peers.models import Peer, SipAccount
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, listed, messages_of, tool_url

SYSTEM = Scope.system()


def controller(kind=Kind.BURST, *, reseller=None, **values) -> Controller:
    defaults = {
        Kind.BURST: {"metric": Metric.CALLS, "threshold": 10},
        Kind.TERMINATION: {"metric": Metric.ASR, "threshold": 30},
        Kind.SIP_AUTH: {"min_count": 20, "account_limit": 50},
    }.get(kind, {})
    return rules.create_controller(
        actor=SYSTEM,
        name=f"{kind} {Controller.objects.count()}",
        kind=kind,
        reseller_id=reseller.pk if reseller else None,
        action=Action.BLOCK,
        **(defaults | values),
    )


def suspend(customer, *, now=None) -> Alert:
    alert, _ = services.raise_alert(
        controller(),
        services.Subject(
            text=f"{customer.name}: calls", peer_id=customer.pk, reseller_id=customer.reseller_id
        ),
        effect=Alert.Effect.SUSPEND_PEER,
        measured=120,
        threshold=10,
        now=now,
    )
    return alert


def ban(address: str, *, now=None) -> Alert:
    alert, _ = services.raise_alert(
        controller(Kind.SIP_AUTH),
        services.Subject(text=f"SIP from {address}", source_ip=address),
        effect=Alert.Effect.BAN_ADDRESS,
        measured=25,
        threshold=20,
        now=now,
    )
    return alert


@pytest.fixture
def alerts(cast):
    return {"a": suspend(cast.a.customer), "b": suspend(cast.b.customer), "op": ban("203.0.113.9")}


def test_reseller_staff_see_only_their_customers_alerts(alerts, cast, login):
    url = admin_url(Alert, "changelist")
    assert listed(login(cast.a.staff).get(url)) == {alerts["a"].pk}
    assert listed(login(cast.b.staff).get(url)) == {alerts["b"].pk}
    assert listed(login(cast.operator).get(url)) == {alert.pk for alert in alerts.values()}
    assert login(cast.a.customer_user).get(url).status_code == 302  # customers: the admin login


def test_another_resellers_alert_reads_as_absent_and_cannot_be_undone(alerts, cast, login):
    client = login(cast.a.staff)
    other = alerts["b"]
    response = client.get(admin_url(other), follow=True)
    assert response.redirect_chain[0] == (reverse("admin:index"), 302)
    assert client.post(tool_url(other, "undo"), {"reason": "mine now"}).status_code == 404
    assert client.post(tool_url(alerts["op"], "undo"), {}).status_code == 404
    other.refresh_from_db()
    assert other.ended_at is None
    assert Peer.objects.get(pk=cast.b.customer.pk).suspended_at is not None


def test_undo_resumes_a_suspended_customer_and_is_audited(alerts, cast, login):
    alert = alerts["a"]
    assert Peer.objects.get(pk=cast.a.customer.pk).suspended_at is not None
    client = login(cast.a.staff)
    page = client.get(admin_url(alert)).content.decode()
    assert tool_url(alert, "undo") in page
    assert 'name="reason"' in client.get(tool_url(alert, "undo")).content.decode()
    response = client.post(tool_url(alert, "undo"), {"reason": "known campaign"}, follow=True)
    assert "is over" in " ".join(messages_of(response))
    alert.refresh_from_db()
    assert (alert.undone_by, alert.undone_reason, alert.open_key) == (cast.a.staff, "known campaign", None)
    assert alert.ended_at is not None and not alert.in_force(timezone.now())
    assert Peer.objects.get(pk=cast.a.customer.pk).suspended_at is None
    entry = AuditEntry.objects.get(action="alert.undone", object_id=str(alert.pk))
    assert (entry.actor, entry.reseller_id, entry.data["reason"]) == (
        cast.a.staff,
        cast.a.reseller.pk,
        "known campaign",
    )
    # Over: no undo button any more, and a second undo is refused with its reason.
    assert tool_url(alert, "undo") not in client.get(admin_url(alert)).content.decode()
    assert client.post(tool_url(alert, "undo"), {}).status_code == 403


def test_undo_unlocks_a_locked_sip_account(cast, login):
    account = peer_services.add_sip_account(
        cast.a.customer, actor=SYSTEM, username="pbx-a", domain="sip.example.com", password="pbx-secret-42"
    )
    alert, _ = services.raise_alert(
        controller(Kind.SIP_AUTH),
        services.Subject(
            text="SIP account pbx-a",
            username="pbx-a",
            sip_account_id=account.pk,
            peer_id=cast.a.customer.pk,
            reseller_id=cast.a.reseller.pk,
        ),
        effect=Alert.Effect.LOCK_ACCOUNT,
        measured=50,
        threshold=50,
    )
    assert SipAccount.objects.get(pk=account.pk).locked_at is not None
    # The bulk action: asks for the reason first, then undoes every selected open alert.
    client = login(cast.operator)
    url = admin_url(Alert, "changelist")
    ask = client.post(url, {"action": "undo_selected", "_selected_action": [alert.pk]})
    assert ask.status_code == 200 and "reason" in ask.content.decode()
    done = client.post(
        url, {"action": "undo_selected", "_selected_action": [alert.pk], "apply": "1", "reason": "reset"}
    )
    assert done.status_code == 302
    assert SipAccount.objects.get(pk=account.pk).locked_at is None
    alert.refresh_from_db()
    assert (alert.undone_by, alert.undone_reason) == (cast.operator, "reset")
    assert AuditEntry.objects.filter(
        action="alert.undone", object_id=str(alert.pk), actor=cast.operator
    ).exists()


def test_undo_ends_an_alert_whose_effect_is_read_from_the_alert_itself(cast, login):
    now = timezone.now()
    alert, _ = services.raise_alert(
        controller(Kind.TERMINATION, peer=cast.supplier, block_minutes=30),
        services.Subject(text="Carrier X to UK", peer_id=cast.supplier.pk, destination="United Kingdom"),
        effect=Alert.Effect.EXCLUDE_ROUTE,
        measured=10,
        threshold=30,
        attempts=50,
        now=now,
    )
    excluded = Alert.objects.in_force(now).filter(effect=Alert.Effect.EXCLUDE_ROUTE, peer=cast.supplier)
    assert excluded.exists()
    login(cast.operator).post(tool_url(alert, "undo"), {"reason": "supplier fixed it"})
    assert not excluded.exists()
    assert AuditEntry.objects.filter(action="alert.undone", object_id=str(alert.pk)).exists()


def test_alert_list_filters_and_search(alerts, cast, login):
    client = login(cast.operator)
    url = admin_url(Alert, "changelist")
    services.undo_alert(alerts["b"], actor=SYSTEM)
    assert listed(client.get(url, {"state": "open"})) == {alerts["a"].pk, alerts["op"].pk}
    assert listed(client.get(url, {"state": "undone"})) == {alerts["b"].pk}
    assert listed(client.get(url, {"effect__exact": "ban_address"})) == {alerts["op"].pk}
    assert listed(client.get(url, {"kind__exact": "burst"})) == {alerts["a"].pk, alerts["b"].pk}
    assert listed(client.get(url, {"q": "203.0.113.9"})) == {alerts["op"].pk}
    assert listed(client.get(url, {"reseller__id__exact": cast.a.reseller.pk})) == {alerts["a"].pk}
    page = client.get(admin_url(alerts["a"])).content.decode()
    assert "120 vs 10" in client.get(url).content.decode()
    assert "Customer A: calls" in page
    # The owner column and filter are the operator's.
    assert login(cast.a.staff).get(url, {"reseller__id__exact": cast.b.reseller.pk}).status_code == 400


def test_reseller_staff_create_controllers_of_their_own_through_the_service(cast, login):
    client = login(cast.a.staff)
    payload = {
        "name": "Bursts",
        "kind": "burst",
        "metric": "calls",
        "peer": cast.a.customer.pk,
        "enabled": "on",
        "notify": "on",
        "window_minutes": 5,
        "min_count": 1,
        "threshold": "10",
        "short_seconds": 6,
        "baseline_days": 7,
        "action": "block",
        "block_minutes": 30,
        "trial_share": 100,
        "trial_minutes": 0,
    }
    response = client.post(admin_url(Controller, "add"), payload)
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Controller.objects.get(name="Bursts")
    assert created.reseller == cast.a.reseller
    assert AuditEntry.objects.filter(action="controller.created", object_id=str(created.pk)).exists()
    # Refused by the model's own check, shown on the form: suppliers are the operator's to watch.
    refused = client.post(
        admin_url(Controller, "add"), payload | {"name": "Mine", "kind": "termination", "metric": "asr"}
    )
    assert refused.status_code == 200
    assert "operator" in str(refused.context["adminform"].form.errors)
    # Another reseller's customer is not among the choices.
    other = client.post(
        admin_url(Controller, "add"), payload | {"name": "Theirs", "peer": cast.b.customer.pk}
    )
    assert "peer" in other.context["adminform"].form.errors
    # Each reseller lists its own controllers; the operator all.
    theirs = controller(reseller=cast.b.reseller)
    assert listed(client.get(admin_url(Controller, "changelist"))) == {created.pk}
    assert client.get(admin_url(theirs)).status_code == 302
    assert listed(login(cast.operator).get(admin_url(Controller, "changelist"))) == {created.pk, theirs.pk}


def test_changing_and_deleting_a_controller_keeps_its_alerts(cast, login):
    alert = suspend(cast.a.customer)
    rule = alert.controller
    client = login(cast.operator)
    response = client.get(admin_url(rule))
    assert response.status_code == 200
    rules.update_controller(rule, actor=SYSTEM, changes={"threshold": 20})
    assert AuditEntry.objects.filter(action="controller.changed", object_id=str(rule.pk)).exists()
    assert client.post(admin_url(rule, "delete"), {"post": "yes"}).status_code == 302
    assert not Controller.objects.filter(pk=rule.pk).exists()
    alert.refresh_from_db()
    assert alert.controller_id is None and alert.ended_at is None
    assert "(deleted)" in client.get(admin_url(alert)).content.decode()


def test_the_alert_list_costs_the_same_queries_for_many_alerts(cast, login):
    now = timezone.now()
    client = login(cast.operator)
    url = admin_url(Alert, "changelist")

    def queries_for_list_of(count: int) -> int:
        while Alert.objects.count() < count:
            suspend(cast.a.customer, now=now - timedelta(minutes=Alert.objects.count()))
            services.end_expired(now=now + timedelta(days=1))
        with CaptureQueriesContext(connection) as queries:
            assert len(listed(client.get(url))) == count
        return len(queries)

    assert queries_for_list_of(2) == queries_for_list_of(12)


def test_node_and_cluster_pages_show_the_alerts_in_force(alerts, cast, login):
    from apps.cluster.models import NodeStatus

    services.undo_alert(alerts["b"], actor=SYSTEM)
    client = login(cast.operator)
    for url in (admin_url(cast.node), admin_url(NodeStatus, "changelist")):
        page = client.get(url).content.decode()
        assert 'id="fraud-alerts"' in page
        assert '<span id="fraud-alert-count">2</span>' in page
        assert admin_url(alerts["a"]) in page and admin_url(alerts["op"]) in page
        assert admin_url(alerts["b"]) not in page  # over: not in force
