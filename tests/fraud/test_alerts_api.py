"""/api/v1/alerts/ and /api/v1/controllers/: scoped reads (g), undo by a person's key (h), and
malformed bodies and filters refused with the field named."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.fraud import rules, services
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.peers import services as peer_services
from apps.peers.models import Peer, SipAccount
from apps.tenancy.scope import Scope

SYSTEM = Scope.system()
ALERTS = "/api/v1/alerts/"
CONTROLLERS = "/api/v1/controllers/"


def controller(kind=Kind.BURST, *, reseller=None, **values) -> Controller:
    defaults = {
        Kind.BURST: {"metric": Metric.CALLS, "threshold": 10},
        Kind.TERMINATION: {"metric": Metric.ASR, "threshold": 30},
    }.get(kind, {})
    return rules.create_controller(
        actor=SYSTEM,
        name=f"{kind} {Controller.objects.count()}",
        kind=kind,
        reseller_id=reseller.pk if reseller else None,
        action=Action.BLOCK,
        **(defaults | values),
    )


def suspend(customer) -> Alert:
    alert, _ = services.raise_alert(
        controller(),
        services.Subject(
            text=f"{customer.name}: calls", peer_id=customer.pk, reseller_id=customer.reseller_id
        ),
        effect=Alert.Effect.SUSPEND_PEER,
        measured=120,
        threshold=10,
    )
    return alert


def ids(response) -> set:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def alerts(cast):
    ban, _ = services.raise_alert(
        controller(Kind.SIP_AUTH, min_count=20),
        services.Subject(text="SIP from 203.0.113.9", source_ip="203.0.113.9"),
        effect=Alert.Effect.BAN_ADDRESS,
        measured=25,
        threshold=20,
    )
    return {"a": suspend(cast.a.customer), "b": suspend(cast.b.customer), "op": ban}


def test_each_key_lists_only_the_alerts_it_may_see(alerts, cast, api):
    assert ids(api(cast.a.staff_key).get(ALERTS)) == {alerts["a"].pk}
    assert ids(api(cast.b.staff_key).get(ALERTS)) == {alerts["b"].pk}
    assert ids(api(cast.a.customer_key).get(ALERTS)) == {alerts["a"].pk}
    assert ids(api(cast.operator_key).get(ALERTS)) == {alert.pk for alert in alerts.values()}
    assert api(cast.a.staff_key).get(f"{ALERTS}{alerts['b'].pk}/").status_code == 404
    assert api(cast.a.staff_key).get(f"{ALERTS}{alerts['op'].pk}/").status_code == 404
    detail = api(cast.a.staff_key).get(f"{ALERTS}{alerts['a'].pk}/").json()
    assert (detail["effect"], detail["measured"], detail["threshold"], detail["in_force"]) == (
        "suspend_peer",
        "120.0000",
        "10.0000",
        True,
    )


def test_a_reseller_cannot_undo_another_resellers_alert_nor_a_customer_its_own(alerts, cast, api):
    assert api(cast.a.staff_key).post(f"{ALERTS}{alerts['b'].pk}/undo/", {"reason": "x"}).status_code == 404
    assert api(cast.a.customer_key).post(f"{ALERTS}{alerts['a'].pk}/undo/", {}).status_code == 403
    assert Alert.objects.open().count() == 3
    assert Peer.objects.get(pk=cast.b.customer.pk).suspended_at is not None


def test_undo_over_the_api_resumes_the_customer_and_is_audited(alerts, cast, api):
    client = api(cast.a.staff_key)
    response = client.post(f"{ALERTS}{alerts['a'].pk}/undo/", {"reason": "false alarm"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["undone_reason"], body["in_force"]) == ("false alarm", False)
    assert body["ended_at"] is not None
    assert Peer.objects.get(pk=cast.a.customer.pk).suspended_at is None
    entry = AuditEntry.objects.get(action="alert.undone", object_id=str(alerts["a"].pk))
    assert (entry.actor_label, entry.data["reason"]) == ("api-key:A staff", "false alarm")
    # Once over, a second undo says so.
    again = client.post(f"{ALERTS}{alerts['a'].pk}/undo/", {}, format="json")
    assert again.status_code == 400 and "already over" in again.json()["detail"]


def test_undo_over_the_api_unlocks_a_sip_account_and_lifts_a_ban(alerts, cast, api):
    account = peer_services.add_sip_account(
        cast.b.customer, actor=SYSTEM, username="pbx-b", domain="sip.example.com", password="pbx-secret-42"
    )
    lock, _ = services.raise_alert(
        controller(Kind.SIP_AUTH, min_count=20, account_limit=5),
        services.Subject(
            text="SIP account pbx-b",
            sip_account_id=account.pk,
            reseller_id=cast.b.reseller.pk,
            username="pbx-b",
        ),
        effect=Alert.Effect.LOCK_ACCOUNT,
        measured=5,
        threshold=5,
    )
    assert SipAccount.objects.get(pk=account.pk).locked_at is not None
    assert api(cast.b.staff_key).post(f"{ALERTS}{lock.pk}/undo/").status_code == 200
    assert SipAccount.objects.get(pk=account.pk).locked_at is None
    # A ban's effect is the alert itself: undone, nothing bans the address any more.
    assert api(cast.operator_key).post(f"{ALERTS}{alerts['op'].pk}/undo/").status_code == 200
    assert not Alert.objects.in_force(timezone.now()).filter(source_ip="203.0.113.9").exists()
    assert AuditEntry.objects.filter(action="alert.undone").count() == 2


def test_alert_filters(alerts, cast, api):
    client = api(cast.operator_key)
    services.undo_alert(alerts["b"], actor=SYSTEM)
    assert ids(client.get(ALERTS, {"open": "true"})) == {alerts["a"].pk, alerts["op"].pk}
    assert ids(client.get(ALERTS, {"open": "false"})) == {alerts["b"].pk}
    assert ids(client.get(ALERTS, {"kind": "sip_auth"})) == {alerts["op"].pk}
    assert ids(client.get(ALERTS, {"effect": "suspend_peer"})) == {alerts["a"].pk, alerts["b"].pk}
    assert ids(client.get(ALERTS, {"peer": cast.a.customer.pk})) == {alerts["a"].pk}
    assert ids(client.get(ALERTS, {"source_ip": "203.0.113.9"})) == {alerts["op"].pk}
    started = alerts["a"].started_at
    assert ids(client.get(ALERTS, {"since": (started + timezone.timedelta(hours=1)).isoformat()})) == set()
    assert len(ids(client.get(ALERTS, {"since": (started - timezone.timedelta(hours=1)).isoformat()}))) == 3
    for name, value in [("since", "yesterday"), ("kind", "nope"), ("open", "maybe"), ("peer", "x")]:
        response = client.get(ALERTS, {name: value})
        assert response.status_code == 400 and name in response.json(), (name, response.content)
    # Another reseller's customer is no filter value for reseller A: the same 400 as a missing one.
    assert "peer" in api(cast.a.staff_key).get(ALERTS, {"peer": cast.b.customer.pk}).json()


def test_malformed_undo_bodies_name_the_field(alerts, cast, api):
    response = api(cast.a.staff_key).post(
        f"{ALERTS}{alerts['a'].pk}/undo/", {"reason": "x" * 201}, format="json"
    )
    assert response.status_code == 400 and "reason" in response.json()
    assert Alert.objects.get(pk=alerts["a"].pk).ended_at is None


BURST = {"name": "Bursts", "kind": "burst", "metric": "calls", "threshold": "10", "action": "block"}


def test_a_reseller_key_creates_changes_and_deletes_controllers_of_its_own(cast, api):
    client = api(cast.a.staff_key)
    response = client.post(CONTROLLERS, BURST | {"peer": cast.a.customer.pk}, format="json")
    assert response.status_code == 201, response.content
    created = Controller.objects.get(pk=response.json()["id"])
    assert (created.reseller, created.peer, created.threshold) == (cast.a.reseller, cast.a.customer, 10)
    changed = client.patch(
        f"{CONTROLLERS}{created.pk}/", {"threshold": "20", "enabled": False}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert (changed.json()["threshold"], changed.json()["enabled"]) == ("20.0000", False)
    assert {
        e.action for e in AuditEntry.objects.filter(object_id=str(created.pk), object_type="fraud.controller")
    } == {
        "controller.created",
        "controller.changed",
    }
    # Reseller B neither sees nor changes it; A's customer only reads.
    assert api(cast.b.staff_key).get(f"{CONTROLLERS}{created.pk}/").status_code == 404
    assert (
        api(cast.b.staff_key).patch(f"{CONTROLLERS}{created.pk}/", {"name": "x"}, format="json").status_code
        == 404
    )
    assert api(cast.a.customer_key).post(CONTROLLERS, BURST, format="json").status_code == 403
    assert ids(api(cast.b.staff_key).get(CONTROLLERS)) == set()
    assert client.delete(f"{CONTROLLERS}{created.pk}/").status_code == 204
    assert not Controller.objects.filter(pk=created.pk).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "termination", "metric": "asr"}, "kind"),  # suppliers are the operator's to watch
        ({"metric": "asr"}, "metric"),
        ({"threshold": None}, "threshold"),
        ({"threshold": "-1"}, "threshold"),
        ({"window_minutes": 0}, "window_minutes"),
        ({"trial_share": 101}, "trial_share"),
        ({"kind": "nonsense"}, "kind"),
        ({"reseller": 1}, "reseller"),
        ({"min_count": "many"}, "min_count"),
    ],
)
def test_malformed_controllers_are_400s_naming_the_field(cast, api, body, field):
    response = api(cast.a.staff_key).post(CONTROLLERS, BURST | body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Controller.objects.exists()


def test_kind_and_owner_are_fixed_once_created(cast, api):
    rule = controller(reseller=cast.a.reseller)
    client = api(cast.operator_key)
    for body in ({"kind": "sequential"}, {"reseller": cast.b.reseller.pk}):
        response = client.patch(f"{CONTROLLERS}{rule.pk}/", body, format="json")
        assert response.status_code == 400 and next(iter(body)) in response.json()
    # The operator creates for a reseller, or for itself.
    made = client.post(CONTROLLERS, BURST | {"reseller": cast.b.reseller.pk}, format="json")
    assert made.status_code == 201 and made.json()["reseller"] == cast.b.reseller.pk
    same_name = client.post(CONTROLLERS, BURST | {"reseller": cast.b.reseller.pk}, format="json")
    assert same_name.status_code == 400


def test_the_alert_list_costs_the_same_queries_for_many_alerts(cast, api):
    client = api(cast.operator_key)
    client.get(ALERTS)  # the key's first use of the minute is written once

    def queries_for_list_of(count: int) -> int:
        while Alert.objects.count() < count:
            services.end_alert(suspend(cast.a.customer))
        with CaptureQueriesContext(connection) as queries:
            assert len(ids(client.get(ALERTS))) == count
        return len(queries)

    assert queries_for_list_of(2) == queries_for_list_of(12)
