"""Invoices and credit notes as documents: the HTML page, the PDF, and the e-mail that sends it.

The invoices are written straight to the database with fixed figures and dates: documents
print what an invoice stores, whatever the services that calculate it do.
"""

import shutil
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.invoicing import documents
from apps.invoicing.models import Invoice, InvoiceLine, Issuer
from tests.factories import make_peer

LINES = [
    # (kind, description, occurred_on, calls, seconds, ledger-signed amount)
    (InvoiceLine.Kind.CALLS, "Germany Mobile", None, 1204, 171_390, "-342.78"),
    (InvoiceLine.Kind.CALLS, "United Kingdom Fixed", None, 86, 9_012, "-4.51"),
    (InvoiceLine.Kind.FEE, "Monthly port fee", date(2026, 3, 1), None, None, "-25.00"),
    (InvoiceLine.Kind.PAYMENT, "Bank transfer", date(2026, 3, 12), None, None, "300.00"),
    (InvoiceLine.Kind.TAX, "VAT 21%", date(2026, 3, 31), None, None, "-78.18"),
]


def make_issuer(**fields) -> Issuer:
    values = {
        "key": Issuer.key_for(None),
        "legal_name": "Northwind Telecom B.V.",
        "address": "Keizersgracht 100\n1015 AA Amsterdam\nNetherlands",
        "tax_id": "NL001234567B01",
        "email": "billing@northwind.example",
        "phone": "+31 20 123 4567",
        "website": "northwind.example",
        "bank_details": "IBAN NL91 ABNA 0417 1643 00\nBIC ABNANL2A",
        "footer": "Northwind Telecom B.V. · Chamber of Commerce 12345678",
        "tax_name": "VAT",
        "tax_rate": Decimal("21"),
    }
    return Issuer.objects.create(**(values | fields))


def make_invoice(peer, *, issuer=None, lines=LINES, **fields) -> Invoice:
    values = {
        "issuer": issuer or make_issuer(),
        "account": peer.account,
        "kind": Invoice.Kind.INVOICE,
        "state": Invoice.State.ISSUED,
        "sequence": 42,
        "number": "INV-0042",
        "period_start": date(2026, 3, 1),
        "period_end": date(2026, 3, 31),
        "starts_at": datetime(2026, 3, 1, tzinfo=UTC),
        "ends_at": datetime(2026, 4, 1, tzinfo=UTC),
        "time_zone": "Europe/Amsterdam",
        "currency": "EUR",
        "language": "en",
        "opening_balance": Decimal("-120.00"),
        "charges": Decimal("-347.29"),
        "fees": Decimal("-25.00"),
        "payments": Decimal("300.00"),
        "tax_posted": Decimal("-78.18"),
        "closing_balance": Decimal("-270.47"),
        "tax_rate": Decimal("21"),
        "tax_name": "VAT",
        "net": Decimal("372.29"),
        "tax": Decimal("78.18"),
        "total": Decimal("450.47"),
        "amount_due": Decimal("270.47"),
        "issued_at": datetime(2026, 4, 1, 6, 0, tzinfo=UTC),
        "due_on": date(2026, 4, 15),
    }
    invoice = Invoice.objects.create(**(values | fields))
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=kind,
            description=description,
            occurred_on=occurred_on,
            calls=calls,
            seconds=seconds,
            amount=Decimal(amount),
        )
        for position, (kind, description, occurred_on, calls, seconds, amount) in enumerate(lines, 1)
    )
    return invoice


def make_credit_note(invoice: Invoice, **fields) -> Invoice:
    values = {
        "issuer": invoice.issuer,
        "kind": Invoice.Kind.CREDIT_NOTE,
        "sequence": 7,
        "number": "CN-0007",
        "corrects": invoice,
        "reason": "Calls to Germany Mobile rated twice",
        "opening_balance": 0,
        "charges": 0,
        "fees": 0,
        "payments": 0,
        "tax_posted": 0,
        "closing_balance": 0,
        "net": Decimal("100.00"),
        "tax": Decimal("21.00"),
        "total": Decimal("121.00"),
        "amount_due": 0,
        "due_on": None,
    }
    lines = [
        (InvoiceLine.Kind.CREDIT, "Germany Mobile, rated twice", date(2026, 3, 31), None, None, "121.00")
    ]
    return make_invoice(invoice.account.peer, lines=lines, **(values | fields))


@pytest.fixture
def customer(db):
    return make_peer("Acme Calls", company="Acme Calls GmbH")


