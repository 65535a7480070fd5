"""Fraud control in call control (docs/FRAUD.md): the alerts call control applies (an
excluded route and its trial, a banned source address, a refused number), the
repeated-number count, and the customer's maximum price. Real authorize requests through
Django where the clock does not matter; the real decide/settle at injected moments where
it does (tests/switching.py builds the world)."""

from datetime import timedelta
from decimal import Decimal
from functools import partial

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import Reservation
from apps.billing.services.reservations import recent_calls
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.checking import CheckInput, candidate_rows, check_routing
from apps.callcontrol.decision import decide, settle
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.fraud.services import Subject, raise_alert, undo_alert
from apps.tenancy.scope import Scope
from tests.callcontrol.test_endpoint import AUTHORIZE, bearer, body, post
from tests.conftest import PASSWORD
from tests.switching import BERLIN, CUSTOMER_IP, MOBILE, UK, excluded, release, suppliers_of, update_peer

OTHER_IP = "198.51.100.20"


def authorize(client, world, **fields) -> dict:
    snapshots.forget()  # the test's transaction never commits: no generation bump
    response = post(client, AUTHORIZE, body(world, **fields), bearer(world.node))
    assert response.status_code == 200
    return response.json()


def call_at(world, at, callee=BERLIN, **fields):
    """The whole decision at the moment `at`, on a fresh snapshot."""
    snapshot = world.snapshot()
    decision = decide(snapshot, world.request(callee, **fields), at=at)
    return settle(snapshot, decision, reserve=True)


def termination(**fields) -> Controller:
    values = {
        "name": "ASR",
        "kind": Kind.TERMINATION,
        "metric": Metric.ASR,
        "threshold": Decimal(30),
        "min_count": 50,
        "action": Action.BLOCK,
        "block_minutes": 30,
    }
    return Controller.objects.create(**(values | fields))


def exclude(world, supplier: str, *, destination="", now, **controller) -> Alert:
    alert, created = raise_alert(
        termination(**controller),
        Subject(f"{supplier} {destination}", peer_id=world.suppliers[supplier].pk, destination=destination),
        effect=Alert.Effect.EXCLUDE_ROUTE,
        measured=10,
        threshold=30,
        attempts=50,
        now=now,
    )
    assert created
    return alert


# --- (a) termination: the excluded route ----------------------------------------------------


def test_a_supplier_excluded_by_an_alert_is_left_out_until_its_block_ends(world):
    now = timezone.now()
    alert = exclude(world, "Bravo", destination="Germany", now=now)
    at_end = alert.ends_at.astimezone(world.snapshot().peers[world.customer.pk].zone)

    decision = call_at(world, now + timedelta(minutes=1))
    assert excluded(decision)["Bravo"] == (
        f"fraud control: ASR 10 % < 30 % (alert #{alert.pk}) until {at_end:%H:%M}"
    )
    assert suppliers_of(decision) == ["Delta", "Alpha", "Charlie"]
    # Another destination of the same supplier is not excluded.
    assert excluded(call_at(world, now + timedelta(minutes=1), UK))["Bravo"] == ""
    # The block is over (the sweep may not have closed the alert yet): back, without a rebuild.
    assert suppliers_of(call_at(world, alert.ends_at)) == ["Bravo", "Delta", "Alpha", "Charlie"]


def test_an_alert_for_all_destinations_and_its_undo(world):
    now = timezone.now()
    alert = exclude(world, "Delta", now=now)
    assert excluded(call_at(world, now, UK))["Delta"].startswith(
        f"fraud control: ASR 10 % < 30 % (alert #{alert.pk})"
    )
    undo_alert(alert, actor=Scope.system(), reason="supplier fixed", now=now)
    assert excluded(call_at(world, now, UK))["Delta"] == ""


