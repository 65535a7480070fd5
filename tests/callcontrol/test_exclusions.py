"""Routes left out of a call, each with its reason: disabled, suspended, blocked, unpriced,
loss-making, at their limits, out of money or without a gateway. Every test runs the real
decide/settle on a snapshot built from the database (the world and its prices:
tests/switching.py)."""

from decimal import Decimal

from apps.billing import services as billing
from apps.billing.models import Account
from apps.peers import services as peer_services
from apps.peers.models import Blocklist, Gateway, Peer
from apps.routing.models import Route
from tests.factories import make_peer
from tests.switching import (
    BERLIN,
    CALLER,
    FRANCE,
    LCR_BERLIN,
    MOBILE,
    SYSTEM,
    add_route,
    add_supplier,
    blocklist,
    excluded,
    release,
    suppliers_of,
    update_peer,
)

# --- Exclusions -----------------------------------------------------------------------------


def test_a_disabled_route_is_left_out(world):
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(enabled=False)
    decision = world.decide()
    assert excluded(decision)["Bravo"] == "route disabled"
    assert suppliers_of(decision) == ["Delta", "Alpha", "Charlie"]


def test_a_disabled_or_suspended_supplier_is_left_out(world):
    peer_services.update_peer(world.suppliers["Bravo"], actor=SYSTEM, changes={"enabled": False})
    peer_services.suspend_peer(world.suppliers["Delta"], actor=SYSTEM, reason="Fraud alert")
    decision = world.decide()
    assert excluded(decision) == {
        "Alpha": "",
        "Bravo": "supplier disabled",
        "Charlie": "",
        "Delta": "supplier suspended: Fraud alert",
    }
    assert suppliers_of(decision) == ["Alpha", "Charlie"]


def test_a_suppliers_destination_or_callee_blocklist_leaves_it_out_but_its_caller_list_does_not(world):
    blocklist("Bravo no Berlin", Blocklist.Kind.DESTINATION, ["4930"], peers=[world.suppliers["Bravo"]])
    blocklist("Delta no number", Blocklist.Kind.CALLEE, [BERLIN], peers=[world.suppliers["Delta"]])
    blocklist("Alpha callers", Blocklist.Kind.CALLER, [CALLER], peers=[world.suppliers["Alpha"]])
    decision = world.decide(BERLIN)
    assert excluded(decision) == {
        "Alpha": "",
        "Bravo": "blocked by Bravo no Berlin",
        "Charlie": "",
        "Delta": "blocked by Delta no number",
    }
    assert suppliers_of(decision) == ["Alpha", "Charlie"]
    assert suppliers_of(world.decide("4989123456")) == LCR_BERLIN


def test_a_supplier_without_a_buy_list_or_a_rate_is_left_out(world):
    echo = make_peer("Echo", role=Peer.Role.SUPPLIER)
    peer_services.add_gateway(echo, actor=SYSTEM, name="main", host="192.0.2.5")
    add_route(world.rule, echo)
    decision = world.decide(FRANCE)
    assert excluded(decision) == {
        "Alpha": "",
        "Bravo": "",
        "Charlie": "",
        "Delta": "no rate",
        "Echo": "no buy price list",
    }
    assert suppliers_of(decision) == ["Charlie", "Alpha", "Bravo"]
    assert [c.price for c in decision.candidates if c.supplier in ("Delta", "Echo")] == [None, None]


def test_no_loss_leaves_out_suppliers_dearer_than_the_sell_price(world):
    decision = world.decide(MOBILE)  # sells at 0.08; Delta buys at 0.09
    assert excluded(decision)["Delta"] == "margin: buys at 0.090000, sells at 0.080000 (no loss)"
    assert suppliers_of(decision) == ["Charlie", "Alpha", "Bravo"]


