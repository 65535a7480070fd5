"""Invoices through the REST API: each key reads what it may (a customer never a draft), the
operator and resellers draft, issue, credit, record payments and send, all through the
services; someone else's invoice is a 404, a refused write a 400 naming the field."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry
from apps.invoicing.models import Invoice
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope
from tests.api.conftest import ids
from tests.conftest import key_of
from tests.invoicing.conftest import WHO, YEAR, charge, draft

INVOICES = "/api/v1/invoices/"


def url(invoice: Invoice, what: str = "") -> str:
    return f"{INVOICES}{invoice.pk}/" + (f"{what}/" if what else "")


@pytest.mark.parametrize("who", WHO)
def test_each_key_lists_and_reads_only_the_invoices_it_may(api, cast, ledgers, who):
    client = api(key_of(cast, who))
    visible = ledgers.visible_to(who)

    assert ids(client.get(INVOICES, {"limit": 100})) == visible
    for invoice in ledgers.all:
        expected = 200 if invoice.pk in visible else 404
        assert client.get(url(invoice)).status_code == expected, (who, invoice)


@pytest.mark.parametrize("who", WHO)
def test_each_key_downloads_only_the_documents_it_may(api, cast, ledgers, who):
    client = api(key_of(cast, who))
    visible = ledgers.visible_to(who)

    for invoice in (ledgers.a.issued, ledgers.a.credit_note, ledgers.a.draft, ledgers.b.issued):
        pdf = client.get(url(invoice, "pdf"))
        html = client.get(url(invoice, "html"))
        if invoice.pk in visible:
            assert pdf.status_code == html.status_code == 200, (who, invoice)
            assert pdf["Content-Type"] == "application/pdf"
            assert pdf.content.startswith(b"%PDF-")
            assert html["Content-Type"] == "text/html; charset=utf-8"
        else:
            # Refused in JSON, as everything under /api/ is, whatever the document's type.
            assert pdf.status_code == html.status_code == 404, (who, invoice)
            assert pdf["Content-Type"] == html["Content-Type"] == "application/json"


def test_a_customer_never_sees_a_draft_even_when_it_asks_for_drafts(api, cast, ledgers):
    client = api(cast.a.customer_key)

    assert ids(client.get(INVOICES, {"state": "draft"})) == set()
    assert client.get(url(ledgers.a.draft, "pdf")).status_code == 404
    # Naming the draft in a filter is the same 400 as naming nothing that exists.
    assert "corrects" in client.get(INVOICES, {"corrects": ledgers.a.draft.pk}).json()
    assert ids(client.get(INVOICES, {"corrects": ledgers.a.issued.pk})) == {ledgers.a.credit_note.pk}


def test_the_pdf_is_an_attachment_named_after_the_number_and_the_html_page_loads_nothing(api, cast, ledgers):
    client = api(cast.a.customer_key)
    invoice = ledgers.a.issued

    pdf = client.get(url(invoice, "pdf"), HTTP_ACCEPT="application/pdf")
    html = client.get(url(invoice, "html"), HTTP_ACCEPT="text/html")

    assert pdf.status_code == 200
    assert pdf["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert html["Content-Disposition"] == f'inline; filename="{invoice.number}.html"'
    assert "default-src 'none'" in html["Content-Security-Policy"]
    assert invoice.number in html.content.decode()
    assert "private" in pdf["Cache-Control"]


def test_a_drafts_pdf_is_named_after_its_id_for_the_reseller(api, cast, ledgers):
    response = api(cast.a.staff_key).get(url(ledgers.a.draft, "pdf"))

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="draft-{ledgers.a.draft.pk}.pdf"'


def test_the_detail_has_the_lines_and_amounts_travel_as_strings(api, cast, ledgers):
    row = api(cast.a.staff_key).get(url(ledgers.a.issued)).json()

    assert (row["number"], row["state"], row["kind"]) == ("INV-000001", "issued", "invoice")
    assert (row["period_start"], row["period_end"]) == (f"{YEAR}-03-01", f"{YEAR}-03-31")
    assert row["total"] == "13.750000" and row["amount_due"] == "13.750000"
    assert [(line["description"], line["amount"]) for line in row["lines"]] == [
        ("France", "-1.250000"),
        ("Germany", "-12.500000"),
    ]


def test_invoices_are_filtered_by_account_state_kind_and_period(api, cast, ledgers):
    client = api(cast.operator_key)
    a = ledgers.a

    assert ids(client.get(INVOICES, {"account": cast.a.customer.account.pk})) == {i.pk for i in a.all}
    assert ids(client.get(INVOICES, {"kind": "credit", "account": cast.a.customer.account.pk})) == {
        a.credit_note.pk
    }
    assert ids(client.get(INVOICES, {"state": "draft"})) == {
        ledgers.a.draft.pk,
        ledgers.b.draft.pk,
        ledgers.operator.draft.pk,
    }
    april = ids(client.get(INVOICES, {"period_from": f"{YEAR}-04-01", "period_to": f"{YEAR}-04-30"}))
    assert april == {ledgers.a.draft.pk, ledgers.b.draft.pk, ledgers.operator.draft.pk}
    assert ids(client.get(INVOICES, {"period_start": f"{YEAR}-03-01", "kind": "invoice"})) == {
        ledgers.a.issued.pk,
        ledgers.b.issued.pk,
        ledgers.operator.issued.pk,
    }
    # Reseller B's account is not A's to name.
    assert "account" in api(cast.a.staff_key).get(INVOICES, {"account": cast.b.customer.account.pk}).json()


def test_reseller_a_drafts_issues_credits_and_records_payment_of_its_customers_invoice(api, cast):
    peer = cast.a.customer
    charge(peer, "20", datetime(YEAR, 6, 10, tzinfo=UTC))
    client = api(cast.a.staff_key)

    drafted = client.post(
        INVOICES,
        {"account": peer.account.pk, "period_start": f"{YEAR}-06-01", "period_end": f"{YEAR}-06-30"},
        format="json",
    )
    assert drafted.status_code == 201, drafted.content
    draft = drafted.json()
    assert (draft["state"], draft["number"], draft["total"]) == ("draft", "", "20.000000")
    # The customer does not see it yet.
    assert draft["id"] not in ids(api(cast.a.customer_key).get(INVOICES))

    issued = client.post(f"{INVOICES}{draft['id']}/issue/")
    assert issued.status_code == 200, issued.content
    assert (issued.json()["state"], issued.json()["number"]) == ("issued", "INV-000001")
    assert draft["id"] in ids(api(cast.a.customer_key).get(INVOICES))

    credited = client.post(
        f"{INVOICES}{draft['id']}/credit/", {"amount": "5.00", "reason": "Dropped calls"}, format="json"
    )
    assert credited.status_code == 201, credited.content
    note = credited.json()
    assert (note["kind"], note["number"], note["total"], note["corrects"]) == (
        "credit",
        "CN-000001",
        "5.000000",
        draft["id"],
    )

    paid = client.post(f"{INVOICES}{draft['id']}/pay/", {"reference": "bank-77"}, format="json")
    assert paid.status_code == 200, paid.content
    assert paid.json()["state"] == "paid"
    payment = LedgerEntry.objects.get(account=peer.account, kind=LedgerEntry.Kind.PAYMENT)
    assert (payment.amount, payment.reference) == (Decimal(20), "bank-77")
    # Charged 20, credited 5, paid 20.
    assert Account.objects.get(pk=peer.account.pk).balance == Decimal(5)


def test_sending_e_mails_the_pdf_to_the_given_addresses(api, cast, ledgers):
    response = api(cast.a.staff_key).post(
        url(ledgers.a.issued, "send"), {"to": ["billing@customer-a.example"]}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["sent_to"]) == ("sent", "billing@customer-a.example")
    (message,) = mail.outbox
    assert message.to == ["billing@customer-a.example"]
    assert ledgers.a.issued.number in message.subject
    assert [attachment[2] for attachment in message.attachments] == ["application/pdf"]


def test_sending_without_an_address_is_a_400_naming_to(api, cast, ledgers):
    Account.objects.filter(pk=cast.a.customer.account.pk).update(notification_email="")
    type(cast.a.reseller).objects.filter(pk=cast.a.reseller.pk).update(email="")

    response = api(cast.a.staff_key).post(url(ledgers.a.issued, "send"), {}, format="json")

    assert response.status_code == 400
    assert "to" in response.json()
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("period", "field"),
    [
        ((f"{YEAR}-06-30", f"{YEAR}-06-01"), "period_end"),  # ends before it starts
        ((f"{YEAR}-03-10", f"{YEAR}-04-05"), "period_start"),  # overlaps March's invoice
        (None, "period_end"),  # has not ended yet
        ((f"{YEAR}-06-01", "30/06"), "period_end"),  # not a date
    ],
    ids=["backwards", "overlapping", "unfinished", "not-a-date"],
)
def test_a_bad_period_is_a_400_naming_the_field(api, cast, ledgers, period, field):
    if period is None:
        today = timezone.localdate()
        period = ((today - timedelta(days=3)).isoformat(), today.isoformat())
    before = Invoice.objects.count()

    response = api(cast.a.staff_key).post(
        INVOICES,
        {"account": cast.a.customer.account.pk, "period_start": period[0], "period_end": period[1]},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert Invoice.objects.count() == before


def test_refused_credits_and_payments_name_the_field(api, cast, ledgers):
    client = api(cast.a.staff_key)

    too_much = client.post(url(ledgers.a.issued, "credit"), {"amount": "100", "reason": "x"}, format="json")
    no_reason = client.post(url(ledgers.a.issued, "credit"), {"amount": "1", "reason": " "}, format="json")
    of_a_draft = client.post(url(ledgers.a.draft, "credit"), {"amount": "1", "reason": "x"}, format="json")
    negative = client.post(url(ledgers.a.issued, "pay"), {"amount": "-3"}, format="json")

    assert (too_much.status_code, list(too_much.json())) == (400, ["amount"])
    assert (no_reason.status_code, list(no_reason.json())) == (400, ["reason"])
    assert (of_a_draft.status_code, list(of_a_draft.json())) == (400, ["detail"])
    assert (negative.status_code, list(negative.json())) == (400, ["amount"])


WRITES = [
    ("issue", {}),
    ("credit", {"amount": "1.00", "reason": "Goodwill"}),
    ("pay", {}),
    ("send", {"to": ["someone@example.com"]}),
]


@pytest.mark.parametrize(("action", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_reseller_b_gets_404_writing_to_a_s_invoice(api, cast, ledgers, action, body):
    invoice = ledgers.a.draft if action == "issue" else ledgers.a.issued
    before = list(Invoice.objects.order_by("pk").values_list("pk", "state"))

    response = api(cast.b.staff_key).post(url(invoice, action), body, format="json")

    assert response.status_code == 404
    assert list(Invoice.objects.order_by("pk").values_list("pk", "state")) == before
    assert mail.outbox == []


def test_reseller_b_cannot_draft_an_invoice_of_a_s_customer(api, cast):
    response = api(cast.b.staff_key).post(
        INVOICES,
        {
            "account": cast.a.customer.account.pk,
            "period_start": f"{YEAR}-06-01",
            "period_end": f"{YEAR}-06-30",
        },
        format="json",
    )

    assert response.status_code == 400
    assert "account" in response.json()
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(("action", "body"), [*WRITES, ("", {})], ids=[*(w[0] for w in WRITES), "create"])
def test_customers_may_not_write_even_their_own_invoices(api, cast, ledgers, action, body):
    invoice = ledgers.a.draft if action == "issue" else ledgers.a.issued
    path = url(invoice, action) if action else INVOICES
    if not action:
        body = {
            "account": cast.a.customer.account.pk,
            "period_start": f"{YEAR}-06-01",
            "period_end": f"{YEAR}-06-30",
        }
    before = Invoice.objects.count()

    response = api(cast.a.customer_key).post(path, body, format="json")

    assert response.status_code == 403
    assert Invoice.objects.count() == before
    assert Invoice.objects.get(pk=ledgers.a.draft.pk).is_draft


def test_a_read_only_key_reads_but_gets_403_on_writes(api, cast, ledgers):
    _, key = tenancy_services.create_api_key(
        actor=Scope.system(),
        name="A read only",
        scope=ApiKey.Scope.RESELLER,
        reseller=cast.a.reseller,
        access=ApiKey.Access.READ,
    )
    client = api(key)

    assert client.get(url(ledgers.a.draft, "pdf")).status_code == 200
    response = client.post(url(ledgers.a.draft, "issue"))

    assert response.status_code == 403
    assert response.json() == {"detail": "This API key can only read."}
    assert Invoice.objects.get(pk=ledgers.a.draft.pk).is_draft


def test_invoices_cannot_be_changed_or_deleted(api, cast, ledgers):
    client = api(cast.operator_key)

    assert client.patch(url(ledgers.a.draft), {"total": "0"}, format="json").status_code == 405
    assert client.delete(url(ledgers.a.draft)).status_code == 405


def test_the_list_costs_a_fixed_number_of_queries(api, cast, ledgers, django_assert_max_num_queries):
    for month in (5, 6, 7, 8):
        charge(cast.a.customer, "1", datetime(YEAR, month, 3, tzinfo=UTC))
        draft(cast.a.customer, month)
    client = api(cast.operator_key)
    client.get(INVOICES)  # the key's last-used stamp is written at most once a minute

    with django_assert_max_num_queries(4):
        assert len(client.get(INVOICES).json()["results"]) == 13
