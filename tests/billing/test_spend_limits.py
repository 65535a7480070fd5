"""Spend limits (docs/FRAUD.md): what calls cost a customer per day and per month on its
own clock, counted in the transaction that posts the charge, and held by call control —
refused once reached, the last call's duration capped by what is left; the reseller's limit
over all its customers. Calls are decided by the real decide/settle at injected moments and
charged by the real rater (tests/conftest.py `unrated_call`)."""

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from apps.billing.models import Account
from apps.billing.services import ledger, rating
from apps.callcontrol.decision import decide, settle
from apps.peers.models import Peer
from apps.tenancy.models import Reseller
from tests.factories import make_reseller
from tests.switching import BERLIN, SYSTEM, rate, release, update_peer

BERLIN_ZONE = ZoneInfo("Europe/Berlin")


@pytest.fixture
def noon():
    """Noon today on the customer's clock (Berlin): whatever the hour, the calls of a test
    fall on one day, the next day is a day later."""
    today = timezone.now().astimezone(BERLIN_ZONE).date()
    return datetime.combine(today, time(12), tzinfo=BERLIN_ZONE)


@pytest.fixture
def spender(world):
    """A customer at 0.60/min (per second) for Germany, 10.00 paid, on Berlin's clock."""
    peer = world.add_customer("Spender", "198.51.100.30", rates=[rate("49", "0.60", "Germany")])
    update_peer(peer, time_zone="Europe/Berlin")
    return Peer.objects.get(pk=peer.pk)


def call(world, peer, at, callee=BERLIN):
    snapshot = world.snapshot()
    decision = decide(snapshot, world.request(callee, source_ip=peer.endpoints.first().ip), at=at)
    return settle(snapshot, decision, reserve=True)


def spend(unrated_call, peer, cost: str, at) -> None:
    """A call of `peer` that cost `cost`, made at `at`, charged by the rater."""
    unrated_call(peer, cost, created_at=at)
    assert rating.rate_batch().charges >= 1


def limit(peer, **limits) -> Account:
    return ledger.update_account(peer.account, actor=SYSTEM, changes=limits)


def test_charges_count_on_the_customers_day_and_month(world, spender, unrated_call, noon):
    spend(unrated_call, spender, "0.25", noon)
    spend(unrated_call, spender, "0.50", noon + timedelta(hours=1))
    account = Account.objects.get(peer=spender)
    assert (account.spent_day, account.spent_day_of) == (Decimal("0.75"), noon.date())
    assert (account.spent_month, account.spent_month_of) == (Decimal("0.75"), noon.date().replace(day=1))
    # 23:30 UTC of the same day is the next day in Berlin: the day starts again.
    next_day = datetime.combine(noon.date(), time(23, 30), tzinfo=ZoneInfo("UTC"))
    spend(unrated_call, spender, "0.10", next_day)
    account.refresh_from_db()
    assert (account.spent_day, account.spent_day_of) == (Decimal("0.10"), noon.date() + timedelta(days=1))
    # A call of the day before, rated late, is not today's spending.
    spend(unrated_call, spender, "0.40", noon)
    account.refresh_from_db()
    assert account.spent_day == Decimal("0.10")


def test_a_daily_limit_stops_calls_once_spent_and_caps_the_last_call(world, spender, unrated_call, noon):
    limit(spender, daily_spend_limit=Decimal("1.00"))
    first = call(world, spender, noon)
    # 1.00 at 0.60/min: 100 s, though the money (10.00) pays for far longer.
    assert (first.routed, first.max_duration) == (True, 100)
    assert "capped by the daily spend limit" in first.steps[-1].detail
    release(first.reservation)

    spend(unrated_call, spender, "0.70", noon + timedelta(minutes=1))
    last = call(world, spender, noon + timedelta(minutes=2))
    assert (last.routed, last.max_duration, last.amount) == (True, 30, Decimal("0.30"))
    # While that call holds its 0.30, nothing is left for another.
    refused = call(world, spender, noon + timedelta(minutes=3))
    assert (refused.code, refused.reason) == (402, "Spend limit reached")
    assert refused.steps[-1].detail == (
        "The daily spend limit 1.000000: 0.700000 spent today, 0.300000 held by live calls."
    )
    release(last.reservation)
    spend(unrated_call, spender, "0.30", noon + timedelta(minutes=4))
    assert call(world, spender, noon + timedelta(minutes=5)).reason == "Spend limit reached"

    # The next day on the customer's clock, calls pass again.
    assert call(world, spender, noon + timedelta(days=1)).max_duration == 100


def test_a_monthly_limit_counts_the_whole_month(world, spender, unrated_call, noon):
    limit(spender, monthly_spend_limit=Decimal("0.50"))
    spend(unrated_call, spender, "0.50", noon)
    refused = call(world, spender, noon + timedelta(minutes=1))
    assert (refused.code, refused.reason) == (402, "Spend limit reached")
    assert "monthly spend limit" in refused.steps[-1].detail


def test_without_a_limit_the_short_way_holds_the_whole_call(world):
    decision = call(world, world.customer, timezone.now())
    assert decision.routed and decision.available is None  # the account was not read