def test_allow_loss_keeps_dearer_suppliers_in_cost_order(world):
    update_peer(world.customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    decision = world.decide(MOBILE)
    assert set(excluded(decision).values()) == {""}
    assert suppliers_of(decision) == ["Charlie", "Alpha", "Bravo", "Delta"]


def test_a_supplier_at_the_sell_price_passes_no_loss_but_not_profit_only(world):
    even = add_supplier("Even", {"49": "0.0200"})
    peer_services.add_gateway(even, actor=SYSTEM, name="main", host="192.0.2.6")
    add_route(world.rule, even)

    assert excluded(world.decide(BERLIN))["Even"] == ""
    assert suppliers_of(world.decide(BERLIN))[-1] == "Even"
    update_peer(world.customer, profit_control=Peer.ProfitControl.PROFIT_ONLY)
    decision = world.decide(BERLIN)
    assert excluded(decision)["Even"] == "margin: buys at 0.020000, sells at 0.020000 (profit only)"
    assert suppliers_of(decision) == LCR_BERLIN
    update_peer(world.customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    assert excluded(world.decide(BERLIN))["Even"] == ""


def test_a_supplier_buying_in_another_currency_is_left_out_unless_losses_are_allowed(world):
    euro = add_supplier("Euro", {"49": "0.0050"}, currency="EUR")
    peer_services.add_gateway(euro, actor=SYSTEM, name="main", host="192.0.2.7")
    add_route(world.rule, euro)

    decision = world.decide(BERLIN)
    assert excluded(decision)["Euro"] == "margin unknown: buys in EUR, sells in USD"
    euro_candidate = next(c for c in decision.candidates if c.supplier == "Euro")
    assert (euro_candidate.price, euro_candidate.currency) == (Decimal("0.005"), "EUR")
    update_peer(world.customer, profit_control=Peer.ProfitControl.PROFIT_ONLY)
    assert excluded(world.decide(BERLIN))["Euro"] == "margin unknown: buys in EUR, sells in USD"
    update_peer(world.customer, profit_control=Peer.ProfitControl.ALLOW_LOSS)
    assert excluded(world.decide(BERLIN))["Euro"] == ""


def test_a_route_at_its_live_call_limit_is_left_out_until_a_call_ends(world):
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(max_calls=1)
    first = world.call(BERLIN)
    assert suppliers_of(first)[0] == "Bravo"  # its reservation counts against Bravo's route

    second = world.call(BERLIN)
    assert excluded(second)["Bravo"] == "limit: 1 live calls"
    assert suppliers_of(second) == ["Delta", "Alpha", "Charlie"]
    # Calls whose first attempt is elsewhere do not count against it.
    assert excluded(world.call(BERLIN))["Bravo"] == "limit: 1 live calls"

    release(first.reservation)
    assert suppliers_of(world.decide(BERLIN))[0] == "Bravo"


def test_a_prepaid_supplier_whose_money_has_run_out_is_left_out(world):
    bravo = world.suppliers["Bravo"]
    Account.objects.filter(peer=bravo).update(mode=Account.Mode.PREPAID)
    assert excluded(world.decide())["Bravo"] == "supplier balance: our prepaid money there has run out"

    world.pay(bravo, "5")
    assert excluded(world.decide())["Bravo"] == ""
    # A postpaid supplier we owe money to is still used.
    delta = world.suppliers["Delta"]
    billing.post_adjustment(
        Account.objects.get(peer=delta), actor=SYSTEM, amount=Decimal("-50"), reason="owed"
    )
    assert excluded(world.decide())["Delta"] == ""


def test_a_supplier_without_an_enabled_gateway_is_left_out(world):
    Gateway.objects.filter(pk=world.gateways["Bravo"].pk).update(enabled=False)
    decision = world.decide()
    assert excluded(decision)["Bravo"] == "no enabled gateway"
    assert suppliers_of(decision) == ["Delta", "Alpha", "Charlie"]


def test_a_route_tries_every_enabled_gateway_in_priority_order_unless_it_names_one(world):
    alpha = world.suppliers["Alpha"]
    backup = peer_services.add_gateway(
        alpha, actor=SYSTEM, name="backup", host="alpha.example.net", port=5080, transport="tcp", priority=5
    )
    first = peer_services.add_gateway(alpha, actor=SYSTEM, name="first", host="2001:db8::1", priority=0)
    peer_services.add_gateway(alpha, actor=SYSTEM, name="down", host="192.0.2.99", enabled=False)
    Gateway.objects.filter(pk=world.gateways["Alpha"].pk).update(priority=3)

    decision = world.decide()
    alpha_targets = [t for t in decision.targets if t.supplier_id == alpha.pk]
    assert [(t.gateway_id, t.uri) for t in alpha_targets] == [
        (first.pk, "sip:[2001:db8::1]:5060"),
        (world.gateways["Alpha"].pk, "sip:192.0.2.1:5060"),
        (backup.pk, "sip:alpha.example.net:5080;transport=tcp"),
    ]
    assert len(decision.targets) == 6

    Route.objects.filter(pk=world.routes["Alpha"].pk).update(gateway=backup)
    pinned = [t for t in world.decide().targets if t.supplier_id == alpha.pk]
    assert [t.gateway_id for t in pinned] == [backup.pk]
    Gateway.objects.filter(pk=backup.pk).update(enabled=False)  # the pinned one is down
    assert excluded(world.decide())["Alpha"] == "no enabled gateway"


def test_a_call_is_never_sent_back_to_the_address_it_came_from(world):
    # The customer's PBX sits on Bravo's gateway address (one box, two peers): Bravo's route
    # would send the call back where it came from.
    peer_services.add_endpoint(world.customer, actor=SYSTEM, ip="192.0.2.2")
    decision = world.decide(BERLIN, source_ip="192.0.2.2")
    assert excluded(decision)["Bravo"] == "loop: its gateway is the call's source address 192.0.2.2"
    assert "sip:192.0.2.2:5060" not in [t.uri for t in decision.targets]
    # From its usual address Bravo is in again.
    assert excluded(world.decide(BERLIN))["Bravo"] == ""
