"""Accounts in the admin: money and live calls, the account's ledger, payments, refunds and
adjustments posted through the billing services."""

from copy import copy
from dataclasses import replace

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.billing import services
from apps.billing.admin.ledger import LedgerFilterForm, ledger_csv
from apps.billing.forms import AdjustmentForm, PaymentForm
from apps.billing.models import Account, LedgerEntry, Reservation
from apps.billing.services.ledger import STORABLE, ledger_total
from apps.billing.spending import spent
from apps.core.admin import (
    CHANGE,
    VIEW,
    ObjectTool,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
)
from apps.core.formatting import format_total
from apps.core.money import (
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_CREDIT_LIMIT,
    MONEY_DIGITS,
    MONEY_PLACES,
    amount_in_range,
)

RECENT_ENTRIES = 10
LEDGER_PAGE = 50
LIVE_CALLS_SHOWN = 100


# --- object tools: payments, refunds, adjustments -----------------------------------------


class RefundForm(PaymentForm):
    """Money paid back to the customer: posted by services.post_refund as a debit."""

    amount = forms.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        max_value=MAX_AMOUNT,
        min_value=-MAX_AMOUNT,
        help_text="The money paid back, as a positive number, at most what was paid and not "
        "refunded yet; it is debited from the account.",
    )
    reference = forms.CharField(
        max_length=100,
        required=False,
        help_text="The bank's or gateway's refund id; posting it twice debits once.",
    )


class OperatorRefundForm(RefundForm):
    """The operator's refund form: it may go past what was paid (a goodwill credit paid out)."""

    allow_over_refund = forms.BooleanField(
        required=False, label="Refund more than was paid", help_text="Operator only."
    )


class OperatorAdjustmentForm(AdjustmentForm):
    """The operator's adjustment may also bring a balance already out of range back into it."""

    amount = forms.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        max_value=STORABLE,
        min_value=-STORABLE,
        help_text="Positive credits the account, negative debits it; within +-1,000,000,000, except "
        "to bring a balance out of range back into it.",
    )


OPERATOR_FORMS = {"refund": OperatorRefundForm, "adjust": OperatorAdjustmentForm}
# What each amount of an account may be (apps.core.money); past it, it is flagged.
LIMITS = {
    "balance": MAX_BALANCE,
    "credit_limit": MAX_CREDIT_LIMIT,
    "low_balance_threshold": MAX_AMOUNT,
    "reserved": MAX_BALANCE,
    "available": MAX_BALANCE + MAX_CREDIT_LIMIT,
}


def _against(amount, limit, currency: str) -> str:
    """Spending, and the limit it counts against if there is one: "0.70 USD of 1.00 USD"."""
    spent_ = format_total(amount, currency)
    return f"{spent_} of {format_total(limit, currency)}" if limit is not None else f"{spent_} (no limit)"


def out_of_range(account) -> list[str]:
    """Names of the account's amounts past the product's bounds (written around the services)."""
    return [name for name, limit in LIMITS.items() if not amount_in_range(getattr(account, name), limit)]


def posting(service, what: str):
    """An object tool's run: post the form's data (named as `service` takes it) on the account."""

    def run(admin_, request, account, data):
        entry, created = service(account, actor=admin_.scope(request), **data)
        return _posted(admin_, request, account, entry, created, what)

    return run


def _posted(admin_, request, account, entry, created, what):
    account.refresh_from_db(fields=["balance"])
    if not created:
        admin_.message_user(
            request,
            f"Reference {entry.reference!r} was already posted on {entry.created_at:%Y-%m-%d %H:%M}; "
            "nothing was posted again and the balance is still "
            f"{format_total(account.balance, account.currency)}.",
            messages.WARNING,
        )
        return None
    return (
        f"{what} of {format_total(entry.amount, account.currency)} posted; "
        f"the balance is now {format_total(account.balance, account.currency)}."
    )


# --- accounts --------------------------------------------------------------------------------

SETTINGS = (
    "peer",
    "currency",
    "mode",
    "credit_limit",
    "low_balance_threshold",
    "notification_email",
    "daily_spend_limit",
    "monthly_spend_limit",
)
INVOICING = ("invoice_period", "tax_rate", "invoice_language", "invoices_link")
# Shown as totals in the account's currency's minor units (apps.core.formatting); the form's
# editable amounts stay plain numbers to type.
MONEY = ("balance_total", "reserved_total", "available", "spent_today", "spent_this_month", "range_check")


