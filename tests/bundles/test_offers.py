"""What a subscription offers a call, without the database: coverage, periods, proration,
and what a partly covered call still costs."""

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from apps.bundles.offers import MINUTES, MONEY, Offer, first_offer, net_cost, net_of_seconds, seconds_value


def offer(kind=MINUTES, *, minutes=100, money="0", starts_on=date(2030, 3, 10), ends_on=None, **kwargs):
    values = {
        "subscription_id": 1,
        "account_id": 1,
        "name": "UK 100",
        "kind": kind,
        "period": "monthly",
        "minutes": minutes,
        "money": Decimal(money),
        "prefixes": ("44",),
        "destinations": frozenset({"france"}),
        "starts_on": starts_on,
        "ends_on": ends_on,
    }
    values.update(kwargs)
    return Offer(**values)


def test_a_call_is_covered_by_prefix_or_by_the_destination_name_in_any_case():
    uk = offer()
    assert uk.covers("442079460000", "")
    assert uk.covers("33123456789", "France")
    assert not uk.covers("4930123456", "Germany")
    assert not uk.covers("4930123456", "France Mobile")  # a name is matched whole


def test_the_oldest_subscription_in_force_that_covers_the_call_is_used():
    later = offer(subscription_id=2, starts_on=date(2030, 1, 1))
    ended = offer(subscription_id=3, starts_on=date(2029, 1, 1), ends_on=date(2030, 3, 31))
    offers = (ended, later)
    assert first_offer(offers, "4420", "", date(2030, 3, 31)).subscription_id == 3
    assert first_offer(offers, "4420", "", date(2030, 4, 1)).subscription_id == 2
    assert first_offer(offers, "4930", "", date(2030, 4, 1)) is None
    assert first_offer(offers, "4420", "", date(2028, 12, 31)) is None


def test_a_period_cut_by_the_start_or_the_end_includes_its_share_of_days_rounded_down():
    sub = offer(minutes=100, starts_on=date(2030, 3, 10))
    assert sub.period_of(date(2030, 3, 15)) == (date(2030, 3, 1), date(2030, 3, 31))
    # 22 of March's 31 days: 6000 s * 22 / 31 = 4258.06
    assert sub.included(date(2030, 3, 1), date(2030, 3, 31)) == (4258, Decimal(0))
    assert sub.included(date(2030, 4, 1), date(2030, 4, 30)) == (6000, Decimal(0))
    ended = offer(minutes=100, starts_on=date(2030, 3, 10), ends_on=date(2030, 4, 15))
    assert ended.included(date(2030, 4, 1), date(2030, 4, 30)) == (3000, Decimal(0))
    assert ended.included(date(2030, 5, 1), date(2030, 5, 31)) == (0, Decimal(0))
    money = offer(MONEY, minutes=0, money="10", starts_on=date(2030, 2, 15))
    # 14 of February's 28 days
    assert money.included(date(2030, 2, 1), date(2030, 2, 28)) == (0, Decimal("5.000000"))


def test_seconds_are_worth_their_price_rounded_down_to_the_micro_unit():
    assert seconds_value(Decimal("0.0150"), 60) == Decimal("0.015")
    assert seconds_value(Decimal("0.0100"), 1) == Decimal("0.000166")  # 0.0001666…


def test_a_partly_covered_call_pays_the_uncovered_share_of_its_billable_seconds():
    assert net_of_seconds(Decimal("0.0225"), 90, 60) == Decimal("0.0075")
    assert net_of_seconds(Decimal("0.0225"), 90, 90) == Decimal(0)
    assert net_of_seconds(Decimal("0.0225"), 90, 0) == Decimal("0.0225")
    assert net_cost(Decimal("0.0225"), 90, 0, Decimal("0.01")) == Decimal("0.0125")
    assert net_cost(Decimal("0.0050"), 90, 0, Decimal("0.01")) == Decimal(0)


@given(
    cost=st.decimals(min_value=0, max_value=1000, places=6),
    billable=st.integers(min_value=1, max_value=36000),
    covered=st.integers(min_value=0, max_value=40000),
)
def test_what_is_left_to_pay_is_never_negative_nor_more_than_the_call(cost, billable, covered):
    left = net_of_seconds(cost, billable, covered)
    assert Decimal(0) <= left <= cost
