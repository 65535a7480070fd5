"""Payments, refunds and adjustments posted through the API: idempotent on the client's
reference, refused with the field named, and only by the operator and the account's reseller."""

from decimal import Decimal

import pytest

from apps.audit.models import AuditEntry
from apps.billing.models import Account, LedgerEntry
from tests.api.conftest import committed_schema


def url(account, what: str = "payments") -> str:
    return f"/api/v1/accounts/{account.pk}/{what}/"


def balance(account) -> Decimal:
    return Account.objects.get(pk=account.pk).balance


@pytest.fixture
def account(cast):
    return cast.a.customer.account


def test_a_payment_is_posted_once_and_answered_with_its_ledger_entry(api, cast, account):
    response = api(cast.a.staff_key).post(
        url(account), {"amount": "12.50", "reference": "bank-1", "description": "Wire"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    entry = LedgerEntry.objects.get(account=account)
    assert body == {
        "id": entry.pk,
        "account": account.pk,
        "kind": "payment",
        "amount": "12.500000",
        "reference": "bank-1",
        "cdr": None,
        "description": "Wire",
        "actor_label": "api-key:A staff",
        "occurred_at": body["occurred_at"],
        "created_at": body["created_at"],
        "out_of_range": [],
    }
    assert balance(account) == Decimal("12.5")
    audit = AuditEntry.objects.get(action="ledger.payment", object_id=str(account.pk))
    assert (audit.actor_label, audit.data["reference"], audit.reseller_id) == (
        "api-key:A staff",
        "bank-1",
        cast.a.reseller.pk,
    )


def test_replaying_a_payment_returns_the_first_entry_and_posts_nothing(api, cast, account):
    client = api(cast.a.staff_key)
    first = client.post(url(account), {"amount": "12.50", "reference": "bank-1"}, format="json")
    again = client.post(url(account), {"amount": "12.5", "reference": "bank-1"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert balance(account) == Decimal("12.5")
    assert LedgerEntry.objects.filter(account=account).count() == 1
    assert AuditEntry.objects.filter(action="ledger.payment").count() == 1


def test_a_reference_replayed_with_another_amount_is_a_conflict_naming_it(api, cast, account):
    client = api(cast.a.staff_key)
    client.post(url(account), {"amount": "12.50", "reference": "bank-1"}, format="json")
    response = client.post(url(account), {"amount": "13.00", "reference": "bank-1"}, format="json")
    assert response.status_code == 409
    assert list(response.json()) == ["reference"]
    assert "already posted with amount 12.500000" in response.json()["reference"][0]
    assert balance(account) == Decimal("12.5")


def test_a_reference_is_its_accounts_own(api, cast, world, account):
    client = api(cast.a.staff_key)
    first = client.post(url(account), {"amount": "1", "reference": "same"}, format="json")
    other = client.post(url(world.account), {"amount": "2", "reference": "same"}, format="json")
    assert (first.status_code, other.status_code) == (201, 201)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "0", "reference": "r"}, "amount"),
        ({"amount": "-5", "reference": "r"}, "amount"),
        ({"amount": "twelve", "reference": "r"}, "amount"),
        ({"amount": "NaN", "reference": "r"}, "amount"),
        ({"amount": "1.1234567", "reference": "r"}, "amount"),
        ({"amount": "1" * 20, "reference": "r"}, "amount"),
        ({"reference": "r"}, "amount"),
        ({"amount": "5"}, "reference"),
        ({"amount": "5", "reference": ""}, "reference"),
        ({"amount": "5", "reference": "   "}, "reference"),
        ({"amount": "5", "reference": "x" * 101}, "reference"),
        ({"amount": "5", "reference": "r", "description": "d" * 201}, "description"),
    ],
)
def test_a_malformed_payment_is_a_400_naming_the_field(api, cast, account, body, field):
    response = api(cast.a.staff_key).post(url(account), body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_a_body_that_is_not_an_object_is_a_400(api, cast, account):
    response = api(cast.a.staff_key).post(url(account), "[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert not LedgerEntry.objects.exists()


def test_the_operator_posts_to_any_account(api, cast, account):
    for target in (account, cast.operator_customer.account, cast.supplier.account):
        response = api(cast.operator_key).post(url(target), {"amount": "3", "reference": "op"}, format="json")
        assert response.status_code == 201
        assert balance(target) == Decimal("3")


@pytest.mark.parametrize("what", ["payments", "refunds", "adjustments"])
def test_customers_keys_cannot_post_even_to_their_own_account(api, cast, account, what):
    body = {"amount": "5", "reference": "self-credit", "reason": "please"}
    response = api(cast.a.customer_key).post(url(account, what), body, format="json")
    assert response.status_code == 403
    assert balance(account) == 0


@pytest.mark.parametrize("what", ["payments", "refunds", "adjustments"])
def test_another_resellers_account_is_404_and_unchanged(api, cast, account, what):
    body = {"amount": "5", "reference": "r", "reason": "x"}
    for stranger in (cast.b.staff_key, cast.b.customer_key):
        response = api(stranger).post(url(account, what), body, format="json")
        assert response.status_code in (403, 404)
    assert api(cast.b.staff_key).post(url(account, what), body, format="json").status_code == 404
    # The operator's own customers are no reseller's either.
    operator_account = cast.operator_customer.account
    assert api(cast.a.staff_key).post(url(operator_account, what), body, format="json").status_code == 404
    assert not LedgerEntry.objects.exists()


def test_anonymous_requests_cannot_post(api, account):
    response = api().post(url(account), {"amount": "5", "reference": "r"}, format="json")
    assert response.status_code in (401, 403)
    assert not LedgerEntry.objects.exists()


def test_a_refund_debits_the_account_once_per_reference(api, cast, account):
    client = api(cast.a.staff_key)
    client.post(url(account), {"amount": "20", "reference": "pay"}, format="json")
    first = client.post(
        url(account, "refunds"),
        {"amount": "7.25", "reference": "rf-1", "description": "Unused"},
        format="json",
    )
    again = client.post(url(account, "refunds"), {"amount": "7.25", "reference": "rf-1"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert (first.json()["kind"], first.json()["amount"]) == ("refund", "-7.250000")
    assert again.json()["id"] == first.json()["id"]
    assert balance(account) == Decimal("12.75")
    conflict = client.post(url(account, "refunds"), {"amount": "8", "reference": "rf-1"}, format="json")
    assert conflict.status_code == 409
    assert "reference" in conflict.json()


@pytest.mark.parametrize("amount", ["0", "-1"])
def test_a_refund_is_a_positive_amount(api, cast, account, amount):
    response = api(cast.a.staff_key).post(
        url(account, "refunds"), {"amount": amount, "reference": "rf"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"amount": ["Give the refunded amount as a positive number."]}


def test_adjustments_move_the_balance_both_ways_with_their_reason(api, cast, account):
    client = api(cast.operator_key)
    debit = client.post(
        url(account, "adjustments"), {"amount": "-1.20", "reason": "Billed twice", "reference": "adj-1"}
    )
    credit = client.post(
        url(account, "adjustments"), {"amount": "0.20", "reason": "Goodwill", "reference": "adj-2"}
    )
    replay = client.post(
        url(account, "adjustments"), {"amount": "-1.2", "reason": "Billed twice", "reference": "adj-1"}
    )
    assert (debit.status_code, credit.status_code, replay.status_code) == (201, 201, 200)
    assert (debit.json()["kind"], debit.json()["description"]) == ("adjustment", "Billed twice")
    assert balance(account) == Decimal("-1")
    assert AuditEntry.objects.filter(action="ledger.adjustment").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "0", "reason": "x", "reference": "r"}, "amount"),
        ({"amount": "1", "reference": "r"}, "reason"),
        ({"amount": "1", "reason": "   ", "reference": "r"}, "reason"),
        ({"amount": "1", "reason": "x"}, "reference"),
    ],
)
def test_a_malformed_adjustment_is_a_400_naming_the_field(api, cast, account, body, field):
    response = api(cast.a.staff_key).post(url(account, "adjustments"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not LedgerEntry.objects.exists()


def test_the_schema_documents_the_bodies_and_every_answer():
    schema = committed_schema()
    for what, body in (("payments", "Payment"), ("refunds", "Refund"), ("adjustments", "Adjustment")):
        operation = schema["paths"][f"/api/v1/accounts/{{id}}/{what}/"]["post"]
        request = operation["requestBody"]["content"]["application/json"]["schema"]
        assert request == {"$ref": f"#/components/schemas/{body}Request"}
        responses = operation["responses"]
        assert set(responses) == {"200", "201", "400", "401", "403", "404", "409", "415"}
        for code in ("200", "201"):
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/LedgerEntry"
            }
        assert responses["409"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/FieldErrors"
        }
    payment = schema["components"]["schemas"]["PaymentRequest"]
    assert payment["required"] == ["amount", "reference"]
    assert payment["properties"]["amount"]["type"] == "string"
    assert schema["components"]["schemas"]["AdjustmentRequest"]["required"] == [
        "amount",
        "reason",
        "reference",
    ]
