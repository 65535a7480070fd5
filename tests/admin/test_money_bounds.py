"""Money in the admin: amounts, credit limits, fees and prices past apps.core.money's bounds are
form errors on the field, nothing is written, and pages show whatever numbers are stored."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry, RecurringFee
from apps.core.models import money_to_db
from apps.peers.models import Peer
from apps.rates.models import Rate
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, form_payload, tool_url

HUGE = "99999999999999.99"
HUGE_LIMIT = "99999999999999.999999"
# Past MAX_BALANCE, yet held exactly by every database (SQLite's int64 micro-units included).
OUT_OF_RANGE = "9000000000000.99"
SYSTEM = Scope.system()


@pytest.fixture
def account(cast):
    return cast.a.customer.account


def balance(account) -> Decimal:
    return Account.objects.get(pk=account.pk).balance


def write_raw(table: str, pk: int, **columns) -> None:
    sets = ", ".join(f"{name} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {sets} WHERE id = %s",  # noqa: S608 - names are constants here
            [money_to_db(Decimal(value)) for value in columns.values()] + [pk],
        )


@pytest.mark.parametrize(("tool", "extra"), [("payment", {}), ("refund", {}), ("adjust", {"reason": "x"})])
def test_an_amount_past_the_largest_is_a_form_error_and_nothing_is_posted(account, cast, login, tool, extra):
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="paid")
    response = login(cast.a.staff).post(tool_url(account, tool), {"amount": HUGE, "reference": "", **extra})
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert LedgerEntry.objects.filter(account=account).count() == 1
    assert balance(account) == Decimal("10")


def test_a_huge_credit_limit_is_refused_on_the_account_form(cast, login):
    account = cast.operator_customer.account  # postpaid, limit 100
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(account)))
    payload["credit_limit"] = HUGE_LIMIT
    response = client.post(admin_url(account), payload)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credit_limit"]
    assert Account.objects.get(pk=account.pk).credit_limit == Decimal("100")


def test_the_largest_credit_limit_is_taken_on_the_account_form(cast, login):
    account = cast.operator_customer.account
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(account)))
    payload["credit_limit"] = "1000000000"
    assert client.post(admin_url(account), payload).status_code == 302
    assert Account.objects.get(pk=account.pk).credit_limit == Decimal("1000000000")


def test_a_peer_with_a_huge_credit_limit_is_refused_on_the_add_form(cast, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(Peer, "add")))
    for many in ("nodes", "blocklists"):
        payload.pop(many, None)  # nothing chosen: a browser sends no value at all
    payload.update(
        name="Too Much", role="customer", currency="USD", account_mode="postpaid", credit_limit=HUGE_LIMIT
    )
    response = client.post(admin_url(Peer, "add"), payload)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credit_limit"]
    assert not Peer.objects.filter(name="Too Much").exists()


def test_a_refund_beyond_what_was_paid_is_a_form_error(account, cast, login):
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="paid")
    client = login(cast.a.staff)
    form = client.get(tool_url(account, "refund")).context["form"]
    assert "allow_over_refund" not in form.fields  # the operator's alone
    response = client.post(tool_url(account, "refund"), {"amount": "10.5", "reference": "r"})
    assert response.status_code == 200
    assert "10.000000" in response.context["form"].errors["amount"][0]
    assert balance(account) == Decimal("10")


def test_the_operator_may_refund_beyond_what_was_paid_when_ticking_the_box(account, cast, login):
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="paid")
    client = login(cast.operator)
    assert "allow_over_refund" in client.get(tool_url(account, "refund")).context["form"].fields
    response = client.post(tool_url(account, "refund"), {"amount": "25", "reference": "r"})
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    response = client.post(
        tool_url(account, "refund"), {"amount": "25", "reference": "r", "allow_over_refund": "on"}
    )
    assert response.status_code == 302
    assert balance(account) == Decimal("-15")


def test_a_fee_past_the_largest_amount_is_a_form_error(account, cast, login):
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(RecurringFee, "add")))
    payload.update(
        account=str(account.pk),
        name="DID",
        amount=HUGE,
        period="monthly",
        starts_on=timezone.localdate().isoformat(),
    )
    response = client.post(admin_url(RecurringFee, "add"), payload)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["amount"]
    assert not RecurringFee.objects.exists()


def test_a_price_past_the_largest_is_a_form_error(cast, login):
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(Rate, "add")))
    start = timezone.localtime(timezone.now() - timedelta(days=1))
    payload.update(
        table=str(cast.a.sell_table.pk),
        prefix="99",
        destination="Dear",
        price="10000000.000001",
        connection_fee="0",
        min_seconds="1",
        increment_seconds="1",
        free_seconds="0",
        effective_from_0=start.date().isoformat(),
        effective_from_1=start.time().strftime("%H:%M:%S"),
    )
    response = client.post(admin_url(Rate, "add"), payload)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["price"]
    assert not Rate.objects.filter(prefix="99").exists()


# --- pages show what is stored ------------------------------------------------------------------


def test_pages_show_out_of_range_stored_numbers_and_flag_them(cast, login):
    account = cast.operator_customer.account
    entry, _ = billing.post_payment(account, actor=SYSTEM, amount=Decimal("5"), reference="p")
    write_raw("billing_account", account.pk, balance=OUT_OF_RANGE, credit_limit=OUT_OF_RANGE)
    write_raw("billing_ledgerentry", entry.pk, amount=OUT_OF_RANGE)
    # Past what SQLite's integer micro-units hold, too (kept there as a REAL).
    other = cast.a.customer.account
    huge, _ = billing.post_payment(other, actor=SYSTEM, amount=Decimal("5"), reference="p")
    write_raw("billing_account", other.pk, balance=HUGE)
    write_raw("billing_ledgerentry", huge.pk, amount=HUGE)
    client = login(cast.operator)
    pages = {
        "accounts": admin_url(Account, "changelist"),
        "accounts by balance": admin_url(Account, "changelist") + "?o=4",
        "ledger": admin_url(LedgerEntry, "changelist"),
    }
    for shown in (account, other):
        pages[f"account {shown.pk}"] = admin_url(shown)
        pages[f"ledger of {shown.pk}"] = f"{admin_url(shown).removesuffix('change/')}ledger/"
    for entry_shown in (entry, huge):
        pages[f"entry {entry_shown.pk}"] = admin_url(entry_shown)
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, name
    listing = client.get(admin_url(Account, "changelist")).content.decode()
    assert "balance, credit limit, available out of range" in listing
    page = client.get(admin_url(account)).content.decode()
    assert "9000000000000.990000" in page
    assert "out of range" in page
    # The reseller's staff read their customer's pages as well.
    client = login(cast.a.staff)
    for url in (admin_url(Account, "changelist"), admin_url(other), admin_url(LedgerEntry, "changelist")):
        assert client.get(url).status_code == 200, url


def test_a_huge_credit_limit_is_refused_on_the_peer_add_form(cast, login):
    client = login(cast.operator)
    form = client.get(admin_url(Peer, "add")).context["adminform"].form
    payload = {
        "name": "Huge Limit Customer",
        "role": Peer.Role.CUSTOMER,
        "account_mode": Account.Mode.POSTPAID,
        "credit_limit": HUGE_LIMIT,
        "profit_control": form.fields["profit_control"].initial,
    }
    response = client.post(admin_url(Peer, "add"), payload)
    assert response.status_code == 200
    assert "credit_limit" in response.context["adminform"].form.errors
    assert not Peer.objects.filter(name="Huge Limit Customer").exists()
