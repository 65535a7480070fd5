"""Money moves in the admin only through the billing services; the ledger is never edited."""

from decimal import Decimal

import pytest

from apps.billing.models import Account, LedgerEntry
from tests.admin.conftest import admin_url, form_payload, messages_of, tool_url


@pytest.fixture
def account(cast):
    return cast.a.customer.account


def test_a_payment_credits_the_balance_through_one_ledger_row(account, cast, login):
    response = login(cast.a.staff).post(
        tool_url(account, "payment"),
        {"amount": "50", "reference": "TX-1", "description": "Wire"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == admin_url(account)
    account.refresh_from_db()
    assert account.balance == Decimal("50")
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.kind, entry.amount, entry.reference, entry.actor) == (
        "payment",
        Decimal("50"),
        "TX-1",
        cast.a.staff,
    )
    assert any("balance is now 50" in message for message in messages_of(response))


def test_posting_the_same_reference_twice_credits_once(account, cast, login):
    client = login(cast.a.staff)
    for _ in range(2):
        response = client.post(
            tool_url(account, "payment"), {"amount": "50", "reference": "TX-1"}, follow=True
        )
    account.refresh_from_db()
    assert account.balance == Decimal("50")
    assert LedgerEntry.objects.filter(account=account).count() == 1
    assert any("already posted" in message for message in messages_of(response))


def test_payments_without_reference_are_each_posted(account, cast, login):
    client = login(cast.operator)
    for _ in range(2):
        client.post(tool_url(account, "payment"), {"amount": "5", "reference": ""})
    account.refresh_from_db()
    assert account.balance == Decimal("10")


def test_a_reference_reused_with_another_amount_is_a_form_error(account, cast, login):
    client = login(cast.a.staff)
    client.post(tool_url(account, "payment"), {"amount": "50", "reference": "TX-1"})
    response = client.post(tool_url(account, "payment"), {"amount": "70", "reference": "TX-1"})
    assert response.status_code == 200
    assert "already posted" in response.context["form"].errors["reference"][0]
    account.refresh_from_db()
    assert account.balance == Decimal("50")


@pytest.mark.parametrize("amount", ["0", "-5"])
def test_the_service_refuses_non_positive_payments_on_the_form(amount, account, cast, login):
    response = login(cast.a.staff).post(tool_url(account, "payment"), {"amount": amount, "reference": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["amount"] == ["A payment is a positive amount."]
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_an_adjustment_debits_with_its_reason(account, cast, login):
    response = login(cast.operator).post(
        tool_url(account, "adjust"), {"amount": "-7.5", "reason": "Bad route"}
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.balance == Decimal("-7.5")
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.kind, entry.description) == ("adjustment", "Bad route")


def test_the_account_page_shows_balance_available_credit_and_recent_entries(cast, login):
    postpaid = cast.operator_customer.account
    client = login(cast.operator)
    client.post(tool_url(postpaid, "payment"), {"amount": "12", "reference": "TX-9"})
    page = client.get(admin_url(postpaid)).content.decode()
    assert "112.00 USD" in page  # available: 12 balance + 100 credit
    assert "TX-9" in page
    assert tool_url(postpaid, "payment") in page
    assert tool_url(postpaid, "adjust") in page


def test_the_balance_cannot_be_set_through_the_account_form(account, cast, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(account)))
    payload["balance"] = "1000000"
    payload["low_balance_threshold"] = "3.000000"
    assert client.post(admin_url(account), payload).status_code == 302
    account.refresh_from_db()
    assert (account.balance, account.low_balance_threshold) == (Decimal("0"), Decimal("3"))


def test_ledger_entries_cannot_be_changed_or_deleted_even_by_the_operator(account, cast, login):
    client = login(cast.operator)
    client.post(tool_url(account, "payment"), {"amount": "50", "reference": "TX-1"})
    entry = LedgerEntry.objects.get(account=account)
    page = client.get(admin_url(entry))
    assert page.status_code == 200
    assert "Save" not in page.content.decode()
    assert client.post(admin_url(entry), {"amount": "5000", "kind": "payment"}).status_code == 403
    assert client.post(admin_url(entry, "delete"), {"post": "yes"}).status_code == 403
    assert client.get(admin_url(LedgerEntry, "add")).status_code == 403
    listing = client.get(admin_url(LedgerEntry, "changelist"))
    assert "delete_selected" not in listing.content.decode()
    fresh = LedgerEntry.objects.get(pk=entry.pk)
    assert fresh.amount == Decimal("50")
    assert Account.objects.get(pk=account.pk).balance == Decimal("50")
