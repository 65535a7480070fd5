"""The account page in the admin: money, live calls, the ledger by kind and date, its CSV export,
and payments, refunds and adjustments posted through the billing services."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin import site
from django.test import AsyncRequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.admin import accounts as account_admin
from apps.billing.admin import ledger as ledger_admin
from apps.billing.models import Account, LedgerEntry
from apps.billing.services import Posting, rating, reservations
from apps.billing.services.reservations import Hold
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, form_payload, listed, messages_of, tool_url

SYSTEM = Scope.system()
HEADER = ["date occurred", "kind", "amount", "reference", "description", "call id", "actor"]
PER_SECOND = Tariff(Decimal("0.60"))  # 0.01 a second


def ledger_url(account, **query) -> str:
    url = reverse("admin:billing_account_ledger", args=[account.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def csv_url(account, **query) -> str:
    url = reverse("admin:billing_account_ledger_csv", args=[account.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def rows_of(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="ledger-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def hold_call(peer, call_id: str, *, seconds: int = 60, node=None) -> int:
    """Reserve the money of a live call of `peer`, as call control does; its reservation id."""
    grant = reservations.reserve(
        Hold(
            account_id=peer.account.pk,
            customer_id=peer.pk,
            call_id=call_id,
            tariff=PER_SECOND,
            ceiling=seconds,
            grace=60,
            node_id=node.pk if node else None,
        )
    )
    return grant.reservation_id


def at(days_ago: int, hour: int = 12):
    moment = timezone.localtime() - timedelta(days=days_ago)
    return moment.replace(hour=hour, minute=0, second=0, microsecond=0)


def post_at(account, kind: str, amount: str, reference: str, occurred_at, **fields):
    """A ledger row written by the posting service with a chosen occurrence time."""
    ((entry, _),) = billing.post(
        [Posting(account.pk, kind, Decimal(amount), reference=reference, occurred_at=occurred_at, **fields)]
    )
    return entry


# --- the account page ------------------------------------------------------------------------


def test_the_account_page_shows_money_held_by_live_calls_and_what_is_left(cast, login):
    peer = cast.operator_customer  # postpaid, credit limit 100
    billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("12"), reference="TX-1")
    hold_call(peer, "live-1@pbx", seconds=60, node=cast.node)
    hold_call(peer, "live-2@pbx", seconds=30, node=cast.node)
    account = Account.objects.get(pk=peer.account.pk)
    assert (account.reserved, account.available) == (Decimal("0.90"), Decimal("111.10"))

    response = login(cast.operator).get(admin_url(account))

    page = response.content.decode()
    assert response.status_code == 200
    for shown in ("12.00 USD", "0.90 USD", "111.10 USD", "100.000000"):
        assert shown in page  # balance, reserved, available, credit limit
    assert [call.call_id for call in response.context["live_calls"]] == ["live-1@pbx", "live-2@pbx"]
    assert ">node1<" in page  # the operator sees where each call runs
    assert "60 s" in page
    assert "0.60 USD" in page


def test_released_calls_are_no_longer_live(cast, login):
    peer = cast.a.customer
    billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("5"))
    done = hold_call(peer, "done@pbx")
    hold_call(peer, "live@pbx")
    reservations.release(done, outcome="failed")
    response = login(cast.a.staff).get(admin_url(peer.account))
    assert [call.call_id for call in response.context["live_calls"]] == ["live@pbx"]
    assert Account.objects.get(pk=peer.account.pk).available == Decimal("4.40")
    assert "4.40 USD" in response.content.decode()


def test_reseller_staff_see_their_live_calls_without_the_node(cast, login):
    peer = cast.a.customer
    billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("5"))
    hold_call(peer, "live@pbx", node=cast.node)
    response = login(cast.a.staff).get(admin_url(peer.account))
    assert [call.call_id for call in response.context["live_calls"]] == ["live@pbx"]
    assert "node1" not in response.content.decode()


def test_the_account_list_shows_reserved_and_available_after_live_calls(cast, login):
    peer = cast.a.customer
    billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("5"))
    hold_call(peer, "live@pbx", seconds=100)
    response = login(cast.a.staff).get(admin_url(Account, "changelist"))
    row = next(row for row in response.context["cl"].result_list if row.pk == peer.account.pk)
    assert (row.balance, row.reserved, row.available) == (Decimal("5"), Decimal("1"), Decimal("4"))
    assert "4.00 USD" in response.content.decode()


def test_the_account_page_shows_the_latest_entries_with_their_call_and_links_to_the_ledger(
    cast, login, unrated_call
):
    account = cast.a.customer.account
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="TX-9")
    unrated_call(cast.a.customer, "0.5", call_id="charged@pbx")
    rating.rate_batch()
    page = login(cast.a.staff).get(admin_url(account)).content.decode()
    assert "TX-9" in page
    assert "charged@pbx" in page
    assert ledger_url(account) in page
    assert csv_url(account) in page
    for tool in ("payment", "refund", "adjust"):
        assert tool_url(account, tool) in page


def test_the_notification_email_is_shown_and_changed_only_through_the_service(cast, login):
    account = cast.a.customer.account
    Account.objects.filter(pk=account.pk).update(notification_email="billing@a.example")
    client = login(cast.a.staff)
    response = client.get(admin_url(account))
    assert "billing@a.example" in response.content.decode()
    payload = form_payload(response)
    payload["notification_email"] = "finance@a.example"
    assert client.post(admin_url(account), payload).status_code == 302
    # Editable exactly when services.update_account takes it (ACCOUNT_SETTINGS).
    expected = (
        "finance@a.example" if "notification_email" in billing.ACCOUNT_SETTINGS else "billing@a.example"
    )
    assert Account.objects.get(pk=account.pk).notification_email == expected


def test_the_account_page_costs_a_fixed_number_of_queries(
    cast, login, unrated_call, django_assert_max_num_queries
):
    peer = cast.a.customer
    billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("50"))
    for n in range(20):
        hold_call(peer, f"live-{n}@pbx", seconds=10, node=cast.node)
        unrated_call(peer, "0.01")
    rating.rate_batch()
    client = login(cast.a.staff)
    with django_assert_max_num_queries(10):
        assert client.get(admin_url(peer.account)).status_code == 200
    with django_assert_max_num_queries(10):
        assert client.get(ledger_url(peer.account)).status_code == 200


# --- refunds (payments and adjustments: tests/admin/test_money.py) ----------------------------


def test_a_refund_debits_the_account_once_per_reference(cast, login):
    account = cast.a.customer.account
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("30"))
    client = login(cast.a.staff)
    for _ in range(2):
        response = client.post(
            tool_url(account, "refund"),
            {"amount": "7.5", "reference": "RF-1", "description": "Unused credit"},
            follow=True,
        )
    account.refresh_from_db()
    assert account.balance == Decimal("22.5")
    entry = LedgerEntry.objects.get(account=account, kind="refund")
    assert (entry.amount, entry.reference, entry.description, entry.actor) == (
        Decimal("-7.5"),
        "RF-1",
        "Unused credit",
        cast.a.staff,
    )
    assert any("already posted" in message for message in messages_of(response))


@pytest.mark.parametrize("amount", ["0", "-5"])
def test_the_service_refuses_a_refund_that_is_not_positive(amount, cast, login):
    account = cast.a.customer.account
    response = login(cast.operator).post(tool_url(account, "refund"), {"amount": amount, "reference": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["amount"] == ["Give the refunded amount as a positive number."]
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_a_refund_reference_reused_with_another_amount_is_a_form_error(cast, login):
    account = cast.a.customer.account
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="paid")
    client = login(cast.a.staff)
    client.post(tool_url(account, "refund"), {"amount": "5", "reference": "RF-2"})
    response = client.post(tool_url(account, "refund"), {"amount": "6", "reference": "RF-2"})
    assert "already posted" in response.context["form"].errors["reference"][0]
    assert Account.objects.get(pk=account.pk).balance == Decimal("5")


# --- the account's ledger page ---------------------------------------------------------------


def test_the_ledger_page_pages_through_every_entry_newest_first(cast, login):
    account = cast.a.customer.account
    for n in range(account_admin.LEDGER_PAGE + 5):
        post_at(account, "payment", "1", f"P-{n:03d}", at(days_ago=0) - timedelta(minutes=n))
    client = login(cast.a.staff)
    first = client.get(ledger_url(account))
    second = client.get(ledger_url(account, p=2))
    references = [e.reference for e in first.context["page"]] + [e.reference for e in second.context["page"]]
    assert references == [f"P-{n:03d}" for n in range(account_admin.LEDGER_PAGE + 5)]
    assert first.context["total"] == Decimal(account_admin.LEDGER_PAGE + 5)
    assert "?p=2" in first.content.decode()


def test_the_ledger_page_filters_by_kind_and_by_days(cast, login):
    account = cast.a.customer.account
    old = post_at(account, "payment", "10", "OLD", at(days_ago=10))
    refund = post_at(account, "refund", "-2", "RF", at(days_ago=3))
    recent = post_at(account, "payment", "5", "NEW", at(days_ago=1, hour=0))
    client = login(cast.a.staff)

    def shown(**query):
        return [entry.pk for entry in client.get(ledger_url(account, **query)).context["page"]]

    assert shown() == [recent.pk, refund.pk, old.pk]
    assert shown(kind="payment") == [recent.pk, old.pk]
    day = (timezone.localdate() - timedelta(days=3)).isoformat()
    assert shown(occurred_from=day) == [recent.pk, refund.pk]
    assert shown(occurred_to=day) == [refund.pk, old.pk]  # the last day counts whole
    assert shown(occurred_from=day, occurred_to=day) == [refund.pk]
    assert shown(kind="payment", occurred_from=day) == [recent.pk]


def test_a_range_that_ends_before_it_starts_is_a_form_error(cast, login):
    account = cast.a.customer.account
    post_at(account, "payment", "10", "P", at(days_ago=1))
    response = login(cast.a.staff).get(
        ledger_url(account, occurred_from="2026-05-10", occurred_to="2026-05-01")
    )
    assert response.status_code == 200
    assert response.context["form"].errors["occurred_to"] == ["The range ends on or after the day it starts."]
    assert len(response.context["page"]) == 1
    csv_response = login(cast.a.staff).get(
        csv_url(account, occurred_from="2026-05-10", occurred_to="2026-05-01")
    )
    assert csv_response.status_code == 302
    assert csv_response.url.startswith(ledger_url(account))


@pytest.mark.parametrize("page", ["ledger", "ledger_csv"])
def test_another_resellers_account_ledger_is_404(page, cast, login):
    account = cast.b.customer.account
    billing.post_payment(account, actor=SYSTEM, amount=Decimal("10"), reference="B-SECRET")
    url = reverse(f"admin:billing_account_{page}", args=[account.pk])
    response = login(cast.a.staff).get(url)
    assert response.status_code == 404
    assert "B-SECRET" not in response.content.decode()
    # The operator's own customer is not a reseller's either.
    operator_url = reverse(f"admin:billing_account_{page}", args=[cast.operator_customer.account.pk])
    assert login(cast.a.staff).get(operator_url).status_code == 404
    assert login(cast.operator).get(url).status_code == 200


@pytest.mark.parametrize("page", ["ledger", "ledger_csv"])
def test_customers_never_reach_the_ledger_pages(page, cast, login):
    url = reverse(f"admin:billing_account_{page}", args=[cast.a.customer.account.pk])
    response = login(cast.a.customer_user).get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


# --- CSV --------------------------------------------------------------------------------------


def test_the_csv_holds_the_filtered_entries_with_their_call_ids(cast, login, unrated_call):
    account = cast.a.customer.account
    post_at(account, "payment", "20", "TX-1", at(days_ago=5), description="Wire")
    cdr = unrated_call(
        cast.a.customer,
        "0.25",
        destination="France",
        call_id="abc@pbx",
        created_at=timezone.now() - timedelta(minutes=10),
    )
    rating.rate_batch()  # the charge occurred when the call started, ten minutes ago
    billing.post_adjustment(
        account, actor=Scope.of_user(cast.a.staff), amount=Decimal("1"), reason="Goodwill"
    )
    charge = LedgerEntry.objects.get(kind="charge")

    rows = rows_of(login(cast.a.staff).get(csv_url(account)))

    assert rows[0] == HEADER
    assert [row[1:] for row in rows[1:]] == [
        ["adjustment", "1.000000", "", "Goodwill", "", "staff_a"],
        ["charge", "-0.250000", f"cdr:{cdr.pk}", "Call to France", "abc@pbx", "system"],
        ["payment", "20.000000", "TX-1", "Wire", "", "system"],
    ]
    assert rows[2][0] == timezone.localtime(charge.occurred_at).isoformat()
    only_payments = rows_of(login(cast.a.staff).get(csv_url(account, kind="payment")))
    assert [row[3] for row in only_payments[1:]] == ["TX-1"]
    charged_on = timezone.localtime(charge.occurred_at).date().isoformat()
    recent = rows_of(login(cast.a.staff).get(csv_url(account, occurred_from=charged_on)))
    assert [row[1] for row in recent[1:]] == ["adjustment", "charge"]


def test_the_csv_goes_through_ties_in_chunks_without_losing_or_repeating_rows(cast, login, monkeypatch):
    monkeypatch.setattr(ledger_admin, "CSV_CHUNK", 3)
    account = cast.a.customer.account
    moment = at(days_ago=1)
    for n in range(10):  # one occurrence time for all: chunks must cut ties by id
        post_at(account, "payment", "1", f"T-{n}", moment)
    rows = rows_of(login(cast.a.staff).get(csv_url(account)))
    assert [row[3] for row in rows[1:]] == [f"T-{n}" for n in reversed(range(10))]


def test_text_that_a_spreadsheet_would_run_as_a_formula_is_quoted(cast, login):
    account = cast.a.customer.account
    billing.post_payment(
        account, actor=SYSTEM, amount=Decimal("1"), reference="=1+2", description='=HYPERLINK("x")'
    )
    rows = rows_of(login(cast.operator).get(csv_url(account)))
    assert rows[1][2:5] == ["1.000000", "'=1+2", '\'=HYPERLINK("x")']


def test_the_csv_streams_asynchronously_under_asgi(cast, monkeypatch):
    monkeypatch.setattr(ledger_admin, "CSV_CHUNK", 2)
    account = cast.a.customer.account
    for n in range(5):
        post_at(account, "payment", "1", f"A-{n}", at(days_ago=1) - timedelta(minutes=n))
    request = AsyncRequestFactory().get(csv_url(account))
    request.user = cast.a.staff
    response = site._registry[Account].ledger_csv_view(request, str(account.pk))
    assert response.is_async

    async def pieces():
        return [piece async for piece in response.streaming_content]

    # async_to_sync keeps the ORM calls on this thread, inside the test's transaction.
    received = async_to_sync(pieces)()
    assert len(received) == 4  # the header, then one piece per chunk of two rows
    rows = list(csv.reader(io.StringIO(b"".join(received).decode())))
    assert [row[3] for row in rows[1:]] == [f"A-{n}" for n in range(5)]


# --- the ledger list ---------------------------------------------------------------------------


def test_the_ledger_list_filters_by_an_occurrence_range(cast, login):
    account = cast.a.customer.account
    old = post_at(account, "payment", "1", "OLD", at(days_ago=10))
    mid = post_at(account, "payment", "1", "MID", at(days_ago=5))
    post_at(account, "payment", "1", "NEW", at(days_ago=1))
    client = login(cast.a.staff)
    url = admin_url(LedgerEntry, "changelist")
    start = (timezone.localdate() - timedelta(days=10)).isoformat()
    end = (timezone.localdate() - timedelta(days=5)).isoformat()
    response = client.get(url, {"occurred_from": start, "occurred_to": end, "kind__exact": "payment"})
    assert listed(response) == {old.pk, mid.pk}
    page = response.content.decode()
    assert 'name="kind__exact" value="payment"' in page  # the range form keeps the other filters
    assert f'value="{start}"' in page
    assert client.get(url, {"occurred_from": "yesterday"}).url == f"{url}?e=1"


def test_the_ledger_list_exports_what_it_shows(cast, login):
    a_account, b_account = cast.a.customer.account, cast.b.customer.account
    post_at(a_account, "payment", "10", "A-PAY", at(days_ago=2))
    post_at(a_account, "refund", "-1", "A-REF", at(days_ago=2))
    post_at(b_account, "payment", "10", "B-PAY", at(days_ago=2))
    post_at(cast.operator_customer.account, "payment", "10", "OP-PAY", at(days_ago=2))
    client = login(cast.a.staff)
    listing = client.get(admin_url(LedgerEntry, "changelist"), {"kind__exact": "payment"})
    export = reverse("admin:billing_ledgerentry_export")
    assert f"{export}?kind__exact=payment" in listing.content.decode()

    rows = rows_of(client.get(export, {"kind__exact": "payment"}))
    assert rows[0] == [*HEADER, "account"]
    assert [(row[3], row[7]) for row in rows[1:]] == [("A-PAY", str(cast.a.customer))]
    everything = rows_of(client.get(export))
    assert sorted(row[3] for row in everything[1:]) == ["A-PAY", "A-REF"]
    # Naming another reseller's account in the query string narrows to nothing of theirs.
    probing = rows_of(client.get(export, {"account__id__exact": b_account.pk}))
    assert probing[1:] == []
    assert len(rows_of(login(cast.operator).get(export))) == 1 + 4


def test_the_export_action_writes_only_the_selected_visible_entries(cast, login):
    mine = post_at(cast.a.customer.account, "payment", "10", "A-PAY", at(days_ago=2))
    post_at(cast.a.customer.account, "payment", "10", "A-OTHER", at(days_ago=2))
    theirs = post_at(cast.b.customer.account, "payment", "10", "B-PAY", at(days_ago=2))
    response = login(cast.a.staff).post(
        admin_url(LedgerEntry, "changelist"),
        {"action": "export_csv", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert [row[3] for row in rows_of(response)[1:]] == ["A-PAY"]