def test_an_issued_invoice_shows_its_number_customer_lines_and_totals(customer):
    html = documents.render_html(make_invoice(customer))

    assert html.startswith("<!DOCTYPE html>")
    for text in [
        "INV-0042",
        "Acme Calls GmbH",
        "Acme Calls",
        "Northwind Telecom B.V.",
        "NL001234567B01",
        "Keizersgracht 100<br>1015 AA Amsterdam",
        "IBAN NL91 ABNA 0417 1643 00",
        "April 1, 2026",  # issued at 08:00 in Amsterdam
        "April 15, 2026",
        "March 1, 2026",
        "March 31, 2026",
    ]:
        assert text in html, text
    # Each destination with its calls, minutes and cost, shown as the positive amount it costs.
    assert '<td>Germany Mobile</td><td class="num">1,204</td><td class="num">2,856.50</td>' in html
    assert '<td class="num">342.78 EUR</td>' in html
    assert "United Kingdom Fixed" in html and "150.20" in html and "4.51 EUR" in html
    assert "Monthly port fee" in html and "25.00 EUR" in html
    assert "Bank transfer" in html and "300.00 EUR" in html
    # Totals in the currency's minor units; the account summary signed as the ledger is.
    for text in [
        "372.29 EUR",
        "VAT 21%",
        "78.18 EUR",
        "450.47 EUR",
        "270.47 EUR",
        "-270.47 EUR",
        "-120.00 EUR",
    ]:
        assert text in html, text
    assert "Draft" not in html
    assert "Prices include" not in html
    assert "<script" not in html and "http" not in html  # self-contained


def test_the_customers_billing_address_and_tax_id_are_printed(db):
    peer = make_peer(
        "Bravo",
        company="Bravo Telecom S.L.",
        billing_address="Calle Mayor 1\n28013 Madrid",
        tax_id="ESB12345678",
    )
    html = documents.render_html(make_invoice(peer))
    assert "Calle Mayor 1<br>28013 Madrid" in html
    assert "ESB12345678" in html


def test_a_draft_is_labelled_draft_and_has_no_number(customer):
    invoice = make_invoice(
        customer, state=Invoice.State.DRAFT, number="", sequence=None, issued_at=None, due_on=None
    )

    html = documents.render_html(invoice)

    assert 'class="watermark"' in html and 'class="draft">Draft<' in html
    assert "INV-" not in html and 'class="number"' not in html
    assert "Issue date" not in html
    assert documents.filename(invoice) == f"draft-{invoice.pk}"


def test_a_credit_note_is_titled_so_and_names_the_invoice_it_corrects(customer):
    credit_note = make_credit_note(make_invoice(customer))

    html = documents.render_html(credit_note)

    assert "<h1>Credit note</h1>" in html and "CN-0007" in html
    assert "Invoice INV-0042" in html and "Calls to Germany Mobile rated twice" in html
    assert "Total credited" in html and "121.00 EUR" in html
    assert "Amount due" not in html and "<h1>Invoice</h1>" not in html


def test_prices_that_include_tax_are_said_to(customer):
    html = documents.render_html(make_invoice(customer, prices_include_tax=True))

    assert "Prices include VAT." in html


def test_a_spanish_invoice_has_spanish_headings_and_dates(customer):
    html = documents.render_html(make_invoice(customer, language="es"))

    assert '<html lang="es">' in html
    for text in [
        "<h1>Factura</h1>",
        "Llamadas por destino",
        "Importe pendiente",
        "Resumen de la cuenta",
        "abril",
    ]:
        assert text in html, text
    for text in ["<h1>Invoice</h1>", "Calls by destination", "Amount due", "Account summary", "April"]:
        assert text not in html, text


def test_a_logo_is_embedded_as_a_data_uri_and_a_missing_one_is_left_out(customer, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "invoicing").mkdir()
    (tmp_path / "invoicing" / "logo.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="10"><rect width="40" height="10"/></svg>'
    )
    with_logo = make_issuer(logo="invoicing/logo.svg")
    html = documents.render_html(make_invoice(customer, issuer=with_logo))
    assert '<img class="logo" src="data:image/svg+xml;base64,' in html

    Issuer.objects.filter(pk=with_logo.pk).update(logo="invoicing/gone.png")
    html = documents.render_html(Invoice.objects.get(number="INV-0042"))
    assert "<img" not in html


def test_the_download_file_name_is_safe_for_a_number_with_slashes(customer):
    assert documents.filename(make_invoice(customer, number="2026/INV 42")) == "2026-INV-42"


# --- PDF: real WeasyPrint, real fonts, real poppler --------------------------------------


def _require_pdf_tools() -> dict[str, str]:
    """The poppler-utils binaries by name; skips when WeasyPrint or poppler is missing."""
    pytest.importorskip("weasyprint", reason="WeasyPrint is not installed (requirements.txt)")
    tools = {tool: shutil.which(tool) for tool in ("pdftotext", "pdftoppm", "pdfimages")}
    for tool, path in tools.items():
        if path is None:
            pytest.skip(f"{tool} is missing (Debian package poppler-utils)")
    return tools


