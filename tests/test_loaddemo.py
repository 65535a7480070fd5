"""`manage.py loaddemo`: consistent demo data that a second run leaves as it is.

The demo is loaded once for the module (twice, in fact: the second run is the subject of
the idempotency test) inside a transaction that is rolled back when the module ends; each
test runs in a savepoint of it.
"""

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Length
from django.test.utils import override_settings
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry
from apps.billing.services import ledger_differences
from apps.cdr.models import Cdr
from apps.core.demo import DEMO_PASSWORD
from apps.core.demo.cast import CONTROLLERS, CUSTOMERS, ROUTING_PLANS, SUPPLIERS
from apps.core.demo.prices import DESTINATIONS_CSV, PriceBook, RateIndex, load_destinations
from apps.nodes.models import ClusterSettings
from apps.peers.models import Peer
from apps.rates.models import Rate
from apps.rates.tariffs import Tariff, call_cost
from apps.routing.models import Method, RoutingPlan, RoutingRule
from apps.tenancy.models import Reseller
from apps.tenancy.services import authenticate_api_key

CDRS = 200
SIP_FAILURES = {486, 487, 403, 404, 480, 503}
# Hashing seven passwords with the production hasher costs seconds and proves nothing here.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Demo:
    first_output: str
    second_output: str
    counts_after_first: dict[str, int]
    counts_after_second: dict[str, int]


def row_counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def run_loaddemo(**options) -> str:
    out = io.StringIO()
    call_command("loaddemo", stdout=out, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=FAST_HASHERS),
        transaction.atomic(),
    ):
        first = run_loaddemo(cdrs=CDRS)
        after_first = row_counts()
        second = run_loaddemo(cdrs=CDRS)
        after_second = row_counts()
        yield Demo(first, second, after_first, after_second)
        transaction.set_rollback(True)


pytestmark = pytest.mark.django_db


def test_a_second_run_changes_no_row_count(demo):
    changed = {
        label: (before, demo.counts_after_second[label])
        for label, before in demo.counts_after_first.items()
        if demo.counts_after_second[label] != before
    }
    assert changed == {}
    counts = demo.counts_after_first
    assert counts["cdr.Cdr"] == CDRS
    assert counts["nodes.Node"] == 3
    assert counts["tenancy.Reseller"] == 2
    assert counts["peers.Peer"] == len(SUPPLIERS) + len(CUSTOMERS)
    assert counts["peers.Gateway"] == sum(len(s.gateways) for s in SUPPLIERS)
    assert counts["peers.SipAccount"] > 0 and counts["peers.Endpoint"] > 0
    assert counts["rates.RateTable"] == 6
    assert counts["rates.Rate"] > 3000
    assert counts["routing.RoutingPlan"] == len(ROUTING_PLANS)
    assert counts["routing.RoutingRule"] == sum(len(p.rules) for p in ROUTING_PLANS)
    assert counts["routing.Route"] == sum(len(r.routes) for p in ROUTING_PLANS for r in p.rules)
    assert counts["fraud.Controller"] == len(CONTROLLERS)


def test_the_second_run_finds_everything_and_issues_no_new_key(demo):
    assert "created" not in demo.second_output.split("Logins")[0]
    assert "ssk_" not in demo.second_output
    assert "exists" in demo.second_output and "create_api_key" in demo.second_output
    assert "/api/v1/schema/ui/" in demo.first_output and "/portal/" in demo.first_output


def test_the_printed_operator_key_authenticates(demo):
    token = re.search(r"ssk_[A-Za-z0-9_-]+", demo.first_output).group(0)
    key = authenticate_api_key(token)
    assert key is not None and key.scope == "operator"


def test_the_demo_routes_by_a_default_plan_and_gives_a_reseller_an_inheriting_one(demo):
    standard, premium = RoutingPlan.objects.get(name="Standard"), RoutingPlan.objects.get(name="Premium")
    assert ClusterSettings.load().default_routing_plan == standard
    assert premium.parent == standard
    assert dict(Reseller.objects.values_list("name", "routing_plan__name")) == {
        "Alpha Telecom": "Premium",
        "Beta Voice": None,
    }
    rules = {rule.prefix: rule for rule in RoutingRule.objects.filter(plan=standard)}
    assert {prefix: rule.method for prefix, rule in rules.items()} == {
        "": Method.LEAST_COST,
        "447": Method.QUALITY,
        "49": Method.WEIGHT,
        "234": Method.PRIORITY,
        "881": Method.BLOCK,
        "882": Method.BLOCK,
    }
    assert {r.supplier.name for r in rules[""].routes.all()} == {s.name for s in SUPPLIERS}
    assert sorted(r.weight for r in rules["49"].routes.all()) == [30, 70]
    with DESTINATIONS_CSV.open(newline="") as handle:
        prefixes = {row["prefix"] for row in csv.DictReader(handle)}
    assert {"49", "234", "882"} <= prefixes