@admin.register(Account)
class AccountAdmin(ScopedModelAdmin):
    # Accounts are opened with their peer (create_peer) and never deleted.
    operator_can = frozenset({VIEW, CHANGE})
    reseller_can = frozenset({VIEW, CHANGE})
    operator_only_fields = ("owner", "peer__reseller")
    change_form_template = "admin/billing/account/change_form.html"
    list_display = (
        "peer",
        "owner",
        "mode",
        "balance_total",
        "reserved_total",
        "available",
        "credit_limit_total",
        "currency",
        "threshold_total",
        "range_check",
        "money_links",
    )
    list_select_related = ("peer", "peer__reseller")
    list_filter = ("mode", "currency", ("peer__reseller", ScopedRelatedFilter))
    search_fields = ("peer__name", "peer__company")
    fieldsets = (
        (None, {"fields": SETTINGS}),
        ("Invoices", {"fields": INVOICING}),
        ("Money", {"fields": MONEY}),
    )
    object_tools = (
        ObjectTool(
            "payment",
            "Add payment",
            PaymentForm,
            posting(services.post_payment, "Payment"),
            help="Credits the account with a payment received.",
        ),
        ObjectTool(
            "refund",
            "Refund",
            RefundForm,
            posting(services.post_refund, "Refund"),
            help="Debits the account with money paid back to the customer.",
        ),
        ObjectTool(
            "adjust",
            "Adjust balance",
            AdjustmentForm,
            posting(services.post_adjustment, "Adjustment"),
            help="Corrects the balance with a ledger entry; the reason is kept.",
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        # Editable is what services.update_account lets callers change; the rest is shown.
        editable = services.ACCOUNT_SETTINGS
        return [*(name for name in (*SETTINGS, *INVOICING) if name not in editable), *MONEY]

    @admin.display(description="invoices")
    def invoices_link(self, account):
        url = reverse("admin:invoicing_invoice_changelist") + f"?account__id__exact={account.pk}"
        return format_html('<a href="{}">Invoices of this account</a>', url)

    @admin.display(description="owner", ordering="peer__reseller__name")
    def owner(self, account):
        return account.peer.reseller or "operator"

    @admin.display(description="balance", ordering="balance")
    def balance_total(self, account):
        return format_total(account.balance, account.currency)

    @admin.display(description="reserved", ordering="reserved")
    def reserved_total(self, account):
        return format_total(account.reserved, account.currency)

    @admin.display(description="available")
    def available(self, account):
        return format_total(account.available, account.currency)

    @admin.display(description="credit limit", ordering="credit_limit")
    def credit_limit_total(self, account):
        return format_total(account.credit_limit, account.currency)

    @admin.display(description="low balance threshold", ordering="low_balance_threshold")
    def threshold_total(self, account):
        return format_total(account.low_balance_threshold, account.currency)

    @admin.display(description="spent today")
    def spent_today(self, account):
        return _against(spent(account).today, account.daily_spend_limit, account.currency)

    @admin.display(description="spent this month")
    def spent_this_month(self, account):
        return _against(spent(account).this_month, account.monthly_spend_limit, account.currency)

    @admin.display(description="range")
    def range_check(self, account):
        names = out_of_range(account)
        if not names:
            return "—"
        return format_html(
            '<strong class="errornote">{} out of range</strong>: fix with an operator\'s adjustment',
            ", ".join(name.replace("_", " ") for name in names),
        )

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The service's bounds, on the form's fields: a number past them is refused at once.
        limits = {
            "credit_limit": (0, MAX_CREDIT_LIMIT),
            "low_balance_threshold": (-MAX_AMOUNT, MAX_AMOUNT),
            "daily_spend_limit": (0, MAX_BALANCE),
            "monthly_spend_limit": (0, MAX_BALANCE),
        }
        if db_field.name in limits:
            kwargs["min_value"], kwargs["max_value"] = limits[db_field.name]
        if db_field.name == "invoice_language":
            return forms.ChoiceField(
                choices=[("", "The issuer's language"), *settings.LANGUAGES],
                required=False,
                help_text=db_field.help_text,
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def tool_view(self, request, object_id, tool_name):
        # The operator's refund and adjustment forms have more to them; a reseller's have not.
        if tool_name in OPERATOR_FORMS and self.scope(request).is_operator:
            operators = copy(self)
            operators.object_tools = tuple(
                replace(tool, form=OPERATOR_FORMS[tool.name]) if tool.name in OPERATOR_FORMS else tool
                for tool in self.object_tools
            )
            return super(AccountAdmin, operators).tool_view(request, object_id, tool_name)
        return super().tool_view(request, object_id, tool_name)

    @admin.display(description="")
    def money_links(self, account):
        return format_html(
            '<a href="{}">Add payment</a> · <a href="{}">Refund</a> · <a href="{}">Adjust</a> · '
            '<a href="{}">Ledger</a>',
            reverse(self._url_name("tool"), args=[account.pk, "payment"]),
            reverse(self._url_name("tool"), args=[account.pk, "refund"]),
            reverse(self._url_name("tool"), args=[account.pk, "adjust"]),
            reverse(self._url_name("ledger"), args=[account.pk]),
        )

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_account(obj, actor=self.scope(request), changes=changes)

    # -- the account page: live calls and the latest entries under the form --

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            context.update(self.money_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def money_context(self, request, account) -> dict:
        scope = self.scope(request)
        live = (
            Reservation.objects.visible_to(scope)
            .active()
            .filter(account=account)
            .select_related("node")
            .order_by("created_at", "pk")
        )
        calls = list(live[: LIVE_CALLS_SHOWN + 1])
        entries = (
            LedgerEntry.objects.visible_to(scope)
            .filter(account=account)
            .annotate(call_id=F("cdr__call_id"))
            .order_by("-occurred_at", "-pk")
        )
        ledger_url = reverse(self._url_name("ledger"), args=[account.pk])
        return {
            "live_calls": calls[:LIVE_CALLS_SHOWN],
            "more_live_calls": len(calls) > LIVE_CALLS_SHOWN,
            "show_nodes": scope.is_operator,
            "recent_entries": entries[:RECENT_ENTRIES],
            "ledger_url": ledger_url,
            "ledger_csv_url": reverse(self._url_name("ledger_csv"), args=[account.pk]),
        }

    # -- the account's whole ledger: filtered, paginated, exported --

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/ledger/",
                self.admin_site.admin_view(self.ledger_view),
                name=f"{name}_ledger",
            ),
            path(
                "<path:object_id>/ledger/csv/",
                self.admin_site.admin_view(self.ledger_csv_view),
                name=f"{name}_ledger_csv",
            ),
            *super().get_urls(),
        ]

    def _visible_account(self, request, object_id) -> Account:
        if not self.has_view_permission(request):
            raise PermissionDenied
        account = self.get_object(request, unquote(object_id))
        if account is None:
            raise Http404  # someone else's account reads as absent, never as forbidden
        return account

    def _ledger(self, request, account, form):
        entries = LedgerEntry.objects.visible_to(self.scope(request)).filter(account=account)
        return form.apply(entries)

    def ledger_view(self, request, object_id):
        account = self._visible_account(request, object_id)
        form = LedgerFilterForm(request.GET or None)
        entries = self._ledger(request, account, form).annotate(call_id=F("cdr__call_id"))
        page = Paginator(entries.order_by("-occurred_at", "-pk"), LEDGER_PAGE).get_page(request.GET.get("p"))
        query = request.GET.copy()
        query.pop("p", None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Ledger of {account}",
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "account": account,
            "form": form,
            "page": page,
            "total": ledger_total(entries),
            "query": query.urlencode(),
            "change_url": reverse(self._url_name("change"), args=[account.pk]),
            "csv_url": reverse(self._url_name("ledger_csv"), args=[account.pk]),
        }
        return TemplateResponse(request, "admin/billing/account/ledger.html", context)

    def ledger_csv_view(self, request, object_id):
        account = self._visible_account(request, object_id)
        form = LedgerFilterForm(request.GET or None)
        if form.is_bound and not form.is_valid():
            # The ledger page says what is wrong with the filters.
            ledger_url = reverse(self._url_name("ledger"), args=[account.pk])
            return HttpResponseRedirect(f"{ledger_url}?{request.GET.urlencode()}")
        return ledger_csv(
            request,
            self._ledger(request, account, form),
            filename=f"ledger-{account.pk}-{timezone.localdate():%Y%m%d}.csv",
            key="occurred_at",
        )
