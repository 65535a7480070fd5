"""The portal's Invoices page: a customer's own issued invoices and credit notes, each as a page
and a PDF; drafts and anyone else's are 404s, staff are sent to the admin."""

import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.invoicing.services import invoices
from tests.conftest import user_of
from tests.invoicing.conftest import SYSTEM, WHO, YEAR, charge, draft

INVOICES = reverse("portal:invoices")


@pytest.fixture
def client_a(client, cast):
    """A browser session signed in as reseller A's customer."""
    client.force_login(cast.a.customer_user)
    return client


def page_url(invoice) -> str:
    return reverse("portal:invoice", args=[invoice.pk])


def pdf_url(invoice) -> str:
    return reverse("portal:invoice-pdf", args=[invoice.pk])


def listed(response) -> set[str]:
    """Invoice numbers on the page."""
    assert response.status_code == 200
    return set(re.findall(r'<tr class="invoice[^"]*">\s*<td><a [^>]*>([^<]+)</a>', response.content.decode()))


@pytest.mark.parametrize("who", WHO)
def test_scoping_matrix(client, cast, ledgers, who):
    client.force_login(user_of(cast, who))
    own = {"a.customer": ledgers.a, "b.customer": ledgers.b}.get(who)

    listing = client.get(INVOICES)
    pages = {invoice.pk: client.get(page_url(invoice)).status_code for invoice in ledgers.all}
    pdfs = {invoice.pk: client.get(pdf_url(invoice)).status_code for invoice in ledgers.all}

    if own is None:
        # The portal is for customers: operators and staff are shown the way to the admin.
        assert listing.status_code == 403
        assert set(pages.values()) == set(pdfs.values()) == {403}
        return
    mine = {invoice.pk for invoice in own.customer_sees}
    assert listed(listing) == {own.issued.number, own.credit_note.number}
    assert pages == pdfs == {pk: 200 if pk in mine else 404 for pk in pages}


def test_a_draft_of_the_customers_own_is_never_shown(client_a, ledgers):
    body = client_a.get(INVOICES).content.decode()

    assert page_url(ledgers.a.draft) not in body
    assert client_a.get(page_url(ledgers.a.draft)).status_code == 404
    assert client_a.get(pdf_url(ledgers.a.draft)).status_code == 404


def test_the_page_lists_figures_and_links_to_the_documents(client_a, ledgers):
    body = client_a.get(INVOICES).content.decode()

    issued, note = ledgers.a.issued, ledgers.a.credit_note
    assert "13.75 USD" in body and "2.50 USD" in body
    assert f"Credit note for {issued.number}" in body
    assert "To pay" in body
    assert page_url(issued) in body and pdf_url(issued) in body and pdf_url(note) in body
    assert re.findall(r'<a href="([^"]+)" aria-current="page">', body) == [INVOICES]


def test_the_pdf_downloads_and_the_page_shows_the_document(client_a, ledgers):
    invoice = ledgers.a.issued

    pdf = client_a.get(pdf_url(invoice))
    page = client_a.get(page_url(invoice))

    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    assert pdf["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert invoice.number in page.content.decode()
    assert "default-src 'none'" in page["Content-Security-Policy"]


def test_a_customer_without_invoices_is_told_so(client, cast, db):
    client.force_login(cast.a.customer_user)

    assert "You have no invoices yet." in client.get(INVOICES).content.decode()


def test_the_page_is_in_spanish_for_a_spanish_customer(client_a, ledgers):
    client_a.post(reverse("portal:language"), {"language": "es"})

    body = client_a.get(INVOICES).content.decode()

    assert '<html lang="es">' in body
    assert "Facturas de Customer A" in body
    assert "Importe pendiente" in body and "Pendiente de pago" in body
    assert f"Nota de crédito de la factura {ledgers.a.issued.number}" in body


def test_the_page_costs_a_fixed_number_of_queries(client_a, cast, ledgers, django_assert_max_num_queries):
    for month in (5, 6, 7, 8, 9):
        charge(cast.a.customer, "1", datetime(YEAR, month, 3, tzinfo=UTC))
        invoices.issue(draft(cast.a.customer, month), actor=SYSTEM)
    client_a.get(INVOICES)

    with django_assert_max_num_queries(8):
        assert len(listed(client_a.get(INVOICES))) == 7