@pytest.mark.parametrize(
    "username, staff, superuser",
    [
        ("operator", True, True),
        ("alpha", True, False),
        ("beta", True, False),
        ("alpha-cust1", False, False),
        ("beta-cust1", False, False),
        ("orion-noc", False, False),
    ],
)
def test_the_demo_logins_authenticate(demo, username, staff, superuser):
    with override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        user = authenticate(username=username, password=DEMO_PASSWORD)
        assert authenticate(username=username, password=DEMO_PASSWORD + "x") is None
    assert user is not None
    assert (user.is_staff, user.is_superuser) == (staff, superuser)


def test_every_balance_equals_its_ledger_and_prepaid_balances_are_positive(demo):
    assert ledger_differences() == []
    for spec in CUSTOMERS:
        account = Account.objects.get(peer__name=spec.name)
        assert account.mode == spec.mode
        if spec.topup:
            assert account.balance > 0
            assert LedgerEntry.objects.filter(
                account=account, kind="payment", reference__startswith="demo-topup-"
            )
        else:
            assert -account.credit_limit < account.balance < 0


def test_each_priced_call_is_charged_once_on_each_side(demo):
    assert not Cdr.objects.exclude(rating_state=Cdr.RatingState.RATED).exists()
    charges = LedgerEntry.objects.filter(kind="charge")
    for side, cost in (("customer", "sell_cost"), ("supplier", "buy_cost")):
        posted = charges.filter(account__peer__role=side)
        totals = dict(posted.values("cdr_id").annotate(total=Sum("amount")).values_list("cdr_id", "total"))
        priced = dict(Cdr.objects.filter(**{f"{cost}__gt": 0}).values_list("pk", cost))
        assert priced and totals == {pk: -amount for pk, amount in priced.items()}
        owners = set(posted.values_list("account__peer_id", f"cdr__{side}_id"))
        assert all(account_peer == peer for account_peer, peer in owners)
    assert ledger_differences() == []


@pytest.mark.parametrize(
    "username, customers",
    [
        ("alpha", {"Northwind Trading", "Harbor Medical Group"}),
        ("beta", {"Summit Realty", "Lakeside Call Center"}),
    ],
)
def test_reseller_staff_see_only_their_own_peers(demo, username, customers):
    staff = get_user_model().objects.get(username=username)
    assert set(Peer.objects.visible_to(staff).values_list("name", flat=True)) == customers
    calls = Cdr.objects.visible_to(staff)
    assert calls.exists() and set(calls.values_list("customer__name", flat=True)) <= customers


def test_a_portal_login_sees_only_its_own_customer(demo):
    user = get_user_model().objects.get(username="alpha-cust1")
    assert list(Peer.objects.visible_to(user).values_list("name", flat=True)) == ["Northwind Trading"]


def rate_in_force(table_id: int, number: str, moment: datetime) -> Rate:
    prefixes = [number[:length] for length in range(1, len(number) + 1)]
    rate = (
        Rate.objects.filter(table_id=table_id, prefix__in=prefixes)
        .effective_at(moment)
        .order_by(Length("prefix").desc())
        .first()
    )
    assert rate is not None, f"no rate for {number} in table {table_id}"
    return rate


def expected_cost(rate: Rate, duration_ms: int) -> tuple[int, Decimal]:
    tariff = Tariff(
        rate.price, rate.connection_fee, rate.min_seconds, rate.increment_seconds, rate.free_seconds
    )
    return call_cost(tariff, duration_ms)


def test_call_costs_are_the_call_cost_of_the_longest_prefix_in_force(demo):
    calls = list(Cdr.objects.select_related("customer", "supplier").order_by("pk"))
    assert any(c.answered_at for c in calls) and any(not c.answered_at for c in calls)
    for cdr in calls:
        sell = rate_in_force(cdr.customer.sell_rate_table_id, cdr.callee, cdr.created_at)
        # What the customer paid plus what its bundle covered (Northwind's UK minutes).
        listed = None if cdr.sell_cost is None else cdr.sell_cost + cdr.bundle_money
        assert (cdr.billable_seconds, listed) == expected_cost(sell, cdr.duration_ms), cdr.call_id
        if cdr.supplier_id:
            buy = rate_in_force(cdr.supplier.buy_rate_table_id, cdr.callee, cdr.created_at)
            assert (cdr.supplier_billable_seconds, cdr.buy_cost) == expected_cost(buy, cdr.duration_ms)
            assert buy.price <= sell.price  # no route that loses money per minute


