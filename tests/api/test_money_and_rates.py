"""Accounts, ledger and price lists are read only through the API; amounts are strings."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.tenancy.scope import Scope
from tests.api.conftest import add_rate, ids, results

SYSTEM = Scope.system()


def test_accounts_show_amounts_as_strings(api, cast):
    account = cast.operator_customer.account
    body = api(cast.operator_key).get(f"/api/v1/accounts/{account.pk}/").json()
    assert body["mode"] == "postpaid"
    assert body["credit_limit"] == "100.000000"
    assert body["balance"] == "0.000000"
    assert body["spendable"] == "100.000000"


@pytest.mark.parametrize("prefix", ["accounts", "ledger-entries", "rate-tables", "rates", "cdrs"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_read_only_endpoints_refuse_writes(api, cast, world, prefix, method):
    obj = world.object_for(prefix)
    url = f"/api/v1/{prefix}/" if method == "post" else f"/api/v1/{prefix}/{obj.pk}/"
    response = getattr(api(cast.operator_key), method)(url, {"amount": "1000"}, format="json")
    assert response.status_code == 405
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_ledger_filters_by_account_kind_and_time(api, cast, world):
    account = cast.a.customer.account
    payment, _ = billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="p-1")
    refund, _ = billing.post_refund(account, actor=SYSTEM, amount=Decimal("3"), reference="r-1")
    client = api(cast.a.staff_key)
    assert ids(client.get("/api/v1/ledger-entries/", {"account": account.pk})) == {payment.pk, refund.pk}
    assert ids(client.get("/api/v1/ledger-entries/", {"account": account.pk, "kind": "refund"})) == {
        refund.pk
    }
    rows = results(client.get("/api/v1/ledger-entries/", {"kind": "refund"}))
    assert [row["amount"] for row in rows] == ["-3.000000"]

    after = (refund.created_at + timedelta(seconds=1)).isoformat()
    assert ids(client.get("/api/v1/ledger-entries/", {"created_after": after})) == set()
    before = (world.ledger_entry.created_at + timedelta(microseconds=1)).isoformat()
    assert ids(client.get("/api/v1/ledger-entries/", {"created_before": before})) == {world.ledger_entry.pk}
    # The stranger's account is refused like a missing one.
    assert api(cast.b.staff_key).get("/api/v1/ledger-entries/", {"account": account.pk}).status_code == 400


def test_ledger_hides_the_acting_user(api, cast, world):
    row = api(cast.operator_key).get(f"/api/v1/ledger-entries/{world.ledger_entry.pk}/").json()
    assert "actor" not in row
    assert row["actor_label"] == "system"
    assert row["amount"] == "25.000000"


def test_rates_filter_by_table_prefix_and_moment(api, cast, world):
    now = timezone.now()
    old = add_rate(
        world.rate_table, "33", "0.05", start=now - timedelta(days=30), end=now - timedelta(days=10)
    )
    current = add_rate(world.rate_table, "33", "0.04", start=now - timedelta(days=10))
    mobile = add_rate(world.rate_table, "336", "0.09")
    other = add_rate(cast.a.sell_table, "33", "0.07")
    client = api(cast.a.staff_key)
    assert ids(client.get("/api/v1/rates/", {"table": world.rate_table.pk, "prefix": "33"})) == {
        old.pk,
        current.pk,
    }
    assert ids(client.get("/api/v1/rates/", {"prefix": "33"})) == {old.pk, current.pk, other.pk}
    assert ids(client.get("/api/v1/rates/", {"table": world.rate_table.pk, "prefix_startswith": "33"})) == {
        old.pk,
        current.pk,
        mobile.pk,
    }
    moment = (now - timedelta(days=20)).isoformat()
    assert ids(client.get("/api/v1/rates/", {"table": world.rate_table.pk, "effective_at": moment})) == {
        old.pk
    }
    assert ids(
        client.get("/api/v1/rates/", {"table": world.rate_table.pk, "effective_at": now.isoformat()})
    ) == {
        current.pk,
        mobile.pk,
        world.rate.pk,
    }
    assert client.get("/api/v1/rates/", {"effective_at": "yesterday"}).status_code == 400


def test_a_customer_sees_only_the_rates_it_pays(api, cast, world):
    mine = add_rate(cast.a.sell_table, "49", "0.02")
    assert ids(api(cast.a.customer_key).get("/api/v1/rates/")) == {mine.pk}
    row = api(cast.a.customer_key).get(f"/api/v1/rates/{mine.pk}/").json()
    assert (row["price"], row["billing_notation"]) == ("0.020000", "1/1/0")


def test_resellers_do_not_see_buy_price_lists(api, cast):
    buy = cast.supplier.buy_rate_table
    assert buy.pk in ids(api(cast.operator_key).get("/api/v1/rate-tables/", {"purpose": "buy"}))
    assert ids(api(cast.a.staff_key).get("/api/v1/rate-tables/", {"purpose": "buy"})) == set()
    assert api(cast.a.staff_key).get(f"/api/v1/rate-tables/{buy.pk}/").status_code == 404


def test_ledger_filters_call_charges_by_when_the_call_happened(api, cast, unrated_call):
    from apps.billing.services import rating

    long_ago = unrated_call(
        cast.a.customer, "0.012", node=cast.node, created_at=timezone.now() - timedelta(days=40)
    )
    recent = unrated_call(cast.a.customer, "0.012", node=cast.node)
    rating.rate_batch()
    cutoff = (recent.created_at - timedelta(days=1)).isoformat()
    rows = results(api(cast.a.staff_key).get("/api/v1/ledger-entries/", {"occurred_before": cutoff}))
    assert [row["cdr"] for row in rows] == [long_ago.pk]
    rows = results(api(cast.a.staff_key).get("/api/v1/ledger-entries/", {"occurred_after": cutoff}))
    assert [row["cdr"] for row in rows] == [recent.pk]
