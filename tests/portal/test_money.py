"""The Money section: balance, the ledger with call charges per day, its export, and the
low-balance warning settings."""

import csv
import io
import itertools
import zoneinfo
from datetime import datetime, time, timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account
from apps.billing.services.ledger import update_account
from apps.core.errors import NotAllowed
from apps.peers.models import Peer
from apps.portal.views.money import charges_per_day
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory
from tests.portal.conftest import pay

MONEY = reverse("portal:money")
_refs = itertools.count(1)


def local_day(peer, days_ago: int, hour: int = 12) -> datetime:
    """`hour` o'clock, `days_ago` days before today, on `peer`'s clock."""
    zone = zoneinfo.ZoneInfo(Peer.objects.get(pk=peer.pk).time_zone)
    today = timezone.localtime(timezone.now(), zone).date()
    return datetime.combine(today - timedelta(days=days_ago), time(hour), zone)


def charge(peer, amount: str, when: datetime, cast=None):
    """A call charge on `peer`'s account, posted as the rater posts it."""
    cdr = CdrFactory(customer=peer, node=cast.node if cast else None, created_at=when)
    account = Account.objects.get(peer=peer)
    billing.post(
        [
            billing.Posting(
                account_id=account.pk,
                kind="charge",
                amount=-Decimal(amount),
                reference=f"cdr:{cdr.pk}:{next(_refs)}",
                cdr_id=cdr.pk,
                description=f"Call to {cdr.callee}",
                occurred_at=when,
            )
        ],
        actor=Scope.system(),
    )
    return cdr


@pytest.fixture
def ledger(cast):
    a = cast.a.customer
    charge(a, "0.50", local_day(a, 2, 9), cast)
    charge(a, "0.25", local_day(a, 2, 15), cast)
    charge(a, "1.000001", local_day(a, 5), cast)
    pay(a, "20", "bank-1")
    charge(cast.b.customer, "7.77", local_day(cast.b.customer, 2), cast)
    pay(cast.b.customer, "99", "bank-b")
    return a


def days(response):
    return [(d.day, d.calls, d.total) for d in response.context["days"]]


def test_money_page_shows_balance_available_and_credit(client_a, ledger):
    page = client_a.get(MONEY).content.decode()

    # 20 paid, 1.750001 charged: a total is written in cents.
    assert '<p class="figure" id="balance">18.25 USD</p>' in page
    assert 'id="available">18.25 USD' in page
    assert 'id="credit-limit">None' in page


def test_call_charges_are_one_line_per_day_and_other_entries_are_listed(client_a, ledger):
    response = client_a.get(MONEY)
    today = local_day(ledger, 0).date()

    assert days(response) == [
        (today - timedelta(days=2), 2, Decimal("-0.75")),
        (today - timedelta(days=5), 1, Decimal("-1.000001")),
    ]
    listed = list(response.context["page_obj"])
    assert [entry.kind for entry in listed] == ["payment"]
    page = response.content.decode()
    assert "bank-1" in page and "bank-b" not in page and "7.77" not in page
    assert 'id="days-total">-1.75 USD' in page


def test_itemised_toggle_lists_each_charge(client_a, ledger):
    response = client_a.get(MONEY, {"itemised": "on"})

    assert response.context["days"] == []
    amounts = sorted(entry.amount for entry in response.context["page_obj"])
    assert amounts == [Decimal("-1.000001"), Decimal("-0.5"), Decimal("-0.25"), Decimal("20")]
    assert "-1.000001 USD" in response.content.decode()  # one call's cost keeps its precision


def test_kind_and_date_filters(client_a, ledger):
    payments = client_a.get(MONEY, {"kind": "payment"})
    day = local_day(ledger, 5).date().isoformat()
    that_day = client_a.get(MONEY, {"start": day, "end": day})

    assert [e.kind for e in payments.context["page_obj"]] == ["payment"]
    assert payments.context["days"] == []
    assert [(calls, total) for _, calls, total in days(that_day)] == [(1, Decimal("-1.000001"))]
    assert list(that_day.context["page_obj"]) == []


def test_days_are_the_customers_own_days(client_a, cast):
    a = cast.a.customer
    Peer.objects.filter(pk=a.pk).update(time_zone="America/New_York")
    # 22:00 and 01:00 in New York: two days there, one UTC day (03:00 and 06:00).
    evening = local_day(a, 3, 22)
    charge(a, "0.10", evening, cast)
    charge(a, "0.20", evening + timedelta(hours=3), cast)

    response = client_a.get(MONEY)

    assert days(response) == [
        (evening.date() + timedelta(days=1), 1, Decimal("-0.2")),
        (evening.date(), 1, Decimal("-0.1")),
    ]


def test_charges_per_day_sums_in_sql_by_hour(cast, django_assert_num_queries):
    a = cast.a.customer
    for hour in (1, 1, 2, 23):
        charge(a, "1", local_day(a, 1, hour), cast)
    from apps.billing.models import LedgerEntry

    with django_assert_num_queries(1):
        result = charges_per_day(LedgerEntry.objects.filter(kind="charge"), zoneinfo.ZoneInfo("UTC"))

    assert [(d.calls, d.total) for d in result] == [(4, Decimal("-4"))]


