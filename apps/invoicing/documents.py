"""Invoices and credit notes as documents: the HTML page, its PDF, and the e-mail that sends it.

A document reads the invoice's stored figures and lines, never the ledger, so that an issued
invoice shown again years later says what it said when it was sent. Amounts follow
apps.core.formatting's rule (totals in the currency's minor units, with its code); lines are
signed for the reader: a call or a fee as its cost, a payment as what the account received.
"""

import base64
import mimetypes
import re
from decimal import Decimal
from email.headerregistry import Address
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from apps.core.formatting import format_total
from apps.invoicing.models import Invoice, InvoiceLine, Issuer

Kind = InvoiceLine.Kind
# Calls and fees are listed as what they cost, a credit note's credits as what they give back;
# payments, refunds and adjustments apart, signed as the account saw them. Tax lines are not
# listed: the totals show the tax once.
MOVEMENT_KINDS = (Kind.PAYMENT, Kind.REFUND, Kind.ADJUSTMENT)
# Embedded as a data: URI, the only kind of URL the PDF renderer is allowed to read.
LOGO_MAX_BYTES = 2 * 1024 * 1024
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def render_html(invoice: Invoice) -> str:
    """The invoice or credit note as a complete, self-contained HTML page in its language."""
    with translation.override(_language(invoice)):
        return render_to_string("invoicing/document.html", _document_context(invoice))


def render_pdf(invoice: Invoice) -> bytes:
    """The invoice's HTML page as an A4 PDF."""
    # Imported here: WeasyPrint loads Pango through cffi, which only documents need.
    import weasyprint

    # An uploaded SVG logo may point at file: or http: URLs; nothing but data: is fetched.
    fetcher = weasyprint.URLFetcher(allowed_protocols={"data"})
    return weasyprint.HTML(string=render_html(invoice), base_url=None, url_fetcher=fetcher).write_pdf()


def email_message(invoice: Invoice, *, to: list[str]) -> EmailMessage:
    """The e-mail that sends `invoice` to `to`, from its issuer, with the PDF attached."""
    issuer = invoice.issuer
    with translation.override(_language(invoice)):
        context = _document_context(invoice)
        subject = _subject(invoice)
        body = render_to_string("invoicing/email.txt", context)
    if issuer.email:
        sender = str(Address(display_name=issuer.legal_name, addr_spec=issuer.email))
    else:
        sender = settings.DEFAULT_FROM_EMAIL
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=sender,
        to=to,
        reply_to=[issuer.email] if issuer.email else None,
    )
    message.attach(f"{filename(invoice)}.pdf", render_pdf(invoice), "application/pdf")
    return message


def filename(invoice: Invoice) -> str:
    """A download's file name, without extension: the number, or "draft-<id>" before issue."""
    if not invoice.number:
        return f"draft-{invoice.pk}"
    # A prefix such as "2026/" must not become a directory in the customer's downloads.
    return _UNSAFE_IN_FILENAME.sub("-", invoice.number).strip("-.") or f"invoice-{invoice.pk}"


def _language(invoice: Invoice) -> str:
    return invoice.language or invoice.issuer.language or settings.LANGUAGE_CODE


def _subject(invoice: Invoice) -> str:
    values = {"number": invoice.number, "issuer": invoice.issuer.legal_name}
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        if invoice.is_draft:
            return _("Draft credit note from %(issuer)s") % values
        return _("Credit note %(number)s from %(issuer)s") % values
    if invoice.is_draft:
        return _("Draft invoice from %(issuer)s") % values
    return _("Invoice %(number)s from %(issuer)s") % values


def _customer(account) -> dict:
    """Who is billed: the peer, or a reseller (its account with the operator), with the
    details its own issuer profile prints on its invoices."""
    if account.peer_id:
        peer = account.peer
        company, address, tax_id = peer.company, peer.billing_address, peer.tax_id
    else:
        peer = account.reseller
        profile = Issuer.objects.filter(key=Issuer.key_for(peer.pk)).first()
        company = profile.legal_name if profile else peer.company
        address, tax_id = (profile.address, profile.tax_id) if profile else ("", "")
    return {
        "name": peer.name,
        "company": company if company != peer.name else "",
        "billing_address": address,
        "tax_id": tax_id,
    }


