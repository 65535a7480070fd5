"""The per-call decision, whole: a routed call priced and granted, the money it may use and
holds, and check routing agreeing with call control. Every test runs the real decide/settle
on a snapshot built from the database (the world and its prices: tests/switching.py)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, Reservation
from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.checking import CheckInput, check_routing
from apps.callcontrol.decision import decide, settle
from apps.peers.models import Peer
from tests.switching import (
    BERLIN,
    CALLER,
    CUSTOMER_IP,
    LCR_BERLIN,
    MOBILE,
    SYSTEM,
    cluster,
    rate,
    release,
    suppliers_of,
    update_peer,
)

# --- A routed call, whole -------------------------------------------------------------------


def test_a_call_from_the_customer_address_is_priced_routed_by_least_cost_and_granted(world):
    decision = world.call(BERLIN)

    assert (decision.action, decision.code, decision.reason) == ("route", 200, "OK")
    assert decision.peer.id == world.customer.pk
    assert (decision.caller, decision.callee) == (CALLER, BERLIN)
    assert (decision.sell.prefix, decision.sell.destination, decision.sell.tariff.price) == (
        "49",
        "Germany",
        Decimal("0.02"),
    )
    assert decision.plan == "Main" and decision.rule.id == world.rule.pk
    assert suppliers_of(decision) == LCR_BERLIN
    assert [t.uri for t in decision.targets] == [
        "sip:192.0.2.2:5060",
        "sip:192.0.2.4:5060",
        "sip:192.0.2.1:5060",
        "sip:192.0.2.3:5060",
    ]
    assert [(t.caller, t.callee) for t in decision.targets] == [(CALLER, BERLIN)] * 4
    # 10.00 at 0.02/min pays 30,000 s; the cluster's ceiling (7200 s) caps it: 2.40 held,
    # the short way (the account's money was not read: it paid for the whole call).
    assert (decision.max_duration, decision.amount, decision.available) == (7200, Decimal("2.40"), None)
    assert Account.objects.get(peer=world.customer).reserved == Decimal("2.40")
    assert [s.name for s in decision.steps] == [
        "identify",
        "status",
        "node",
        "rewrite",
        "blocklists",
        "sell rate",
        "routing",
        "routes",
        "money",
    ]
    assert all(step.ok for step in decision.steps)
    assert decision.steps[0].detail == f"Acme (#{world.customer.pk}) by source address {CUSTOMER_IP}"
    held = Reservation.objects.get(pk=decision.reservation)
    assert (held.call_id, held.amount, held.max_duration, held.prefix, held.destination) == (
        decision.request.call_id,
        Decimal("2.40"),
        7200,
        "49",
        "Germany",
    )
    # The reservation names the first attempt.
    assert (held.route_id, held.supplier_id, held.node_id) == (
        world.routes["Bravo"].pk,
        world.suppliers["Bravo"].pk,
        world.node.pk,
    )


def test_the_response_carries_every_field_opensips_reads(world):
    update_peer(world.customer, record_calls=True, max_calls=5, max_cps=3)
    decision = world.call(BERLIN)
    response = decision.as_response()
    node = world.node

    assert set(response) == {
        "action",
        "code",
        "reason",
        "call_id",
        "peer_id",
        "max_duration",
        "reservation",
        "caller",
        "callee",
        "destination",
        "kind",
        "routes",
        "redirect",
        "record",
        "recording",
        "capture",
        "announce",
        "limits",
    }
    assert response["routes"][0] == {
        "route_id": world.routes["Bravo"].pk,
        "supplier_id": world.suppliers["Bravo"].pk,
        "gateway_id": world.gateways["Bravo"].pk,
        "uri": "sip:192.0.2.2:5060",
        "caller": CALLER,
        "callee": BERLIN,
        "setup_timeout": None,
        "max_calls": None,
        "stop_hunting": False,
        "aor": None,
        "ring": None,
        "record": True,
        "codecs": None,
        "codecs_re": None,
        "leg": f"[leg_timeout=60,sip_h_X-SS-Route={world.suppliers['Bravo'].pk}:{world.gateways['Bravo'].pk}:"
        f"{BERLIN}]sofia/smartswitch/{BERLIN}@192.0.2.2:5060;fs_path=sip:{node.sip_address}:{node.sip_port}",
    }
    assert response["kind"] == "off-net"
    assert (response["record"], response["limits"], response["redirect"]) == (
        True,
        {"max_calls": 5, "cps": 3, "cps_node": 2},
        None,
    )
    assert (response["destination"], response["reservation"], response["peer_id"]) == (
        "Germany",
        decision.reservation,
        world.customer.pk,
    )


def test_a_rejected_call_is_not_recorded_and_has_no_routes_or_time(world):
    update_peer(world.customer, record_calls=True)
    response = world.call("81312345678").as_response()
    assert (response["action"], response["code"], response["record"]) == ("reject", 404, False)
    assert (response["routes"], response["max_duration"], response["reservation"]) == ([], 0, None)
    assert response["destination"] == ""


# --- Money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "tariff", "seconds", "amount"),
    [
        # 1.00 at 0.60/min pays 100 s; billed per minute that is one minute.
        ("1.00", {"price": "0.60", "minimum": 60, "increment": 60}, 60, "0.60"),
        # 30 s then 6 s steps: 30 + 11 * 6 = 96 s (102 s would cost 1.02).
        ("1.00", {"price": "0.60", "minimum": 30, "increment": 6}, 96, "0.96"),
        # The fee comes first: 0.90 left pays 90 s.
        ("1.00", {"price": "0.60", "fee": "0.10"}, 90, "1.00"),
        # 0.07 at 0.06/min: 70 s to the second.
        ("0.07", {"price": "0.06"}, 70, "0.07"),
        # Free of charge (sold at a loss): the ceiling.
        ("0.01", {"price": "0"}, 7200, "0"),
    ],
)
def test_a_prepaid_call_is_granted_the_seconds_its_balance_pays_for(world, balance, tariff, seconds, amount):
    price = tariff.pop("price")
    customer = world.add_customer(
        "Prepaid", "203.0.113.20", rates=[rate("49", price, **tariff)], balance=balance
    )
    update_peer(customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    decision = world.call(source_ip="203.0.113.20")
    assert (decision.routed, decision.max_duration, decision.amount) == (True, seconds, Decimal(amount))
    # What was read on the long way; a balance that pays for the ceiling takes the short one.
    assert decision.available == (None if seconds == 7200 else Decimal(balance))
    assert Account.objects.get(peer=customer).reserved == Decimal(amount)


def test_a_balance_below_the_first_billed_minute_is_refused(world):
    world.add_customer(
        "Short", "203.0.113.21", rates=[rate("49", "0.60", minimum=60, increment=60)], balance="0.59"
    )
    decision = world.call(source_ip="203.0.113.21")
    assert (decision.code, decision.reason) == (402, "Insufficient funds")


def test_a_postpaid_call_may_use_the_credit_limit(world):
    customer = world.add_customer(
        "Postpaid",
        "203.0.113.22",
        rates=[rate("49", "0.60")],
        balance="0",
        account_mode=Account.Mode.POSTPAID,
        credit_limit=Decimal("5.00"),
    )
    decision = world.call(source_ip="203.0.113.22")
    assert (decision.max_duration, decision.amount, decision.available) == (500, Decimal("5"), Decimal("5"))
    release(decision.reservation)

    account = Account.objects.get(peer=customer)
    billing.post_adjustment(account, actor=SYSTEM, amount=Decimal("-2.00"), reason="last month")
    decision = world.call(source_ip="203.0.113.22")
    assert (decision.max_duration, decision.amount, decision.available) == (300, Decimal("3"), Decimal("3"))
    release(decision.reservation)

    billing.post_adjustment(account, actor=SYSTEM, amount=Decimal("-5.00"), reason="over the limit")
    assert world.call(source_ip="203.0.113.22").code == 402


def test_the_cluster_ceiling_caps_the_grant_and_the_hold_covers_its_billed_time(world):
    cluster(max_call_duration=100)
    world.add_customer(
        "Rich", "203.0.113.23", rates=[rate("49", "0.60", minimum=60, increment=60)], balance="10"
    )
    decision = world.call(source_ip="203.0.113.23")
    # 100 s is billed as two minutes.
    assert (decision.max_duration, decision.amount) == (100, Decimal("1.20"))


def test_each_reservation_lowers_what_the_next_call_may_use_and_a_release_gives_it_back(world):
    cluster(max_call_duration=600)
    customer = world.add_customer("Budget", "203.0.113.24", rates=[rate("49", "0.06")], balance="1.00")

    def reserved():
        return Account.objects.get(peer=customer).reserved

    first = world.call(source_ip="203.0.113.24")
    assert (first.max_duration, first.amount, first.available) == (
        600,
        Decimal("0.60"),
        None,
    )  # the short way
    second = world.call(source_ip="203.0.113.24")
    assert (second.max_duration, second.amount, second.available) == (400, Decimal("0.40"), Decimal("0.40"))
    assert reserved() == Decimal("1.00")
    assert world.call(source_ip="203.0.113.24").code == 402

    release(first.reservation)
    assert reserved() == Decimal("0.40")
    third = world.call(source_ip="203.0.113.24")
    assert (third.max_duration, third.amount, third.available) == (600, Decimal("0.60"), None)


def test_the_same_call_id_asked_twice_gets_the_same_reservation(world):
    update_peer(world.customer, max_calls=1)
    first = world.call(call_id="retried@pbx")
    again = world.call(call_id="retried@pbx")
    assert again.routed  # not refused as a second live call
    assert (again.reservation, again.max_duration, again.amount) == (
        first.reservation,
        first.max_duration,
        first.amount,
    )
    assert again.available == first.available == Decimal("10")
    assert Reservation.objects.count() == 1
    assert Account.objects.get(peer=world.customer).reserved == first.amount


# --- Check routing agrees with call control ------------------------------------------------


def test_checking_without_reserving_gives_the_same_answer_and_writes_nothing(world):
    cluster(max_call_duration=600)
    update_peer(world.customer, max_calls=3)
    snapshot = world.snapshot()
    request = world.request(MOBILE, call_id="check@pbx")

    estimated = settle(snapshot, decide(snapshot, request, at=timezone.now()), reserve=False)
    assert not Reservation.objects.exists()
    assert Account.objects.get(peer=world.customer).reserved == 0
    reserved = settle(snapshot, decide(snapshot, request, at=timezone.now()), reserve=True)

    assert estimated.targets == reserved.targets
    assert [c.excluded for c in estimated.candidates] == [c.excluded for c in reserved.candidates]
    assert (estimated.max_duration, estimated.amount, estimated.available) == (
        reserved.max_duration,
        reserved.amount,
        reserved.available,
    )
    assert (estimated.reservation, isinstance(reserved.reservation, int)) == (None, True)
    assert estimated.steps[-1].detail.endswith(" would be reserved")
    assert reserved.steps[-1].detail.endswith(" reserved")


def test_check_routing_refuses_what_call_control_refuses_for_money(world):
    world.add_customer("Empty", "203.0.113.25", balance="0")
    estimated = world.call(source_ip="203.0.113.25", reserve=False)
    reserved = world.call(source_ip="203.0.113.25", reserve=True)
    assert (
        (estimated.code, estimated.reason) == (reserved.code, reserved.reason) == (402, "Insufficient funds")
    )


def test_the_check_routing_tool_explains_the_decision_call_control_takes(world):
    update_peer(world.customer, profit_control=Peer.ProfitControl.NO_LOSS)
    checked = check_routing(CheckInput(callee=MOBILE, caller=CALLER, peer=world.customer, node=world.node))
    snapshots.forget()
    taken = world.call(MOBILE, call_id="check-routing")
    assert checked.targets == taken.targets
    assert (checked.max_duration, checked.amount) == (taken.max_duration, taken.amount)
    assert checked.reservation is None and taken.reservation is not None
    assert Reservation.objects.count() == 1
