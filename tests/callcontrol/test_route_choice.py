"""Which suppliers, in which order: number rewriting, the rule that matches, and ordering by
cost, priority, weight and quality. Every test runs the real decide/settle on a snapshot
built from the database (the world and its prices: tests/switching.py)."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from apps.callcontrol.snapshot import MIN_QUALITY_ATTEMPTS
from apps.peers import services as peer_services
from apps.peers.models import Gateway, Peer
from apps.routing.models import Method, QualityMetric, QualityStat, Route, RoutingPlan, RoutingRule
from apps.tenancy.models import Reseller
from tests.factories import make_reseller
from tests.switching import (
    BERLIN,
    CALLER,
    FRANCE,
    LCR_BERLIN,
    MOBILE,
    SYSTEM,
    UK,
    add_route,
    add_rule,
    cluster,
    excluded,
    failed_step,
    set_plan,
    suppliers_of,
)


def quality(supplier: Peer, destination: str, attempts: int, answered: int, seconds: int = 0) -> None:
    now = timezone.now()
    QualityStat.objects.create(
        supplier=supplier,
        destination=destination,
        attempts=attempts,
        answered=answered,
        answered_seconds=seconds,
        window_start=now - timedelta(hours=1),
        window_end=now,
    )


def use_method(world, method: str, **fields) -> None:
    RoutingRule.objects.filter(pk=world.rule.pk).update(method=method, **fields)


# --- Rewriting ------------------------------------------------------------------------------


def test_ingress_rewrites_apply_in_position_order_before_the_rate_lookup(world):
    add = peer_services.add_rewrite_rule
    add(world.customer, actor=SYSTEM, field="callee", pattern="^0", replacement="49", position=2)
    add(world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement="", position=1)
    add(world.customer, actor=SYSTEM, field="caller", pattern=r"^\+", replacement="")
    add(world.customer, actor=SYSTEM, field="callee", pattern="^9", replacement="0", enabled=False)

    international = world.call("0033123456789", caller="+4930111222")
    assert (international.caller, international.callee) == ("4930111222", "33123456789")
    assert international.sell.destination == "France"
    national = world.call("030123456")  # ^00 does not match, then ^0 -> 49
    assert (national.callee, national.sell.destination) == ("4930123456", "Germany")
    assert world.call("9123").reason == "No rate for 9123"  # the disabled rule did nothing
    rewrite = next(s for s in international.steps if s.name == "rewrite")
    assert rewrite.detail == "caller +4930111222 → 4930111222, callee 0033123456789 → 33123456789"


def test_without_the_ingress_rewrite_the_raw_number_has_no_rate(world):
    assert world.call("0033123456789").reason == "No rate for 0033123456789"


def test_each_target_gets_the_suppliers_egress_rewrites_then_the_gateways_strip_and_prefix(world):
    add = peer_services.add_rewrite_rule
    bravo, delta = world.suppliers["Bravo"], world.suppliers["Delta"]
    add(bravo, actor=SYSTEM, field="callee", pattern="^49", replacement="0049", direction="egress")
    add(bravo, actor=SYSTEM, field="caller", pattern="^", replacement="+", direction="egress")
    # An ingress rule of a supplier is not applied to calls sent to it.
    add(delta, actor=SYSTEM, field="callee", pattern="^49", replacement="XX")
    Gateway.objects.filter(pk=world.gateways["Bravo"].pk).update(strip_digits=2, prefix="8")
    Gateway.objects.filter(pk=world.gateways["Delta"].pk).update(strip_digits=2, prefix="9911")

    decision = world.call(BERLIN)
    targets = {t.supplier_id: t for t in decision.targets}
    assert (targets[bravo.pk].caller, targets[bravo.pk].callee) == ("+" + CALLER, "8" + "49" + BERLIN[2:])
    assert (targets[delta.pk].caller, targets[delta.pk].callee) == (CALLER, "9911" + BERLIN[2:])
    alpha = targets[world.suppliers["Alpha"].pk]
    assert (alpha.caller, alpha.callee) == (CALLER, BERLIN)
    assert (decision.caller, decision.callee) == (CALLER, BERLIN)  # what the customer's call is


# --- Rule matching --------------------------------------------------------------------------


def test_the_longest_matching_rule_prefix_wins(world):
    germany = add_rule(world.plan, "49")
    add_route(germany, world.suppliers["Charlie"])
    mobile = add_rule(world.plan, "4915")
    add_route(mobile, world.suppliers["Alpha"])

    assert (world.decide(MOBILE).rule.id, suppliers_of(world.decide(MOBILE))) == (mobile.pk, ["Alpha"])
    assert (world.decide(BERLIN).rule.id, suppliers_of(world.decide(BERLIN))) == (germany.pk, ["Charlie"])
    assert world.decide(FRANCE).rule.id == world.rule.pk
    step = next(s for s in world.decide(MOBILE).steps if s.name == "routing")
    assert step.detail == f"plan Main (peer), rule #{mobile.pk} prefix 4915: lcr"


def test_a_rule_naming_the_destination_beats_one_without_for_the_same_prefix(world):
    plain = add_rule(world.plan, "49", position=0)
    add_route(plain, world.suppliers["Charlie"])
    named = add_rule(world.plan, "49", destination="germany MOBILE", position=7)
    add_route(named, world.suppliers["Alpha"])

    assert world.decide(MOBILE).rule.id == named.pk  # case-insensitive, despite its position
    assert world.decide(BERLIN).rule.id == plain.pk  # "Germany" is not "Germany Mobile"
    step = next(s for s in world.decide(MOBILE).steps if s.name == "routing")
    assert step.detail.endswith("prefix 49, destination germany mobile: lcr")


def test_between_equal_rules_the_lower_position_wins_and_disabled_rules_are_skipped(world):
    later = add_rule(world.plan, "49", position=5)
    add_route(later, world.suppliers["Alpha"])
    earlier = add_rule(world.plan, "49", position=2)
    add_route(earlier, world.suppliers["Charlie"])
    add_route(add_rule(world.plan, "49", position=1, enabled=False), world.suppliers["Bravo"])
    assert world.decide(BERLIN).rule.id == earlier.pk


def test_the_parent_plan_routes_what_the_child_plan_has_no_rule_for(world):
    child = RoutingPlan.objects.create(name="Child", parent=world.plan)
    add_rule(child, "44", Method.BLOCK)
    own = add_rule(child, "33")
    add_route(own, world.suppliers["Alpha"])
    set_plan(world.customer, child)

    from_parent = world.decide(BERLIN)
    assert (from_parent.rule.id, suppliers_of(from_parent), from_parent.plan) == (
        world.rule.pk,
        LCR_BERLIN,
        "Child",
    )
    routing = next(s for s in from_parent.steps if s.name == "routing")
    assert routing.detail.startswith("plan Main (peer)")
    assert world.decide(UK).reason == "Blocked by routing"
    assert suppliers_of(world.decide(FRANCE)) == ["Alpha"]


def test_a_loop_of_parent_plans_ends_in_no_route(world):
    first = RoutingPlan.objects.create(name="First")
    second = RoutingPlan.objects.create(name="Second", parent=first)
    RoutingPlan.objects.filter(pk=first.pk).update(parent=second)
    add_rule(second, "44")
    set_plan(world.customer, first)
    decision = world.decide(BERLIN)
    assert (decision.code, decision.reason, failed_step(decision)) == (503, "No route", "routing")


def test_the_plan_is_the_peers_else_its_resellers_else_the_cluster_default(world):
    reseller_plan = RoutingPlan.objects.create(name="Reseller plan")
    add_route(add_rule(reseller_plan), world.suppliers["Bravo"])
    default_plan = RoutingPlan.objects.create(name="Default plan")
    add_route(add_rule(default_plan), world.suppliers["Charlie"])
    cluster(default_routing_plan=default_plan)
    reseller = make_reseller("Planned")
    Reseller.objects.filter(pk=reseller.pk).update(routing_plan=reseller_plan)
    resold = world.add_customer("Resold", "203.0.113.91", reseller=reseller, plan=None)
    direct = world.add_customer("Direct", "203.0.113.92", plan=None)

    snapshot = world.snapshot()
    own = world.decide(snapshot=snapshot)
    by_reseller = world.decide(snapshot=snapshot, source_ip="203.0.113.91")
    by_default = world.decide(snapshot=snapshot, source_ip="203.0.113.92")
    assert (snapshot.peers[world.customer.pk].plan_source, suppliers_of(own)) == ("peer", LCR_BERLIN)
    assert (snapshot.peers[resold.pk].plan_source, suppliers_of(by_reseller)) == ("reseller", ["Bravo"])
    assert (snapshot.peers[direct.pk].plan_source, suppliers_of(by_default)) == (
        "cluster default",
        ["Charlie"],
    )

    set_plan(resold, world.plan)  # the peer's own plan beats its reseller's
    assert suppliers_of(world.decide(source_ip="203.0.113.91")) == LCR_BERLIN


# --- Ordering -------------------------------------------------------------------------------


def test_least_cost_orders_by_buy_price_then_priority(world):
    decision = world.decide(BERLIN)
    assert [(c.supplier, c.price) for c in decision.candidates] == [
        ("Alpha", Decimal("0.01")),
        ("Bravo", Decimal("0.008")),
        ("Charlie", Decimal("0.012")),
        ("Delta", Decimal("0.008")),
    ]
    assert suppliers_of(decision) == ["Bravo", "Delta", "Alpha", "Charlie"]
    assert suppliers_of(world.decide(UK)) == ["Delta", "Charlie", "Alpha", "Bravo"]
    assert [c.prefix for c in decision.candidates] == ["49"] * 4
    # The tie between Bravo and Delta at 0.008 goes to the better priority.
    Route.objects.filter(pk=world.routes["Delta"].pk).update(priority=0)
    assert suppliers_of(world.decide(BERLIN)) == ["Delta", "Bravo", "Alpha", "Charlie"]


def test_priority_orders_by_priority_then_buy_price(world):
    use_method(world, Method.PRIORITY)
    priorities = {"Alpha": 1, "Bravo": 0, "Charlie": 1, "Delta": 2}
    for name, priority in priorities.items():
        Route.objects.filter(pk=world.routes[name].pk).update(priority=priority)
    # UK: Charlie 0.007 beats Alpha 0.008 in their shared priority 1.
    assert suppliers_of(world.decide(UK)) == ["Bravo", "Charlie", "Alpha", "Delta"]
    # Germany: Alpha 0.010 beats Charlie 0.012.
    assert suppliers_of(world.decide(BERLIN)) == ["Bravo", "Alpha", "Charlie", "Delta"]


def test_weights_give_an_order_fixed_by_the_call_id(world):
    use_method(world, Method.WEIGHT)
    weights = {"Alpha": 40, "Bravo": 30, "Charlie": 20, "Delta": 10}
    for name, weight in weights.items():
        Route.objects.filter(pk=world.routes[name].pk).update(weight=weight)
    snapshot = world.snapshot()
    orders = {}
    for number in range(40):
        call_id = f"weighted-{number}"
        order = suppliers_of(world.decide(snapshot=snapshot, call_id=call_id))
        assert sorted(order) == sorted(weights)
        # The same call asked again, or by another process (a new snapshot), goes the same way.
        assert suppliers_of(world.decide(snapshot=snapshot, call_id=call_id)) == order
        orders[call_id] = order
    assert suppliers_of(world.decide(call_id="weighted-7")) == orders["weighted-7"]
    assert len({tuple(order) for order in orders.values()}) > 1


def test_a_70_30_split_puts_the_heavier_route_first_on_about_70_percent_of_calls(world):
    use_method(world, Method.WEIGHT)
    Route.objects.filter(pk__in=[world.routes["Charlie"].pk, world.routes["Delta"].pk]).delete()
    Route.objects.filter(pk=world.routes["Alpha"].pk).update(weight=70)
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(weight=30)
    snapshot = world.snapshot()
    calls = 2000
    alpha_id = world.suppliers["Alpha"].pk
    first = sum(
        world.decide(snapshot=snapshot, call_id=f"{n:05d}-split@pbx").targets[0].supplier_id == alpha_id
        for n in range(calls)
    )
    assert 0.65 * calls <= first <= 0.75 * calls, first


def test_a_route_of_weight_zero_comes_last(world):
    use_method(world, Method.WEIGHT)
    Route.objects.filter(rule=world.rule).update(weight=1)
    Route.objects.filter(pk=world.routes["Bravo"].pk).update(weight=0)
    snapshot = world.snapshot()
    for number in range(50):
        assert suppliers_of(world.decide(snapshot=snapshot, call_id=f"zero-{number}"))[-1] == "Bravo"


def test_quality_asr_sorts_best_first_with_near_equal_suppliers_tied_and_ordered_by_cost(world):
    use_method(world, Method.QUALITY, quality_metric=QualityMetric.ASR, quality_tolerance=5)
    quality(world.suppliers["Alpha"], "Germany", attempts=100, answered=62)
    quality(world.suppliers["Charlie"], "germany", attempts=100, answered=64)  # case does not matter
    quality(world.suppliers["Delta"], "Germany", attempts=MIN_QUALITY_ATTEMPTS - 1, answered=9)
    quality(world.suppliers["Bravo"], "France", attempts=100, answered=90)  # another destination
    decision = world.decide(BERLIN)

    # Alpha 62 % and Charlie 64 % are both in the 60 step: the cheaper Alpha goes first.
    # Bravo (no Germany figures) and Delta (too few attempts) follow, by cost.
    assert suppliers_of(decision) == ["Alpha", "Charlie", "Bravo", "Delta"]
    assert {c.supplier: (c.quality, c.rank) for c in decision.candidates} == {
        "Alpha": (62.0, 60.0),
        "Bravo": (None, None),
        "Charlie": (64.0, 60.0),
        "Delta": (None, None),
    }
    # A finer step separates them.
    use_method(world, Method.QUALITY, quality_tolerance=1)
    assert suppliers_of(world.decide(BERLIN)) == ["Charlie", "Alpha", "Bravo", "Delta"]


def test_quality_counts_a_supplier_from_the_minimum_number_of_attempts(world):
    use_method(world, Method.QUALITY, quality_tolerance=1)
    quality(world.suppliers["Charlie"], "Germany", attempts=MIN_QUALITY_ATTEMPTS, answered=1)
    decision = world.decide(BERLIN)
    assert {c.supplier: c.quality for c in decision.candidates}["Charlie"] == 10.0
    # Known (if poor) quality goes before unknown.
    assert suppliers_of(decision) == ["Charlie", "Bravo", "Delta", "Alpha"]


def test_quality_acd_sorts_by_average_answered_seconds_in_tolerance_steps(world):
    use_method(world, Method.QUALITY, quality_metric=QualityMetric.ACD, quality_tolerance=10)
    quality(world.suppliers["Alpha"], "Germany", attempts=80, answered=50, seconds=50 * 120)
    quality(world.suppliers["Bravo"], "Germany", attempts=80, answered=50, seconds=50 * 185)
    quality(world.suppliers["Charlie"], "Germany", attempts=80, answered=50, seconds=50 * 181)
    quality(world.suppliers["Delta"], "Germany", attempts=80, answered=0, seconds=0)
    decision = world.decide(BERLIN)

    assert {c.supplier: (c.quality, c.rank) for c in decision.candidates} == {
        "Alpha": (120.0, 120.0),
        "Bravo": (185.0, 180.0),
        "Charlie": (181.0, 180.0),
        "Delta": (0.0, 0.0),
    }
    # Bravo and Charlie tie at 180 s: Bravo is cheaper. Delta answered nothing: last.
    assert suppliers_of(decision) == ["Bravo", "Charlie", "Alpha", "Delta"]


def test_a_stop_hunting_route_ends_the_list(world):
    Route.objects.filter(pk=world.routes["Delta"].pk).update(stop_hunting=True, setup_timeout=8, max_calls=30)
    decision = world.decide(BERLIN)
    assert suppliers_of(decision) == ["Bravo", "Delta"]
    assert excluded(decision) == {
        "Alpha": "after Delta, which stops hunting",
        "Bravo": "",
        "Charlie": "after Delta, which stops hunting",
        "Delta": "",
    }
    last = decision.targets[-1]
    assert (last.stop_hunting, last.setup_timeout, last.max_calls) == (True, 8, 30)
    assert decision.targets[0].stop_hunting is False
    # When it is the last anyway, nothing is dropped.
    assert suppliers_of(world.decide(UK))[0] == "Delta"
    assert len(world.decide(UK).targets) == 1