def _run(*command: str) -> bytes:
    # Our own arguments to a poppler binary found on PATH by _require_pdf_tools.
    return subprocess.run(command, capture_output=True, check=True, timeout=60).stdout  # noqa: S603


def _pgm_pixels(pgm: bytes) -> tuple[int, int, bytes]:
    """Width, height and 8-bit gray pixels of a binary PGM (P5), as pdftoppm -gray writes it."""
    fields, position = [], 0
    while len(fields) < 4:
        while pgm[position : position + 1].isspace():
            position += 1
        if pgm[position : position + 1] == b"#":
            position = pgm.index(b"\n", position)
            continue
        end = position
        while not pgm[end : end + 1].isspace():
            end += 1
        fields.append(pgm[position:end])
        position = end
    magic, width, height, maxval = fields
    assert magic == b"P5" and maxval == b"255"
    width, height = int(width), int(height)
    return width, height, pgm[position + 1 : position + 1 + width * height]


@pytest.mark.parametrize("name", ["ООО Ромашка", "株式会社テスト"])  # noqa: RUF001 - Cyrillic O on purpose
def test_the_pdf_renders_cyrillic_and_cjk_customer_names(db, name, tmp_path):
    tools = _require_pdf_tools()
    invoice = make_invoice(make_peer(name))

    pdf = documents.render_pdf(invoice)

    assert pdf.startswith(b"%PDF")
    (tmp_path / "invoice.pdf").write_bytes(pdf)
    text = _run(tools["pdftotext"], "-layout", str(tmp_path / "invoice.pdf"), "-").decode()
    assert name in text
    assert "INV-0042" in text and "450.47 EUR" in text and "Germany Mobile" in text
    page = _run(tools["pdftoppm"], "-gray", "-r", "30", "-f", "1", "-l", "1", str(tmp_path / "invoice.pdf"))
    width, height, pixels = _pgm_pixels(page)
    assert (width, height) in [(248, 351), (249, 351)]  # A4 at 30 dpi, however poppler rounds
    inked = sum(1 for value in pixels if value < 200)
    assert inked > width * height // 50, inked


def test_an_svg_logo_cannot_make_the_pdf_read_a_local_file(customer, settings, tmp_path):
    tools = _require_pdf_tools()
    image = pytest.importorskip("PIL.Image", reason="Pillow (a WeasyPrint dependency) is missing")
    settings.MEDIA_ROOT = tmp_path
    image.new("RGB", (8, 8), "red").save(tmp_path / "server-file.png")
    (tmp_path / "invoicing").mkdir()
    (tmp_path / "invoicing" / "logo.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="40" height="10"><image width="8" height="8" xlink:href="file://{tmp_path}/server-file.png"/></svg>'
    )
    invoice = make_invoice(customer, issuer=make_issuer(logo="invoicing/logo.svg"))
    (tmp_path / "invoice.pdf").write_bytes(documents.render_pdf(invoice))

    images = _run(tools["pdfimages"], "-list", str(tmp_path / "invoice.pdf")).decode().splitlines()
    assert images[2:] == [], images  # past the two header lines: no image at all


# --- E-mail ---------------------------------------------------------------------------------


def test_the_email_attaches_the_pdf_and_speaks_the_invoice_language(customer):
    _require_pdf_tools()
    invoice = make_invoice(customer, language="es")

    message = documents.email_message(invoice, to=["ap@acme.example"])

    assert message.subject == "Factura INV-0042 de Northwind Telecom B.V."
    assert message.from_email == '"Northwind Telecom B.V." <billing@northwind.example>'
    assert message.reply_to == ["billing@northwind.example"]
    assert message.to == ["ap@acme.example"]
    assert "Estimado/a Acme Calls GmbH:" in message.body
    assert "Importe pendiente: 270.47 EUR" in message.body and "IBAN NL91" in message.body
    ((name, content, mimetype),) = message.attachments
    assert (name, mimetype) == ("INV-0042.pdf", "application/pdf")
    assert content.startswith(b"%PDF")
    assert message.message()["Subject"]  # it encodes as a real message


def test_an_issuer_without_email_sends_from_the_default_address(customer, settings):
    _require_pdf_tools()
    settings.DEFAULT_FROM_EMAIL = "invoices@switch.example"
    invoice = make_credit_note(make_invoice(customer, issuer=make_issuer(email="")))

    message = documents.email_message(invoice, to=["ap@acme.example"])

    assert message.subject == "Credit note CN-0007 from Northwind Telecom B.V."
    assert message.from_email == "invoices@switch.example" and message.reply_to == []
    assert message.attachments[0][0] == "CN-0007.pdf"
    assert "It corrects invoice INV-0042." in message.body