def test_the_demo_bundle_covers_northwinds_uk_calls_before_its_money(demo):
    covered = Cdr.objects.filter(customer__name="Northwind Trading", bundle_seconds__gt=0)
    assert covered.exists()
    assert not covered.exclude(callee__startswith="44").exists()
    assert not Cdr.objects.exclude(customer__name="Northwind Trading").filter(bundle_seconds__gt=0).exists()


def test_calls_are_priced_with_the_rate_in_force_when_they_started(demo):
    """Some supplier prices changed twelve days ago: the old price before, the new one after."""
    repriced = Rate.objects.filter(effective_to__isnull=False, table__purpose="buy").first()
    assert repriced is not None
    table_id, prefix, change = repriced.table_id, repriced.prefix, repriced.effective_to
    index = RateIndex([table_id])
    number = prefix + "0" * (15 - len(prefix))
    before = rate_in_force(table_id, number, change - timedelta(seconds=1))
    after = rate_in_force(table_id, number, change)
    assert before.price != after.price
    assert index.tariff(table_id, number, change - timedelta(seconds=1)).price == before.price
    assert index.tariff(table_id, number, change).price == after.price


def test_calls_look_like_a_month_of_traffic(demo):
    calls = list(Cdr.objects.all())
    answered = [c for c in calls if c.sip_code == 200]
    assert 0.45 < len(answered) / len(calls) < 0.75
    assert {c.sip_code for c in calls} - {200} <= SIP_FAILURES
    assert all(c.duration_ms > 0 and c.answered_at and c.ended_at >= c.answered_at for c in answered)
    assert all(c.duration_ms == 0 and c.sell_cost == 0 for c in calls if c.sip_code != 200)
    assert {c.rating_state for c in calls} == {Cdr.RatingState.RATED}
    span = max(c.created_at for c in calls) - min(c.created_at for c in calls)
    assert 20 <= span.days <= 30
    assert len({c.customer_id for c in calls}) == len(CUSTOMERS)


def test_the_last_hour_has_ended_calls_and_the_routing_quality_statistics_have_data(demo):
    from apps.routing.models import QualityStat

    now = timezone.now()
    recent = list(Cdr.objects.filter(created_at__gte=now - timedelta(hours=1)))
    assert recent  # what the quality statistics and the live ASR windows read
    assert all(c.ended_at < now and c.rated_at < now for c in recent)
    assert QualityStat.objects.exists()


def test_a_weak_password_is_refused_before_anything_is_written(demo):
    before = row_counts()
    with pytest.raises(CommandError, match="password"):
        run_loaddemo(password="12345678", cdrs=10)
    assert row_counts() == before


def test_the_price_lists_are_the_same_on_every_build():
    destinations = load_destinations()
    moment = datetime(2026, 1, 1, tzinfo=UTC)

    def snapshot():
        book = PriceBook.build(destinations, start=moment, today=moment)
        return {
            name: [(r.destination.prefix, r.price, r.effective_from) for r in rows]
            for name, rows in book.rows.items()
        }

    assert snapshot() == snapshot()


def test_the_destination_list_has_thousands_of_unique_digit_prefixes():
    with DESTINATIONS_CSV.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    prefixes = [row["prefix"] for row in rows]
    assert len(prefixes) > 1500 and len(set(prefixes)) == len(prefixes)
    assert all(
        p.isdigit() and len(p) < int(row["number_length"]) for p, row in zip(prefixes, rows, strict=True)
    )
    assert {"1", "44", "33", "49", "91", "234", "8816"} <= set(prefixes)


def test_the_sample_price_list_uses_the_canonical_columns():
    path = DESTINATIONS_CSV.parent / "sample_prices" / "cobalt_networks_2026-12.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [
        "prefix", "destination", "rate", "connection_fee", "min_seconds", "increment_seconds",
        "free_seconds", "effective_from", "effective_to",
    ]  # fmt: skip
    assert rows and all(Decimal(row["rate"]) > 0 and int(row["increment_seconds"]) >= 1 for row in rows)
    assert all(datetime.fromisoformat(row["effective_from"]) for row in rows)
