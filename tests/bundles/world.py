"""The cast with bundles, for the admin, API and portal tests: built once per module.

A bundle in each catalogue (the operator's, reseller A's, reseller B's), each customer of the
cast subscribed to its owner's, from the first day of the month before last on its clock:
reseller A's customer has used part of this period and of last month's. Dates are computed
from today on the customer's clock, never written in.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pytest

from apps.bundles import periods
from apps.bundles.models import Bundle, Subscription, Usage
from apps.bundles.services import catalogue
from apps.bundles.services.usage import ensure_usage, offer_of
from apps.tenancy.scope import Scope
from tests.conftest import Cast, build_cast, rows_for_module

SYSTEM = Scope.system()
# Who looks, by the cast's names (as tests/invoicing): the operator, each reseller's staff and customer.
WHO = ["operator", "a.staff", "b.staff", "a.customer", "b.customer"]


@dataclass
class Bundles:
    cast: Cast
    operator: Bundle
    a: Bundle
    b: Bundle
    operator_sub: Subscription
    a_sub: Subscription
    b_sub: Subscription
    a_now: Usage  # this period of reseller A's customer's subscription
    a_last: Usage  # the period before it

    @property
    def bundles(self) -> list[Bundle]:
        return [self.operator, self.a, self.b]

    @property
    def subscriptions(self) -> list[Subscription]:
        return [self.operator_sub, self.a_sub, self.b_sub]

    def visible(self, who: str, what: str) -> set[int]:
        """Ids of the bundles or subscriptions (`what`) that `who` may see."""
        objects = {
            "bundles": {"operator": self.bundles, "a": [self.a], "b": [self.b]},
            "subscriptions": {"operator": self.subscriptions, "a": [self.a_sub], "b": [self.b_sub]},
        }[what]
        return {obj.pk for obj in objects["operator" if who == "operator" else who.split(".")[0]]}


def first_of_previous_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


def use(usage_id: int, *, seconds: int = 0, money: str = "0", calls: int) -> Usage:
    """What the rater would have written after `calls` calls took this much of the period."""
    Usage.objects.filter(pk=usage_id).update(used_seconds=seconds, used_money=Decimal(money), calls=calls)
    return Usage.objects.get(pk=usage_id)


def build_bundles() -> Bundles:
    cast = build_cast()
    operator = catalogue.create_bundle(
        actor=SYSTEM, name="World 100", kind="minutes", minutes=100, price=Decimal("9.90"), prefixes="44\n33"
    )
    a = catalogue.create_bundle(
        actor=SYSTEM,
        reseller=cast.a.reseller,
        name="Germany 60",
        kind="minutes",
        minutes=60,
        price=Decimal("5"),
        prefixes="49",
        destinations="Germany mobile",
    )
    b = catalogue.create_bundle(
        actor=SYSTEM,
        reseller=cast.b.reseller,
        name="France money",
        kind="money",
        money=Decimal("5"),
        prefixes="33",
    )
    subscriptions = {}
    for name, account, bundle in [
        ("operator", cast.operator_customer.account, operator),
        ("a", cast.a.customer.account, a),
        ("b", cast.b.customer.account, b),
    ]:
        start = first_of_previous_month(first_of_previous_month(timezone_today(account)))
        subscriptions[name] = catalogue.subscribe(account, bundle, actor=SYSTEM, starts_on=start)
    a_sub = Subscription.objects.select_related("bundle", "account__peer").get(pk=subscriptions["a"].pk)
    today = periods.today_of(a_sub)
    offer = offer_of(a_sub)
    a_now = use(ensure_usage(offer, today), seconds=30 * 60 + 15, calls=3)
    a_last = use(ensure_usage(offer, first_of_previous_month(today)), seconds=60 * 60, calls=12)
    return Bundles(
        cast, operator, a, b, subscriptions["operator"], a_sub, subscriptions["b"], a_now=a_now, a_last=a_last
    )


def timezone_today(account) -> date:
    from django.utils import timezone

    return timezone.localdate(timezone=account.zone)


def module_bundles():
    """Fixtures `sold` (the bundles of this module's docstring, built once for the module) and
    `cast` for a test module:

        sold, cast = module_bundles()
    """

    @pytest.fixture(scope="module")
    def sold(django_db_setup, django_db_blocker) -> Bundles:
        with rows_for_module(django_db_blocker):
            yield build_bundles()

    @pytest.fixture
    def cast(sold, db) -> Cast:
        return sold.cast

    return sold, cast