def test_in_its_trial_the_route_takes_its_share_of_calls_chosen_by_call_id(world):
    now = timezone.now()
    alert = exclude(world, "Bravo", now=now, trial_share=30, trial_minutes=10)
    in_trial = alert.ends_at + timedelta(minutes=1)
    snapshot = world.snapshot()
    verdicts = [
        excluded(decide(snapshot, world.request(call_id=f"trial-{n}"), at=in_trial))["Bravo"]
        for n in range(200)
    ]
    admitted = verdicts.count("")
    assert 40 <= admitted <= 80  # 30 % of 200, give or take
    until = alert.trial_until.astimezone(snapshot.peers[world.customer.pk].zone)
    assert set(verdicts) - {""} == {
        f"fraud control: in trial (30 % of calls until {until:%H:%M}, alert #{alert.pk}): not this call"
    }
    # The same Call-ID gets the same answer (a retried request, another process).
    again = [
        excluded(decide(snapshot, world.request(call_id=f"trial-{n}"), at=in_trial))["Bravo"]
        for n in range(20)
    ]
    assert again == verdicts[:20]
    # After the trial every call.
    assert excluded(decide(snapshot, world.request(), at=alert.trial_until))["Bravo"] == ""


def test_check_routing_shows_the_exclusion_and_links_its_alert(world, django_user_model):
    alert = exclude(world, "Bravo", now=timezone.now())
    snapshots.forget()
    decision = check_routing(CheckInput(callee=BERLIN, peer=world.customer))
    bravo = next(row for row in candidate_rows(decision) if row["supplier"] == "Bravo")
    assert bravo["verdict"].startswith(f"fraud control: ASR 10 % < 30 % (alert #{alert.pk})")
    assert bravo["alert_url"] == reverse("admin:fraud_alert_change", args=[alert.pk])
    snapshots.forget()
    django_user_model.objects.create_superuser("op", "op@example.com", PASSWORD)
    client = Client()
    client.login(username="op", password=PASSWORD)
    page = client.get(reverse("check-routing"), {"peer": world.customer.pk, "callee": BERLIN})
    assert bravo["alert_url"] in page.content.decode()


# --- Banned source addresses ---------------------------------------------------------------


def test_a_banned_source_address_is_refused_until_the_ban_ends(client, world):
    now = timezone.now()
    controller = Controller.objects.create(
        name="SIP", kind=Kind.SIP_AUTH, min_count=20, action=Action.BLOCK, block_minutes=15
    )
    alert, _ = raise_alert(
        controller,
        Subject(CUSTOMER_IP, source_ip=CUSTOMER_IP),
        effect=Alert.Effect.BAN_ADDRESS,
        measured=20,
        threshold=20,
        now=now,
    )
    answer = authorize(client, world)
    assert (answer["action"], answer["code"], answer["reason"]) == ("reject", 403, "Banned")
    assert Reservation.objects.count() == 0
    # Another address passes; the banned one again once the ban is over (before the sweep
    # closes the alert and call control rebuilds: the end is read against the call's moment).
    world.add_customer("Other", OTHER_IP)
    assert authorize(client, world, source_ip=OTHER_IP, call_id="other@test")["action"] == "route"
    assert call_at(world, alert.ends_at).routed


# --- (d) repeated numbers ------------------------------------------------------------------


def repeated(**fields) -> Controller:
    values = {
        "name": "Repeated callee",
        "kind": Kind.REPEATED_NUMBER,
        "metric": Metric.CALLEE,
        "min_count": 5,
        "window_minutes": 1,
        "action": Action.BLOCK,
        "block_minutes": 30,
    }
    return Controller.objects.create(**(values | fields))


def calls(client, world, n, *, callee=BERLIN, source_ip=CUSTOMER_IP, prefix="c") -> list[dict]:
    answers = []
    for i in range(n):
        answer = authorize(client, world, callee=callee, source_ip=source_ip, call_id=f"{prefix}-{i}@test")
        if answer["reservation"]:
            release(answer["reservation"])
        answers.append(answer)
    return answers