def _document_context(invoice: Invoice) -> dict:
    issuer = invoice.issuer
    currency = invoice.currency
    lines = list(invoice.lines.all())
    credit_note = invoice.kind == Invoice.Kind.CREDIT_NOTE
    corrects = invoice.corrects

    def money(value) -> str:
        return format_total(value, currency)

    calls = [line for line in lines if line.kind == Kind.CALLS]
    fees = [line for line in lines if line.kind == Kind.FEE]
    movements = [line for line in lines if line.kind in MOVEMENT_KINDS]
    credits = [line for line in lines if line.kind == Kind.CREDIT]
    bundles = [line for line in lines if line.kind == Kind.BUNDLE]
    terminated = [line for line in lines if line.kind == Kind.TERMINATED]
    call_seconds = sum(line.seconds or 0 for line in calls)
    return {
        "invoice": invoice,
        "issuer": issuer,
        "logo": _logo_uri(issuer),
        "language": translation.get_language(),
        "credit_note": credit_note,
        "title": _("Credit note") if credit_note else _("Invoice"),
        "customer": _customer(invoice.account),
        "issued_on": _local_date(invoice.issued_at, invoice.time_zone),
        "corrects": corrects,
        "corrects_issued_on": _local_date(corrects.issued_at, corrects.time_zone) if corrects else None,
        "calls": [
            {
                "description": line.description,
                "calls": _count(line.calls),
                "minutes": _minutes(line.seconds),
                "amount": money(-line.amount),
            }
            for line in calls
        ],
        "calls_total": {
            "calls": _count(sum(line.calls or 0 for line in calls)),
            "minutes": _minutes(call_seconds),
            "amount": money(-sum((line.amount for line in calls), Decimal(0))),
        },
        "terminated": [
            {
                "description": line.description,
                "calls": _count(line.calls),
                "minutes": _minutes(line.seconds),
                "amount": money(line.amount),
            }
            for line in terminated
        ],
        "terminated_total": money(sum((line.amount for line in terminated), Decimal(0))),
        "bundles": [
            {
                "description": line.description,
                "calls": _count(line.calls),
                "minutes": _minutes(line.seconds),
                "amount": money(-line.amount),
            }
            for line in bundles
        ],
        "fees": [_dated(line, money(-line.amount)) for line in fees],
        "fees_total": money(-sum((line.amount for line in fees), Decimal(0))),
        "credits": [_dated(line, money(line.amount)) for line in credits],
        "movements": [_dated(line, money(line.amount)) for line in movements],
        "tax_label": f"{invoice.tax_name} {_percent(invoice.tax_rate)}",
        "net": money(invoice.net),
        "tax": money(invoice.tax),
        "total": money(invoice.total),
        "amount_due": money(invoice.amount_due),
        # A draft is not asked to be paid.
        "has_amount_due": invoice.amount_due > 0 and not invoice.is_draft,
        # The account over the period, signed as the ledger is: what the customer had, what
        # the period took and brought, what it has now.
        "summary": [
            (_("Opening balance"), money(invoice.opening_balance)),
            (_("Calls"), money(invoice.charges)),
            *([(_("Calls terminated"), money(invoice.terminated))] if invoice.terminated else []),
            (_("Fees"), money(invoice.fees)),
            (invoice.tax_name, money(invoice.tax_posted)),
            (_("Payments"), money(invoice.payments)),
            (_("Refunds"), money(invoice.refunds)),
            (_("Adjustments"), money(invoice.adjustments)),
        ],
        "closing_balance": money(invoice.closing_balance),
        "page_label": _("Page"),
    }


def _dated(line: InvoiceLine, amount: str) -> dict:
    return {"occurred_on": line.occurred_on, "description": line.description, "amount": amount}


def _local_date(moment, time_zone: str):
    return moment.astimezone(ZoneInfo(time_zone)).date() if moment else None


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _minutes(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return f"{(Decimal(seconds) / 60).quantize(Decimal('0.01')):,}"


def _percent(rate: Decimal) -> str:
    """21.0000 → "21%", 7.5000 → "7.5%"."""
    return f"{Decimal(rate).normalize():f}%"


def _logo_uri(issuer: Issuer) -> str:
    """The issuer's logo as a data: URI: from its row, else (a logo uploaded before the rows
    kept it) from the file if this node has it; empty when it has none."""
    if issuer.logo_data:
        data, mime = bytes(issuer.logo_data), issuer.logo_type
    elif issuer.logo:
        try:
            with issuer.logo.open("rb") as file:
                data = file.read(LOGO_MAX_BYTES + 1)
        except (OSError, ValueError):
            return ""
        mime, _encoding = mimetypes.guess_type(issuer.logo.name)
    else:
        return ""
    if len(data) > LOGO_MAX_BYTES or mime not in ("image/png", "image/jpeg", "image/svg+xml", "image/gif"):
        return ""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