def test_csv_and_xlsx_exports_hold_the_filtered_entries(client_a, ledger):
    text = b"".join(client_a.get(MONEY, {"kind": "charge", "format": "csv"}).streaming_content).decode()
    header, *lines = list(csv.reader(io.StringIO(text)))
    xlsx = client_a.get(MONEY, {"format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(xlsx.streaming_content))).active
    values = list(sheet.iter_rows(values_only=True))

    assert header == ["Date", "Kind", "Amount", "Currency", "Description", "Reference", "Call"]
    assert sorted(line[2] for line in lines) == ["-0.250000", "-0.500000", "-1.000001"]
    assert {line[1] for line in lines} == {"Call charge"}
    assert len(values) == 5  # header, three charges, one payment
    assert "bank-b" not in text and all("bank-b" not in str(row) for row in values)


# --- the warning settings ------------------------------------------------------------------


def test_settings_form_refuses_a_bad_address_and_a_negative_threshold(client_a, cast):
    response = client_a.post(MONEY, {"low_balance_threshold": "-5", "notification_email": "not-an-address"})
    page = response.content.decode()

    assert response.status_code == 200
    assert 'id="notification_email-error">Enter a valid email address.' in page
    assert 'id="low_balance_threshold-error">Ensure this value is greater than or equal to 0.' in page
    account = Account.objects.get(peer=cast.a.customer)
    assert account.low_balance_threshold is None and account.notification_email == ""


def test_settings_form_refuses_an_amount_past_the_bounds(client_a, cast):
    response = client_a.post(MONEY, {"low_balance_threshold": "1e15", "notification_email": ""})

    assert "low_balance_threshold-error" in response.content.decode()


def test_settings_are_saved_through_update_account(client_a, cast):
    response = client_a.post(MONEY, {"low_balance_threshold": "12.5", "notification_email": "ops@a.example"})

    assert response.status_code == 302
    account = Account.objects.get(peer=cast.a.customer)
    assert account.low_balance_threshold == Decimal("12.5")
    assert account.notification_email == "ops@a.example"


def test_a_customer_changes_only_its_own_warning_settings(cast):
    own = Account.objects.get(peer=cast.a.customer)
    scope = Scope.of_user(cast.a.customer_user)

    with pytest.raises(NotAllowed, match="credit_limit"):
        update_account(own, actor=scope, changes={"credit_limit": Decimal("1000")})
    with pytest.raises(NotAllowed):
        update_account(
            Account.objects.get(peer=cast.b.customer),
            actor=scope,
            changes={"low_balance_threshold": Decimal("1")},
        )
    update_account(own, actor=scope, changes={"low_balance_threshold": Decimal("3")})

    own.refresh_from_db()
    assert (own.low_balance_threshold, own.credit_limit) == (Decimal("3"), Decimal("0"))
    assert Account.objects.get(peer=cast.b.customer).low_balance_threshold is None


# --- scoping matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["operator", "reseller_a", "reseller_b", "customer_a", "customer_b"])
def test_scoping_matrix_money_page_and_export(client, ledger, cast, who):
    user = {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[who]
    client.force_login(user)

    page = client.get(MONEY, {"itemised": "on"})
    export = client.get(MONEY, {"format": "csv"})

    if who.startswith("customer"):
        own, other = ("bank-1", "bank-b") if who == "customer_a" else ("bank-b", "bank-1")
        exported = b"".join(export.streaming_content).decode()
        assert own in page.content.decode() and other not in page.content.decode()
        assert own in exported and other not in exported
    else:
        assert page.status_code == export.status_code == 403
        assert "bank-1" not in page.content.decode()


def test_a_customer_without_an_account_is_told_so(client, cast):
    from apps.tenancy import services as tenancy_services
    from tests.conftest import PASSWORD
    from tests.factories import make_peer

    peer = make_peer("No Account", reseller=cast.a.reseller)
    Account.objects.filter(peer=peer).delete()
    user = tenancy_services.add_customer_login(
        peer, actor=Scope.system(), username="noaccount", password=PASSWORD
    ).user
    client.force_login(user)

    response = client.get(MONEY)

    assert response.status_code == 200
    assert "No account has been opened for you yet" in response.content.decode()


def test_money_page_queries_do_not_grow_with_the_entries(client_a, cast):
    a = cast.a.customer
    charge(a, "0.1", local_day(a, 1), cast)
    pay(a, "1", "few")
    with CaptureQueriesContext(connection) as few:
        client_a.get(MONEY)
        client_a.get(MONEY, {"itemised": "on"})
    for n in range(30):
        charge(a, "0.1", local_day(a, n % 20), cast)
        pay(a, "1", f"many-{n}")

    with CaptureQueriesContext(connection) as many:
        client_a.get(MONEY)
        client_a.get(MONEY, {"itemised": "on"})

    assert len(many) == len(few), "\n".join(q["sql"] for q in many.captured_queries)
