"""Reading the ledger through the API: by account, kind, occurrence time and call; accounts show
what live calls hold and what is left."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.services import Posting, rating, reservations
from apps.billing.services.reservations import Hold
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from tests.api.conftest import ids, results

SYSTEM = Scope.system()
LEDGER = "/api/v1/ledger-entries/"


def post_at(account, kind: str, amount: str, reference: str, occurred_at, **fields):
    ((entry, _),) = billing.post(
        [Posting(account.pk, kind, Decimal(amount), reference=reference, occurred_at=occurred_at, **fields)]
    )
    return entry


def test_accounts_show_what_live_calls_hold_and_what_is_available(api, cast):
    peer = cast.operator_customer  # postpaid, credit limit 100
    billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("10"))
    reservations.reserve(
        Hold(
            account_id=peer.account.pk,
            customer_id=peer.pk,
            call_id="live@pbx",
            tariff=Tariff(Decimal("0.60")),
            ceiling=120,
            grace=60,
        )
    )
    body = api(cast.operator_key).get(f"/api/v1/accounts/{peer.account.pk}/").json()
    assert (body["balance"], body["reserved"], body["spendable"], body["available"]) == (
        "10.000000",
        "1.200000",
        "110.000000",
        "108.800000",
    )
    assert body["notification_email"] == ""


def test_the_ledger_filters_by_occurrence_range(api, cast):
    account = cast.a.customer.account
    now = timezone.now()
    old = post_at(account, "payment", "1", "old", now - timedelta(days=10))
    mid = post_at(account, "payment", "1", "mid", now - timedelta(days=5))
    new = post_at(account, "payment", "1", "new", now - timedelta(days=1))
    client = api(cast.a.staff_key)
    since = (now - timedelta(days=6)).isoformat()
    until = (now - timedelta(days=2)).isoformat()
    assert ids(client.get(LEDGER, {"occurred_after": since})) == {mid.pk, new.pk}
    assert ids(client.get(LEDGER, {"occurred_before": until})) == {old.pk, mid.pk}
    assert ids(client.get(LEDGER, {"occurred_after": since, "occurred_before": until})) == {mid.pk}
    response = client.get(LEDGER, {"occurred_after": "last week"})
    assert response.status_code == 400
    assert "occurred_after" in response.json()


def test_the_ledger_orders_by_occurrence(api, cast):
    account = cast.a.customer.account
    now = timezone.now()
    late = post_at(account, "payment", "1", "late", now - timedelta(days=1))
    early = post_at(account, "payment", "1", "early", now - timedelta(days=3))
    client = api(cast.a.staff_key)
    rows = results(client.get(LEDGER, {"account": account.pk, "ordering": "occurred_at"}))
    assert [row["id"] for row in rows] == [early.pk, late.pk]
    rows = results(client.get(LEDGER, {"account": account.pk, "ordering": "-occurred_at"}))
    assert [row["id"] for row in rows] == [late.pk, early.pk]


def test_the_ledger_filters_by_call(api, cast, unrated_call):
    mine = unrated_call(cast.a.customer, "0.5")
    unrated_call(cast.a.customer, "0.7")
    rating.rate_batch()
    charge = cast.a.customer.account.entries.get(cdr=mine)
    rows = results(api(cast.a.customer_key).get(LEDGER, {"cdr": mine.pk}))
    assert [(row["id"], row["cdr"], row["amount"]) for row in rows] == [(charge.pk, mine.pk, "-0.500000")]


@pytest.mark.parametrize("stranger", ["b.staff_key", "b.customer_key"])
def test_another_tenants_account_or_call_in_a_filter_is_refused_like_a_missing_one(
    api, cast, unrated_call, stranger
):
    cdr = unrated_call(cast.a.customer, "0.5")
    rating.rate_batch()
    tenant, attribute = stranger.split(".")
    client = api(getattr(getattr(cast, tenant), attribute))
    for name, value in (("cdr", cdr.pk), ("account", cast.a.customer.account.pk), ("cdr", 10**9)):
        response = client.get(LEDGER, {name: value})
        assert response.status_code == 400
        assert name in response.json()


def test_the_ledger_combines_account_kind_and_call_filters(api, cast, unrated_call):
    account = cast.a.customer.account
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("5"), reference="p")
    cdr = unrated_call(cast.a.customer, "0.5")
    rating.rate_batch()
    billing.post_adjustment(account, actor=SYSTEM, amount=Decimal("0.5"), reason="Call refunded")
    client = api(cast.operator_key)
    assert len(results(client.get(LEDGER, {"account": account.pk}))) == 3
    assert [
        row["kind"] for row in results(client.get(LEDGER, {"account": account.pk, "kind": "charge"}))
    ] == ["charge"]
    assert results(client.get(LEDGER, {"cdr": cdr.pk, "kind": "payment"})) == []


def test_the_ledger_list_costs_a_fixed_number_of_queries(api, cast, django_assert_max_num_queries):
    account = cast.a.customer.account
    for n in range(30):
        billing.post_payment(account, actor=SYSTEM, amount=Decimal("1"), reference=f"p-{n}")
    client = api(cast.a.staff_key)
    with django_assert_max_num_queries(6):
        assert len(results(client.get(LEDGER, {"account": account.pk, "limit": 50}))) == 30
