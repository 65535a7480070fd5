"""Money through the API: amounts past apps.core.money's bounds are a 400 naming the field,
refused before anything is written, and an account stays readable whatever its stored numbers."""

from decimal import Decimal

import pytest
from django.db import connection

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry
from apps.core.models import money_to_db
from apps.core.money import MAX_AMOUNT
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.api.conftest import results

SYSTEM = Scope.system()
HUGE = "99999999999999.99"
# Past MAX_BALANCE, yet held exactly by every database (SQLite's int64 micro-units included).
OUT_OF_RANGE = "9000000000000.99"


def url(account, what: str = "payments") -> str:
    return f"/api/v1/accounts/{account.pk}/{what}/"


def balance(account) -> Decimal:
    return Account.objects.get(pk=account.pk).balance


def everything_reads(api, cast, account, keys=None) -> None:
    """The account, the accounts and the ledger lists answer 200 to every one who may see them."""
    for key in keys or (cast.operator_key, cast.a.staff_key, cast.a.customer_key):
        client = api(key)
        for path in (
            "/api/v1/accounts/",
            f"/api/v1/accounts/{account.pk}/",
            "/api/v1/ledger-entries/",
            f"/api/v1/ledger-entries/?account={account.pk}",
            "/api/v1/accounts/?ordering=-balance",
        ):
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)


@pytest.fixture
def account(cast):
    return cast.a.customer.account


def test_a_payment_of_99999999999999_99_is_a_400_naming_amount_and_every_account_stays_readable(
    api, cast, account
):
    response = api(cast.a.staff_key).post(url(account), {"amount": HUGE, "reference": "huge"}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["amount"]
    assert "1000000000" in response.json()["amount"][0].replace(",", "")
    assert not LedgerEntry.objects.filter(account=account).exists()
    everything_reads(api, cast, account)
    # Later payments and adjustments go through, the operator's and the reseller's.
    paid = api(cast.a.staff_key).post(url(account), {"amount": "12.50", "reference": "ok"}, format="json")
    adjusted = api(cast.operator_key).post(
        url(account, "adjustments"), {"amount": "-2.50", "reason": "fee", "reference": "a"}, format="json"
    )
    assert (paid.status_code, adjusted.status_code) == (201, 201)
    assert balance(account) == Decimal("10")


@pytest.mark.parametrize("what", ["payments", "refunds", "adjustments"])
@pytest.mark.parametrize("amount", [HUGE, str(MAX_AMOUNT + Decimal("0.000001")), "1e15", "-1e30"])
def test_an_amount_past_the_largest_is_a_400_naming_amount(api, cast, account, what, amount):
    body = {"amount": amount, "reference": "r", "reason": "x"}
    response = api(cast.operator_key).post(url(account, what), body, format="json")
    assert response.status_code == 400, response.content
    assert "amount" in response.json()
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_the_largest_amount_is_accepted(api, cast, account):
    response = api(cast.a.staff_key).post(
        url(account), {"amount": "1000000000", "reference": "max"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "1000000000.000000"


def test_a_refund_far_above_the_balance_is_a_400_and_the_account_stays_readable(api, cast, account):
    client = api(cast.a.staff_key)
    client.post(url(account), {"amount": "20", "reference": "pay"}, format="json")
    response = client.post(url(account, "refunds"), {"amount": HUGE, "reference": "rf"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["amount"]
    everything_reads(api, cast, account)
    assert balance(account) == Decimal("20")


def test_a_refund_beyond_what_was_paid_is_a_400_naming_amount(api, cast, account):
    client = api(cast.a.staff_key)
    client.post(url(account), {"amount": "20", "reference": "pay"}, format="json")
    response = client.post(url(account, "refunds"), {"amount": "20.01", "reference": "rf"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["amount"]
    assert "20.000000" in response.json()["amount"][0]
    assert (
        client.post(url(account, "refunds"), {"amount": "20", "reference": "rf"}, format="json").status_code
        == 201
    )


def test_only_the_operator_may_refund_beyond_what_was_paid(api, cast, account):
    body = {"amount": "30", "reference": "rf", "allow_over_refund": True}
    response = api(cast.a.staff_key).post(url(account, "refunds"), body, format="json")
    assert response.status_code == 403
    assert list(response.json()) == ["allow_over_refund"]
    response = api(cast.operator_key).post(url(account, "refunds"), body, format="json")
    assert response.status_code == 201, response.content
    assert balance(account) == Decimal("-30")


def test_a_peer_with_a_huge_credit_limit_is_a_400_naming_it_and_is_not_created(api, cast):
    response = api(cast.operator_key).post(
        "/api/v1/peers/",
        {
            "name": "Too Much",
            "role": "customer",
            "account": {"mode": "postpaid", "credit_limit": "99999999999999.999999", "currency": "USD"},
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "credit_limit" in str(response.json())
    assert not Peer.objects.filter(name="Too Much").exists()


# --- what is already stored: shown, flagged, never a 500 --------------------------------------


def write_raw(table: str, pk: int, **columns) -> None:
    sets = ", ".join(f"{name} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {sets} WHERE id = %s",  # noqa: S608 - names are constants here
            [money_to_db(Decimal(value)) for value in columns.values()] + [pk],
        )


def test_out_of_range_stored_numbers_are_shown_and_flagged(api, cast):
    postpaid = cast.operator_customer.account  # spendable = balance + credit limit
    entry, _ = billing.post_payment(postpaid, actor=SYSTEM, amount=Decimal("5"), reference="p")
    write_raw("billing_account", postpaid.pk, balance=OUT_OF_RANGE, credit_limit=OUT_OF_RANGE)
    write_raw("billing_ledgerentry", entry.pk, amount=OUT_OF_RANGE)
    # Past what SQLite's integer micro-units hold, too: kept there as a REAL, read all the same.
    mine = cast.a.customer.account
    other, _ = billing.post_payment(mine, actor=SYSTEM, amount=Decimal("5"), reference="p")
    write_raw("billing_account", mine.pk, balance=HUGE)
    write_raw("billing_ledgerentry", other.pk, amount=HUGE)
    everything_reads(api, cast, mine)
    everything_reads(api, cast, postpaid, keys=(cast.operator_key,))

    client = api(cast.operator_key)
    body = client.get(f"/api/v1/accounts/{postpaid.pk}/").json()
    assert (body["balance"], body["credit_limit"]) == ("9000000000000.990000", "9000000000000.990000")
    assert body["spendable"] == body["available"] == "18000000000001.980000"
    assert sorted(body["out_of_range"]) == ["available", "balance", "credit_limit", "spendable"]
    [row] = results(client.get(f"/api/v1/ledger-entries/?account={postpaid.pk}"))
    assert (row["amount"], row["out_of_range"]) == ("9000000000000.990000", ["amount"])
    body = api(cast.a.customer_key).get(f"/api/v1/accounts/{mine.pk}/").json()
    assert body["balance"].startswith("9999999999999")
    assert sorted(body["out_of_range"]) == ["available", "balance", "spendable"]
    # An ordinary account says nothing is out of range.
    assert client.get(f"/api/v1/accounts/{cast.b.customer.account.pk}/").json()["out_of_range"] == []
