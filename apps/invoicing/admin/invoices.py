"""Invoices in the admin: read here, with their lines; written only by the invoicing services.

An invoice's page is read only. What can happen to it (issue, credit note, payment, e-mail)
is an object tool or a list action that calls one service; a draft for an ended period comes
from the "New invoice for a period" form. The PDF and the HTML page are a click away on the
list and on the page. Reseller staff see their customers' invoices; the operator all.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from apps.billing.models import Account
from apps.core.admin import (
    ADD,
    CHANGE,
    VIEW,
    ConfirmForm,
    ObjectTool,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    error_pairs,
    show_errors,
)
from apps.core.errors import DomainError
from apps.core.formatting import format_total
from apps.core.money import MAX_AMOUNT, MONEY_DIGITS, MONEY_PLACES
from apps.invoicing import downloads, periods
from apps.invoicing.models import Invoice, InvoiceLine
from apps.invoicing.services import invoices as services


def _amount(**kwargs) -> forms.DecimalField:
    return forms.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, min_value=0, max_value=MAX_AMOUNT, **kwargs
    )


class CreditNoteForm(forms.Form):
    amount = _amount(help_text="Tax included, in the invoice's currency; credited to the account.")
    reason = forms.CharField(max_length=200, help_text="Printed on the credit note.")


class InvoicePaymentForm(forms.Form):
    amount = _amount(required=False, help_text="Empty: the invoice's amount due.")
    reference = forms.CharField(
        max_length=100,
        required=False,
        help_text="The bank's or gateway's transaction id; empty: the invoice's number. "
        "Posting the same reference twice credits once.",
    )

    def clean_reference(self):
        return self.cleaned_data["reference"].strip() or None


class SendForm(forms.Form):
    to = forms.CharField(
        max_length=254,
        required=False,
        label="To",
        help_text="Addresses separated by commas; empty: the account's notification address, "
        "else its reseller's.",
    )

    def clean_to(self):
        addresses = [address.strip() for address in self.cleaned_data["to"].split(",") if address.strip()]
        for address in addresses:
            validate_email(address)
        return addresses or None


class PeriodForm(forms.Form):
    """A draft invoice of one account for the days period_start..period_end on its clock."""

    account = forms.ModelChoiceField(queryset=Account.objects.none())
    period_start = forms.DateField(label="First day", widget=forms.DateInput(attrs={"type": "date"}))
    period_end = forms.DateField(
        label="Last day",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Included; the period must have ended on the customer's clock.",
    )

    def __init__(self, *args, accounts, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = accounts


def _issue(admin_, request, invoice, data):
    invoice = services.issue(invoice, actor=admin_.scope(request))
    return f"Issued as {invoice.number}: {format_total(invoice.total, invoice.currency)}."


def _credit(admin_, request, invoice, data):
    note = services.credit(invoice, actor=admin_.scope(request), amount=data["amount"], reason=data["reason"])
    return (
        f"Credit note {note.number} of {format_total(note.total, note.currency)} issued for {invoice.number}."
    )


def _pay(admin_, request, invoice, data):
    invoice, entry = services.record_payment(
        invoice, actor=admin_.scope(request), amount=data["amount"], reference=data["reference"]
    )
    return (
        f"Payment of {format_total(entry.amount, invoice.currency)} recorded "
        f"(reference {entry.reference}); {invoice.number} is paid."
    )


def _send(admin_, request, invoice, data):
    invoice = services.send(invoice, actor=admin_.scope(request), to=data["to"])
    return f"{invoice.number} sent to {invoice.sent_to}."


def _is_draft(invoice) -> bool:
    return invoice.is_draft


def _payable(invoice) -> bool:
    return invoice.kind == Invoice.Kind.INVOICE and invoice.state in (
        Invoice.State.ISSUED,
        Invoice.State.SENT,
    )


def _creditable(invoice) -> bool:
    return invoice.kind == Invoice.Kind.INVOICE and not invoice.is_draft


def _issued(invoice) -> bool:
    return not invoice.is_draft


PERIOD_FIELDS = ("period", "time_zone", "currency", "language")
FIGURES = (
    "opening",
    "charges_shown",
    "fees_shown",
    "payments_shown",
    "refunds_shown",
    "adjustments_shown",
    "tax_posted_shown",
    "terminated_shown",
    "closing",
)
TOTALS = ("tax_shown", "net_shown", "tax_amount", "total_shown", "amount_due_shown")
HISTORY = ("issued_at", "due_on", "sent_at", "sent_to", "paid_at", "created_at", "by")


def _money(name: str, description: str):
    @admin.display(description=description, ordering=name)
    def shown(self, invoice):
        return format_html(
            '<span class="nowrap">{}</span>', format_total(getattr(invoice, name), invoice.currency)
        )

    return shown


@admin.register(Invoice)
class InvoiceAdmin(ScopedModelAdmin):
    # Read only: an invoice changes only through the services its tools and actions call.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    operator_only_fields = ("issuer",)
    change_list_template = "admin/invoicing/invoice/change_list.html"
    list_display = (
        "number_or_draft",
        "customer",
        "period",
        "state",
        "total_shown",
        "amount_due_shown",
        "issued_on",
        "issuer",
        "documents",
    )
    list_select_related = ("account__peer", "issuer")
    list_filter = ("state", "kind", ("issuer", ScopedRelatedFilter))
    search_fields = ("number", "account__peer__name", "account__peer__company")
    change_form_template = "admin/invoicing/invoice/change_form.html"
    actions = ("issue_selected", "pay_selected", "send_selected")
    fieldsets = (
        (None, {"fields": ("number_or_draft", "kind", "state", "issuer", "customer", "corrects", "reason")}),
        ("Period", {"fields": PERIOD_FIELDS}),
        ("Account over the period", {"fields": FIGURES}),
        ("Totals", {"fields": TOTALS}),
        ("History", {"fields": (*HISTORY, "credit_notes_shown", "documents")}),
    )
    object_tools = (
        ObjectTool("issue", "Issue", ConfirmForm, _issue, show=_is_draft, help=(
            "Calculates the invoice again from the ledger, numbers it and fixes it for good; "
            "tax on top of the prices is posted to the account."
        )),
        ObjectTool("credit", "Credit note", CreditNoteForm, _credit, show=_creditable, help=(
            "Issues a credit note against this invoice and credits the account with it. "
            "Together the credit notes of an invoice never exceed its total."
        )),
        ObjectTool("pay", "Record payment", InvoicePaymentForm, _pay, show=_payable, help=(
            "Posts a payment to the account and marks the invoice paid."
        )),
        ObjectTool("send", "Send by e-mail", SendForm, _send, show=_issued, help=(
            "E-mails the invoice with its PDF attached."
        )),
    )  # fmt: skip

    # -- read only, yet tools and actions for who may change --

    def has_change_permission(self, request, obj=None):
        return False

    def base_fieldsets(self, request, obj=None):
        # A credit note names what it corrects and why; an invoice lists its credit notes.
        unused = (
            {"credit_notes_shown"} if obj and obj.kind == Invoice.Kind.CREDIT_NOTE else {"corrects", "reason"}
        )
        return [
            (name, {**options, "fields": tuple(f for f in options["fields"] if f not in unused)})
            for name, options in super().base_fieldsets(request, obj)
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            lines = InvoiceLine.objects.visible_to(self.scope(request)).filter(invoice=obj)
            context["lines"] = lines.order_by("position")
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_manage_permission(self, request):
        return self.allows(request, CHANGE)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account__peer", "issuer", "corrects")

    # -- columns and fields --

    @admin.display(description="number", ordering="number")
    def number_or_draft(self, invoice):
        if not invoice.number:
            return f"draft {invoice.pk}"
        if invoice.kind == Invoice.Kind.CREDIT_NOTE:
            return format_html('<span class="nowrap">{}</span> (credit note)', invoice.number)
        return format_html('<span class="nowrap">{}</span>', invoice.number)

    @admin.display(description="customer", ordering="account__peer__name")
    def customer(self, invoice):
        return invoice.account.peer

    @admin.display(description="period", ordering="period_start")
    def period(self, invoice):
        return format_html(
            '<span class="nowrap">{}</span> to <span class="nowrap">{}</span>',
            f"{invoice.period_start:%Y-%m-%d}",
            f"{invoice.period_end:%Y-%m-%d}",
        )

    @admin.display(description="issued", ordering="issued_at")
    def issued_on(self, invoice):
        if invoice.issued_at is None:
            return "—"
        return format_html(
            '<span class="nowrap">{}</span>', f"{timezone.localtime(invoice.issued_at):%Y-%m-%d}"
        )

    @admin.display(description="by")
    def by(self, invoice):
        return invoice.actor_label

    total_shown = _money("total", "total")

    @admin.display(description="amount due", ordering="amount_due")
    def amount_due_shown(self, invoice):
        if invoice.kind == Invoice.Kind.CREDIT_NOTE:
            return "—"
        return format_html(
            '<span class="nowrap">{}</span>', format_total(invoice.amount_due, invoice.currency)
        )

    opening = _money("opening_balance", "opening balance")
    charges_shown = _money("charges", "calls")
    fees_shown = _money("fees", "fees")
    payments_shown = _money("payments", "payments")
    refunds_shown = _money("refunds", "refunds")
    adjustments_shown = _money("adjustments", "adjustments")
    tax_posted_shown = _money("tax_posted", "tax posted")
    terminated_shown = _money("terminated", "calls terminated (credited)")
    closing = _money("closing_balance", "closing balance")
    net_shown = _money("net", "net")
    tax_amount = _money("tax", "tax amount")

    @admin.display(description="tax")
    def tax_shown(self, invoice):
        included = " (included in the prices)" if invoice.prices_include_tax else ""
        return f"{invoice.tax_name} {invoice.tax_rate.normalize():f}%{included}"

    @admin.display(description="credit notes")
    def credit_notes_shown(self, invoice):
        notes = list(invoice.credit_notes.order_by("sequence"))
        if not notes:
            return "—"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            (
                (
                    reverse(self._url_name("change"), args=[note.pk]),
                    note.number,
                    format_total(note.total, note.currency),
                )
                for note in notes
            ),
        )

    @admin.display(description="documents")
    def documents(self, invoice):
        return format_html(
            '<a href="{}" class="invoice-pdf">PDF</a> · '
            '<a href="{}" class="invoice-html" target="_blank" rel="noopener">HTML</a>',
            reverse(self._url_name("pdf"), args=[invoice.pk]),
            reverse(self._url_name("html"), args=[invoice.pk]),
        )

    # -- documents and the new-invoice form --

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("new/", self.admin_site.admin_view(self.new_view), name=f"{name}_new"),
            path("<path:object_id>/pdf/", self.admin_site.admin_view(self.pdf_view), name=f"{name}_pdf"),
            path("<path:object_id>/html/", self.admin_site.admin_view(self.html_view), name=f"{name}_html"),
            *super().get_urls(),
        ]

    def _visible(self, request, object_id) -> Invoice:
        if not self.has_view_permission(request):
            raise PermissionDenied
        invoice = self.get_object(request, unquote(object_id))
        if invoice is None:
            raise Http404  # someone else's invoice reads as absent, never as forbidden
        return invoice

    def pdf_view(self, request, object_id):
        return downloads.pdf_response(self._visible(request, object_id))

    def html_view(self, request, object_id):
        return downloads.html_response(self._visible(request, object_id))

    def add_view(self, request, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse(self._url_name("new")))

    def new_view(self, request):
        """A draft invoice of one account for a period that has ended."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        scope = self.scope(request)
        accounts = (
            Account.objects.visible_to(scope)
            .filter(peer__role__in=services.INVOICED_ROLES)
            .select_related("peer")
            .order_by("peer__name")
        )
        first, last = periods.last_complete_period(periods.MONTHLY, timezone.localdate())
        form = PeriodForm(
            request.POST if request.method == "POST" else None,
            accounts=accounts,
            initial={"period_start": first, "period_end": last},
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                invoice = services.create_invoice(
                    data["account"],
                    actor=scope,
                    period_start=data["period_start"],
                    period_end=data["period_end"],
                )
            except (DomainError, ValidationError) as exc:
                show_errors(form, error_pairs(exc))
            else:
                if invoice.is_draft:
                    message, level = (
                        f"Draft invoice of {invoice.account.peer} for {invoice.period_start} to "
                        f"{invoice.period_end}; issue it when it is right.",
                        messages.SUCCESS,
                    )
                else:
                    message, level = f"This period is invoiced already: {invoice.number}.", messages.WARNING
                self.message_user(request, message, level)
                return HttpResponseRedirect(reverse(self._url_name("change"), args=[invoice.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "New invoice for a period",
            "subtitle": None,
            "form": form,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/invoicing/invoice/new.html", context)

    def changelist_view(self, request, extra_context=None):
        extra = {"new_url": reverse(self._url_name("new")) if self.has_add_permission(request) else None}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    # -- actions: each calls one service per selected invoice --

    @admin.action(description="Issue selected drafts", permissions=["manage"])
    def issue_selected(self, request, queryset):
        drafts = queryset.filter(state=Invoice.State.DRAFT)
        return self._confirmed(
            request,
            drafts,
            "issue_selected",
            "Issue invoices",
            "issued",
            lambda invoice, actor: services.issue(invoice, actor=actor),
        )

    @admin.action(
        description="Record payment of selected invoices (their amount due)", permissions=["manage"]
    )
    def pay_selected(self, request, queryset):
        payable = queryset.filter(
            kind=Invoice.Kind.INVOICE, state__in=(Invoice.State.ISSUED, Invoice.State.SENT)
        )
        return self._confirmed(
            request, payable, "pay_selected", "Record payments", "paid",
            lambda invoice, actor: services.record_payment(invoice, actor=actor),
        )  # fmt: skip

    @admin.action(description="Send selected invoices by e-mail", permissions=["manage"])
    def send_selected(self, request, queryset):
        issued = queryset.exclude(state=Invoice.State.DRAFT)
        return self._confirmed(
            request,
            issued,
            "send_selected",
            "Send invoices",
            "sent",
            lambda invoice, actor: services.send(invoice, actor=actor),
        )

    def _confirmed(self, request, queryset, action, title, verb, call):
        """Ask first (issuing, paying and sending cannot be undone), then call `call` on each."""
        if not queryset.exists():
            self.message_user(request, f"None of the selected invoices can be {verb}.", messages.WARNING)
            return None
        form, page = self.confirm_action(request, queryset, ConfirmForm, title=title, action=action)
        if form is None:
            return page
        self._each(request, queryset, verb, call)
        return None

    def _each(self, request, queryset, verb, call):
        actor, done = self.scope(request), 0
        for invoice in queryset.select_related("account__peer__reseller", "issuer"):
            try:
                call(invoice, actor)
            except DomainError as exc:
                self.message_user(request, f"{invoice}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} invoice(s) {verb}.", messages.SUCCESS)