def test_the_sixth_call_to_one_number_within_a_minute_is_refused_when_five_are_allowed(client, world):
    controller = repeated()
    world.add_customer("Other", OTHER_IP)
    assert [a["action"] for a in calls(client, world, 5)] == ["route"] * 5
    sixth = authorize(client, world, call_id="sixth@test")
    assert (sixth["action"], sixth["code"], sixth["reason"]) == ("reject", 403, "Repeated number")
    alert = Alert.objects.get(controller=controller)
    assert (alert.effect, alert.number, alert.peer_id, alert.measured) == (
        Alert.Effect.BLOCK_NUMBER,
        BERLIN,
        world.customer.pk,
        Decimal(6),
    )
    # Other numbers of this customer, and this number from another customer, pass.
    assert authorize(client, world, callee=UK, call_id="uk@test")["action"] == "route"
    assert authorize(client, world, source_ip=OTHER_IP, call_id="other@test")["action"] == "route"
    # Later calls are refused by the alert itself, with no count.
    snapshot = world.snapshot()
    later = settle(snapshot, decide(snapshot, world.request(), at=timezone.now()))
    assert (later.code, later.reason) == (403, "Repeated number")
    assert f"refused, 6 calls to one callee (alert #{alert.pk})" in later.steps[-1].detail
    # After the block it passes again.
    assert call_at(world, alert.ends_at).routed
    assert Alert.objects.count() == 1


def test_the_count_stops_at_the_threshold(client, world):
    # A number everyone calls must not cost each call a read of the whole window.
    calls(client, world, 7)
    since = timezone.now() - timedelta(minutes=1)
    count = partial(recent_calls, BERLIN, caller=False, since=since, customer_id=world.customer.pk)
    assert count(up_to=100) == 7
    assert count(up_to=3) == 3
    assert count(up_to=100, call_id=Reservation.objects.latest("pk").call_id) == 6  # not itself


def test_a_cluster_wide_count_takes_every_customers_calls(client, world):
    repeated(cluster_wide=True, min_count=3)
    world.add_customer("Other", OTHER_IP)
    calls(client, world, 2)
    calls(client, world, 1, source_ip=OTHER_IP, prefix="o")
    answer = authorize(client, world, source_ip=OTHER_IP, call_id="o-4@test")
    assert (answer["code"], answer["reason"]) == (403, "Repeated number")
    assert Alert.objects.get().peer_id is None
    # The alert refuses the number for the first customer too.
    assert authorize(client, world, call_id="c-9@test")["reason"] == "Repeated number"


def test_a_warning_controller_opens_its_alert_and_lets_the_call_go(client, world):
    repeated(action=Action.WARN, min_count=2)
    answers = calls(client, world, 4)
    assert [a["action"] for a in answers] == ["route"] * 4
    alert = Alert.objects.get()
    assert alert.effect == Alert.Effect.WARNING


def test_a_caller_controller_counts_calls_from_one_caller(client, world):
    repeated(metric=Metric.CALLER, min_count=2)
    calls(client, world, 2, callee=BERLIN)
    answer = authorize(client, world, callee=UK, call_id="third@test")
    assert answer["reason"] == "Repeated number"
    assert authorize(client, world, callee=UK, caller="4930999000", call_id="x@test")["action"] == "route"


def test_a_controller_of_another_customer_does_not_count_these_calls(client, world):
    other = world.add_customer("Other", OTHER_IP)
    repeated(peer=other, min_count=1)
    assert [a["action"] for a in calls(client, world, 3)] == ["route"] * 3
    assert Alert.objects.count() == 0


def test_no_repeated_number_controller_costs_no_query(world, django_assert_num_queries):
    snapshot = world.snapshot()
    decision = decide(snapshot, world.request(), at=timezone.now())
    with django_assert_num_queries(0):
        from apps.callcontrol.decision import _repeated

        assert not _repeated(snapshot, decision, reserve=True)


# --- (f) the customer's maximum price ------------------------------------------------------


def test_a_rate_above_the_customers_maximum_price_is_refused_with_its_reason(client, world):
    update_peer(world.customer, max_price=Decimal("0.05"))
    answer = authorize(client, world, callee=MOBILE)  # sells at 0.08
    assert (answer["action"], answer["code"], answer["reason"]) == (
        "reject",
        403,
        "Price 0.08/min above the customer's maximum 0.05",
    )
    assert authorize(client, world, callee=BERLIN, call_id="b@test")["action"] == "route"  # 0.02
    update_peer(world.customer, max_price=None)
    assert authorize(client, world, callee=MOBILE, call_id="m@test")["action"] == "route"


@pytest.mark.parametrize("limit", ["0.08", "0.080001"])
def test_a_rate_at_the_maximum_price_passes(world, limit):
    update_peer(world.customer, max_price=Decimal(limit))
    assert call_at(world, timezone.now(), MOBILE).routed