def test_far_from_its_limits_a_call_takes_the_short_way_and_the_limit_still_holds(world, spender, noon):
    # The longest call (2 hours) at 0.60/min is 72.00: limits of 200.00 leave it whole, in one statement.
    limit(spender, daily_spend_limit=Decimal("200"), monthly_spend_limit=Decimal("200"))
    world.pay(spender, "1000")
    first = call(world, spender, noon)
    assert (first.routed, first.available, first.max_duration) == (True, None, 7200)
    second = call(world, spender, noon)
    assert (second.routed, second.available, second.max_duration) == (True, None, 7200)
    # 144.00 held: what is left (56.00) does not pay for a whole call: the long way cuts it.
    third = call(world, spender, noon)
    assert third.max_duration == 5600 and "capped by the daily spend limit" in third.steps[-1].detail
    assert Account.objects.get(peer=spender).reserved == Decimal("200")


def test_a_resellers_daily_limit_sums_its_customers(world, unrated_call, noon):
    reseller = make_reseller("Wholesale")
    Reseller.objects.filter(pk=reseller.pk).update(daily_spend_limit=Decimal("1.00"))
    one = world.add_customer("One", "198.51.100.41", reseller=reseller, rates=[rate("49", "0.60", "Germany")])
    two = world.add_customer("Two", "198.51.100.42", reseller=reseller, rates=[rate("49", "0.60", "Germany")])
    other = world.add_customer("Elsewhere", "198.51.100.43", rates=[rate("49", "0.60", "Germany")])
    for peer in (one, two, other):
        update_peer(peer, time_zone="Europe/Berlin")
    spend(unrated_call, one, "0.60", noon)
    spend(unrated_call, other, "5.00", noon)  # another reseller's customer counts for nothing

    capped = call(world, two, noon + timedelta(minutes=1))
    assert (capped.max_duration, capped.steps[-1].detail.count("reseller's daily spend limit")) == (40, 1)
    release(capped.reservation)
    spend(unrated_call, two, "0.40", noon + timedelta(minutes=2))
    refused = call(world, one, noon + timedelta(minutes=3))
    assert (refused.code, refused.reason) == (402, "Spend limit reached")
    assert "reseller's daily spend limit 1.000000: 1.000000 spent today" in refused.steps[-1].detail


# --- Where they are seen ---------------------------------------------------------------------


def test_the_customer_sees_its_limits_spent_and_maximum_price_in_the_portal(cast, login, unrated_call):
    customer = cast.a.customer
    limit(customer, daily_spend_limit=Decimal("5.00"))
    update_peer(customer, max_price=Decimal("0.30"))
    spend(unrated_call, customer, "1.25", timezone.now())
    page = login(cast.a.customer_user).get("/portal/").content.decode()
    assert 'id="spent-today">1.25 USD' in page
    assert "Daily limit 5.00 USD" in page
    assert "No monthly limit" in page
    assert 'id="max-price">0.3000 USD/min' in page


def test_the_api_shows_an_accounts_limits_and_spending(cast, api, unrated_call):
    customer = cast.a.customer
    limit(customer, monthly_spend_limit=Decimal("20.00"))
    spend(unrated_call, customer, "0.50", timezone.now())
    data = api(cast.a.customer_key).get(f"/api/v1/accounts/{customer.account.pk}/").json()
    assert (data["daily_spend_limit"], data["monthly_spend_limit"]) == (None, "20.000000")
    assert (data["spent_today"], data["spent_this_month"]) == ("0.500000", "0.500000")


def test_yesterdays_spending_shows_as_nothing_today(world, spender, unrated_call, noon):
    from apps.billing.spending import spent

    spend(unrated_call, spender, "0.50", noon)
    account = Account.objects.select_related("peer").get(peer=spender)
    assert spent(account, now=noon).today == Decimal("0.50")
    assert spent(account, now=noon + timedelta(days=1)).today == 0


def test_the_operator_sets_an_accounts_limits_in_the_admin(cast, login):
    account = cast.a.customer.account
    client = login(cast.operator)
    url = f"/admin/billing/account/{account.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="daily_spend_limit"' in page and "Spent today:" in page
    form = {
        "mode": account.mode,
        "credit_limit": account.credit_limit,
        "low_balance_threshold": "",
        "notification_email": "",
        "daily_spend_limit": "3.50",
        "monthly_spend_limit": "",
        "invoice_period": account.invoice_period,
        "tax_rate": "",
        "invoice_language": "",
    }
    assert client.post(url, form).status_code == 302
    account.refresh_from_db()
    assert (account.daily_spend_limit, account.monthly_spend_limit) == (Decimal("3.50"), None)


def test_the_resellers_page_shows_its_limits_and_its_customers_spending(cast, login, unrated_call):
    reseller = cast.a.reseller
    Reseller.objects.filter(pk=reseller.pk).update(daily_spend_limit=Decimal("50.00"))
    spend(unrated_call, cast.a.customer, "2.50", timezone.now())
    page = login(cast.operator).get(f"/admin/tenancy/reseller/{reseller.pk}/change/").content.decode()
    assert "Daily spend limit:" in page and "50.00" in page
    assert "Spent today (all its customers):" in page and "2.500000" in page


def test_the_peer_page_shows_the_customers_maximum_price(cast, login):
    update_peer(cast.a.customer, max_price=Decimal("0.25"))
    page = login(cast.operator).get(f"/admin/peers/peer/{cast.a.customer.pk}/change/").content.decode()
    assert "Maximum price" in page and "0.25" in page
