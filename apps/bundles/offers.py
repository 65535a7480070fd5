"""What a subscription offers a call, without the ORM: which calls it covers, its periods,
what each period includes, and what a partly covered call still costs.

Call control holds these in its snapshot; the rater reads them once per batch.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from apps.billing.services.fees import period_around
from apps.core.money import MONEY_PLACES, money
from apps.rates.tariffs import round_half_up

MINUTES, MONEY = "minutes", "money"
MICRO = Fraction(1, 10**MONEY_PLACES)


@dataclass(frozen=True, slots=True)
class Offer:
    """One subscription as calls see it."""

    subscription_id: int
    account_id: int
    name: str
    kind: str  # MINUTES or MONEY
    period: str  # "daily" or "monthly"
    minutes: int
    money: Decimal
    prefixes: tuple[str, ...]
    destinations: frozenset[str]  # lower case
    starts_on: date
    ends_on: date | None

    def in_force(self, day: date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)

    def covers(self, number: str, destination: str) -> bool:
        """A call to `number` (as priced), named `destination` by the sell price list."""
        if destination and destination.lower() in self.destinations:
            return True
        return any(number.startswith(prefix) for prefix in self.prefixes)

    def period_of(self, day: date) -> tuple[date, date]:
        return period_around(self.period, day)

    def included(self, period_start: date, period_end: date) -> tuple[int, Decimal]:
        """(seconds, money) the period includes: the whole allowance, or its share of the
        period's days that the subscription covers, rounded down."""
        first = max(period_start, self.starts_on)
        last = period_end if self.ends_on is None else min(period_end, self.ends_on)
        days = max((last - first).days + 1, 0)
        share = Fraction(days, (period_end - period_start).days + 1)
        if self.kind == MINUTES:
            return int(self.minutes * 60 * share), Decimal(0)
        return 0, floor_money(Fraction(money(self.money)) * share)


def floor_money(exact: Fraction) -> Decimal:
    return money(Decimal(exact // MICRO).scaleb(-MONEY_PLACES))


def first_offer(offers, number: str, destination: str, day: date) -> Offer | None:
    """The subscription a call uses: the oldest in force that covers it."""
    for offer in offers:
        if offer.in_force(day) and offer.covers(number, destination):
            return offer
    return None


def seconds_value(price: Decimal, seconds: int) -> Decimal:
    """What `seconds` of a call are worth at `price` per minute, rounded down: the money
    call control may count on for seconds a bundle includes (never more than the rater
    will take off the call)."""
    return floor_money(Fraction(money(price)) * seconds / 60)


def net_of_seconds(cost: Decimal, billable: int, covered: int) -> Decimal:
    """A call's cost less the share of its billable seconds a bundle covered."""
    if covered <= 0 or billable <= 0:
        return cost
    if covered >= billable:
        return money(0)
    return money(round_half_up(Fraction(money(cost)) * (billable - covered) / billable))


def net_cost(listed: Decimal, billable: int, seconds: int, money_covered: Decimal) -> Decimal:
    """What a call costs after its bundle: by the seconds a minutes bundle covered, else
    less the money a money bundle paid (re-rating keeps what the bundle covered)."""
    if seconds:
        return net_of_seconds(listed, billable, seconds)
    return max(money(listed) - money(money_covered or 0), money(0))
