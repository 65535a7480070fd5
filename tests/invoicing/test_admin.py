"""Invoices and issuer profiles in the admin: scoped like every admin page, read only, changed
through object tools and list actions that call the invoicing services."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry
from apps.invoicing import documents
from apps.invoicing.models import Invoice, Issuer
from apps.rates.models import RateTable
from tests.admin.conftest import admin_url, form_payload, listed, messages_of, tool_url
from tests.conftest import user_of
from tests.invoicing.conftest import WHO, YEAR, charge

CHANGELIST = reverse("admin:invoicing_invoice_changelist")
NEW = reverse("admin:invoicing_invoice_new")


def document_url(invoice: Invoice, kind: str) -> str:
    return reverse(f"admin:invoicing_invoice_{kind}", args=[invoice.pk])


def fresh(invoice: Invoice) -> Invoice:
    return Invoice.objects.get(pk=invoice.pk)


# --- who sees what --------------------------------------------------------------------------


@pytest.mark.parametrize("who", WHO)
def test_each_login_lists_opens_and_downloads_only_the_invoices_it_may(cast, ledgers, login, who):
    client = login(user_of(cast, who))
    if who.endswith("customer"):
        # Customers have no admin: every invoice page sends them to sign in there.
        for path in (CHANGELIST, admin_url(ledgers.a.issued), document_url(ledgers.a.issued, "pdf")):
            response = client.get(path)
            assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
        return
    visible = ledgers.visible_to(who)

    assert listed(client.get(CHANGELIST)) == visible
    for invoice in ledgers.all:
        page = client.get(admin_url(invoice))
        pdf = client.get(document_url(invoice, "pdf"))
        html = client.get(document_url(invoice, "html"))
        if invoice.pk in visible:
            assert (page.status_code, pdf.status_code, html.status_code) == (200, 200, 200), invoice
            assert pdf["Content-Type"] == "application/pdf"
        else:
            # Someone else's invoice reads as absent: the page as the admin says it, the
            # documents as a 404.
            assert page.status_code == 302 and page.url == reverse("admin:index"), invoice
            assert (pdf.status_code, html.status_code) == (404, 404), invoice


def test_reseller_staff_never_see_the_issuer_column_nor_filter_by_it(cast, ledgers, login):
    staff = login(cast.a.staff).get(CHANGELIST).content.decode()
    operator = login(cast.operator).get(CHANGELIST).content.decode()

    assert "column-issuer" not in staff and "column-issuer" in operator
    assert "Reseller B" not in staff
    assert (
        login(cast.a.staff).get(CHANGELIST, {"issuer__id__exact": ledgers.b.issued.issuer_id}).status_code
        == 400
    )


def test_the_list_is_filtered_by_state_and_kind_and_searched_by_number_and_customer(cast, ledgers, login):
    client = login(cast.operator)

    assert listed(client.get(CHANGELIST, {"state__exact": "draft"})) == {
        ledgers.a.draft.pk,
        ledgers.b.draft.pk,
        ledgers.operator.draft.pk,
    }
    assert listed(client.get(CHANGELIST, {"kind__exact": "credit", "q": "Customer A"})) == {
        ledgers.a.credit_note.pk
    }
    assert listed(client.get(CHANGELIST, {"q": ledgers.b.issued.number})) == {
        ledgers.a.issued.pk,  # every issuer's first invoice is INV-000001
        ledgers.b.issued.pk,
        ledgers.operator.issued.pk,
    }
    assert listed(client.get(CHANGELIST, {"account__id__exact": cast.a.customer.account.pk})) == {
        invoice.pk for invoice in ledgers.a.all
    }


def test_the_invoice_page_is_read_only_with_its_lines_documents_and_credit_notes(cast, ledgers, login):
    invoice = ledgers.a.issued
    page = login(cast.a.staff).get(admin_url(invoice)).content.decode()

    assert 'name="_save"' not in page
    assert "Germany" in page and "France" in page
    assert "13.75 USD" in page
    assert document_url(invoice, "pdf") in page and document_url(invoice, "html") in page
    assert ledgers.a.credit_note.number in page
    assert tool_url(invoice, "credit") in page and tool_url(invoice, "pay") in page
    assert tool_url(invoice, "issue") not in page  # issued already


def test_posting_the_invoice_form_changes_nothing(cast, ledgers, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(ledgers.a.draft)))

    response = client.post(admin_url(ledgers.a.draft), {**payload, "total": "0"})

    assert response.status_code == 403
    assert fresh(ledgers.a.draft).total == ledgers.a.draft.total


def test_the_changelist_costs_a_fixed_number_of_queries(cast, ledgers, login, django_assert_max_num_queries):
    client = login(cast.a.staff)
    client.get(CHANGELIST)

    with django_assert_max_num_queries(10):
        assert len(listed(client.get(CHANGELIST))) == 3


# --- tools: one invoice, one service ------------------------------------------------------


def test_a_draft_is_issued_by_its_tool(cast, ledgers, login):
    client = login(cast.a.staff)

    response = client.post(tool_url(ledgers.a.draft, "issue"), follow=True)

    issued = fresh(ledgers.a.draft)
    assert (issued.state, issued.number) == (Invoice.State.ISSUED, "INV-000002")
    assert "Issued as INV-000002" in " ".join(messages_of(response))


def test_a_credit_note_is_issued_by_its_tool_and_refusals_land_on_the_field(cast, ledgers, login):
    client = login(cast.a.staff)
    invoice = ledgers.a.issued

    refused = client.post(tool_url(invoice, "credit"), {"amount": "50", "reason": "Too much"})
    done = client.post(tool_url(invoice, "credit"), {"amount": "1.25", "reason": "Goodwill"}, follow=True)

    assert refused.status_code == 200
    assert "credited already" in " ".join(refused.context["form"].errors["amount"])
    note = Invoice.objects.get(corrects=invoice, reason="Goodwill")
    assert (note.number, note.total) == ("CN-000002", Decimal("1.25"))
    assert "Credit note CN-000002" in " ".join(messages_of(done))


def test_a_payment_is_recorded_by_its_tool(cast, ledgers, login):
    invoice = ledgers.a.issued

    login(cast.a.staff).post(tool_url(invoice, "pay"), {"amount": "", "reference": "wire-9"})

    assert fresh(invoice).state == Invoice.State.PAID
    entry = LedgerEntry.objects.get(account=invoice.account, kind=LedgerEntry.Kind.PAYMENT)
    assert (entry.amount, entry.reference) == (Decimal("13.75"), "wire-9")


def test_an_invoice_is_sent_by_its_tool_to_the_addresses_given(cast, ledgers, login):
    client = login(cast.a.staff)

    refused = client.post(tool_url(ledgers.a.issued, "send"), {"to": "not-an-address"})
    client.post(tool_url(ledgers.a.issued, "send"), {"to": "ap@a.example, boss@a.example"})

    assert "to" in refused.context["form"].errors
    (message,) = mail.outbox
    assert message.to == ["ap@a.example", "boss@a.example"]
    assert fresh(ledgers.a.issued).state == Invoice.State.SENT


@pytest.mark.parametrize("tool", ["issue", "credit", "pay", "send"])
def test_the_tools_on_the_other_resellers_invoice_are_404(cast, ledgers, login, tool):
    invoice = ledgers.b.draft if tool == "issue" else ledgers.b.issued
    client = login(cast.a.staff)

    assert client.get(tool_url(invoice, tool)).status_code == 404
    response = client.post(tool_url(invoice, tool), {"amount": "1", "reason": "x", "to": "x@a.example"})

    assert response.status_code == 404
    assert fresh(invoice).state == invoice.state
    assert not Invoice.objects.filter(corrects=invoice, reason="x").exists()
    assert mail.outbox == []


# --- list actions ------------------------------------------------------------------------


def run_action(client, action: str, invoices, *, confirm: bool = True):
    data = {"action": action, "_selected_action": [invoice.pk for invoice in invoices]}
    if confirm:
        data["apply"] = "1"
    return client.post(CHANGELIST, data, follow=True)


def test_the_issue_action_asks_first_then_issues_only_the_selected_drafts(cast, ledgers, login):
    client = login(cast.operator)
    selected = [ledgers.a.draft, ledgers.b.draft, ledgers.a.issued]

    asked = run_action(client, "issue_selected", selected, confirm=False)
    assert fresh(ledgers.a.draft).is_draft
    assert ledgers.a.issued.number not in asked.content.decode()  # only the drafts are listed

    run_action(client, "issue_selected", selected)

    assert not fresh(ledgers.a.draft).is_draft and not fresh(ledgers.b.draft).is_draft
    assert fresh(ledgers.operator.draft).is_draft


def test_the_payment_and_send_actions_call_the_services_per_invoice(cast, ledgers, login):
    Account.objects.filter(pk=cast.a.customer.account.pk).update(notification_email="ap@a.example")
    client = login(cast.a.staff)

    sent = run_action(client, "send_selected", [ledgers.a.issued, ledgers.a.draft])
    paid = run_action(client, "pay_selected", [ledgers.a.issued, ledgers.a.credit_note])

    assert [message.to for message in mail.outbox] == [["ap@a.example"]]
    assert "1 invoice(s) sent." in messages_of(sent)
    assert "1 invoice(s) paid." in messages_of(paid)
    assert fresh(ledgers.a.issued).state == Invoice.State.PAID


def test_an_action_never_reaches_the_other_resellers_invoices(cast, ledgers, login):
    run_action(login(cast.a.staff), "issue_selected", [ledgers.b.draft])

    assert fresh(ledgers.b.draft).is_draft


# --- a draft for a period ------------------------------------------------------------------


def test_a_draft_for_a_period_is_made_from_the_form(cast, login):
    charge(cast.a.customer, "7", datetime(YEAR, 8, 20, tzinfo=UTC))
    client = login(cast.a.staff)
    form = client.get(NEW)
    offered = {account.pk for account in form.context["form"].fields["account"].queryset}

    response = client.post(
        NEW,
        {
            "account": cast.a.customer.account.pk,
            "period_start": f"{YEAR}-08-01",
            "period_end": f"{YEAR}-08-31",
        },
    )

    assert offered == {cast.a.customer.account.pk}
    invoice = Invoice.objects.get(account=cast.a.customer.account)
    assert response.status_code == 302 and response.url == admin_url(invoice)
    assert (invoice.state, invoice.total) == (Invoice.State.DRAFT, Decimal(7))
    assert login(cast.a.staff).get(reverse("admin:invoicing_invoice_add")).url == NEW
    assert NEW in client.get(CHANGELIST).content.decode()


def test_the_period_form_says_what_is_wrong_next_to_the_field(cast, login):
    client = login(cast.a.staff)
    today = timezone.localdate()
    data = {"account": cast.a.customer.account.pk}

    backwards = client.post(NEW, {**data, "period_start": f"{YEAR}-08-31", "period_end": f"{YEAR}-08-01"})
    unfinished = client.post(
        NEW,
        {**data, "period_start": (today - timedelta(days=2)).isoformat(), "period_end": today.isoformat()},
    )
    stranger = client.post(
        NEW,
        {
            "account": cast.b.customer.account.pk,
            "period_start": f"{YEAR}-08-01",
            "period_end": f"{YEAR}-08-31",
        },
    )

    assert "ends on or after" in " ".join(backwards.context["form"].errors["period_end"])
    assert "not ended" in " ".join(unfinished.context["form"].errors["period_end"])
    assert "account" in stranger.context["form"].errors
    assert not Invoice.objects.exists()


# --- issuer profiles ------------------------------------------------------------------------


def test_reseller_staff_see_and_edit_only_their_own_issuer_profile(cast, ledgers, login):
    own, other = ledgers.a.issued.issuer, ledgers.b.issued.issuer
    client = login(cast.a.staff)

    assert listed(client.get(admin_url(Issuer, "changelist"))) == {own.pk}
    payload = form_payload(client.get(admin_url(own)))
    assert "reseller" not in payload
    payload.update(legal_name="Reseller A Telecom S.L.", tax_id="ESB12345678", tax_rate="21", language="es")
    response = client.post(admin_url(own), payload)

    assert response.status_code == 302, response.context["adminform"].form.errors
    own.refresh_from_db()
    assert (own.legal_name, own.tax_id, own.tax_rate, own.language) == (
        "Reseller A Telecom S.L.",
        "ESB12345678",
        Decimal(21),
        "es",
    )
    assert client.get(admin_url(other)).status_code == 302
    # Staff with a profile are taken to it rather than offered a second one.
    assert client.get(admin_url(Issuer, "add")).url == admin_url(own)
    assert len(listed(login(cast.operator).get(admin_url(Issuer, "changelist")))) == 3


@pytest.fixture
def media(settings, tmp_path):
    """Uploaded logos under this test's directory."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def test_reseller_staff_create_their_profile_once_with_a_logo(cast, login, media):
    client = login(cast.b.staff)
    payload = form_payload(client.get(admin_url(Issuer, "add")))
    payload.update(legal_name="B Networks Ltd", language="en", tax_rate="0", payment_terms_days="30")
    logo = SimpleUploadedFile("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")

    response = client.post(admin_url(Issuer, "add"), {**payload, "logo": logo})

    assert response.status_code == 302, response.context["adminform"].form.errors
    issuer = Issuer.objects.get()
    assert (issuer.reseller, issuer.key, issuer.payment_terms_days) == (
        cast.b.reseller,
        f"reseller:{cast.b.reseller.pk}",
        30,
    )
    assert issuer.logo.name.endswith(".svg")
    assert (media / issuer.logo.name).read_bytes().startswith(b"<svg")
    # Also in the row every node reads: another node, without the file, draws it all the same.
    assert (bytes(issuer.logo_data), issuer.logo_type) == (
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        "image/svg+xml",
    )
    (media / issuer.logo.name).unlink()
    assert documents._logo_uri(issuer).startswith("data:image/svg+xml;base64,")


