"""An invoice's document as an HTTP response: the PDF to download, the HTML page to look at.

One place for the admin, the API and the portal, which each decide first who may see the
invoice (visible_to, and never a draft for a customer); this module only answers.
"""

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from apps.invoicing import documents
from apps.invoicing.models import Invoice

# The document is self-contained (inline styles, the logo as a data: URI) and needs nothing
# else: an issuer's profile or a line's description can never load or run anything in the
# viewer's session, whatever slipped past the template's escaping.
DOCUMENT_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def pdf_response(invoice: Invoice) -> HttpResponse:
    """The invoice's PDF as an attachment named after its number."""
    response = HttpResponse(documents.render_pdf(invoice), content_type="application/pdf")
    return _private(response, invoice, "pdf", attachment=True)


def html_response(invoice: Invoice) -> HttpResponse:
    """The invoice's HTML page, shown in the browser (saved under its number if downloaded)."""
    response = HttpResponse(documents.render_html(invoice), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = DOCUMENT_POLICY
    return _private(response, invoice, "html", attachment=False)


def _private(response: HttpResponse, invoice: Invoice, extension: str, *, attachment: bool) -> HttpResponse:
    response["Content-Disposition"] = content_disposition_header(
        attachment, f"{documents.filename(invoice)}.{extension}"
    )
    # A customer's invoice: no shared cache keeps it, and a draft changes until issued.
    response["Cache-Control"] = "private, no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response