def test_a_logo_that_is_not_an_image_is_refused(cast, login, media):
    client = login(cast.b.staff)
    payload = form_payload(client.get(admin_url(Issuer, "add")))
    payload.update(legal_name="B Networks Ltd", language="en", tax_rate="0", payment_terms_days="14")

    response = client.post(
        admin_url(Issuer, "add"), {**payload, "logo": SimpleUploadedFile("x.html", b"<b>")}
    )

    assert "logo" in response.context["adminform"].form.errors
    assert not Issuer.objects.exists()


# --- invoicing settings where accounts and price lists are edited --------------------------


def test_an_accounts_invoicing_settings_are_changed_in_its_admin_page(cast, login):
    account = cast.a.customer.account
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(account)))
    payload.update(invoice_period="weekly", tax_rate="7.5", invoice_language="es")

    response = client.post(admin_url(account), payload)

    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert (account.invoice_period, account.tax_rate, account.invoice_language) == (
        "weekly",
        Decimal("7.5"),
        "es",
    )


def test_a_price_lists_prices_include_tax_is_set_in_its_admin_page(cast, login):
    table = cast.a.sell_table
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(table)))
    payload["prices_include_tax"] = "on"

    response = client.post(admin_url(table), payload)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert RateTable.objects.get(pk=table.pk).prices_include_tax


def test_the_operator_cannot_give_an_issuer_a_second_profile(cast, ledgers, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(Issuer, "add")))
    payload.update(
        reseller=str(cast.a.reseller.pk),
        legal_name="A again",
        language="en",
        tax_rate="0",
        payment_terms_days="14",
    )

    response = client.post(admin_url(Issuer, "add"), payload)

    assert "already exists" in " ".join(response.context["adminform"].form.errors["reseller"])
    assert Issuer.objects.filter(reseller=cast.a.reseller).count() == 1
