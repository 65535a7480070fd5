"""Accounts, their ledger and re-rating in the admin: money is read here, moved only by services."""

import csv
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db.models import F, Q, Sum
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.billing import services
from apps.billing.forms import AdjustmentForm, PaymentForm
from apps.billing.models import Account, LedgerEntry, RerateLine, RerateRun, Reservation
from apps.billing.services import rerating
from apps.core.admin import (
    ADD,
    CHANGE,
    VIEW,
    ObjectTool,
    ReadOnlyModelAdmin,
    ScopedModelAdmin,
    ScopedModelForm,
    ScopedRelatedFilter,
    form_changes,
)
from apps.core.money import MONEY_DIGITS, MONEY_PLACES

RECENT_ENTRIES = 10
LEDGER_PAGE = 50
LIVE_CALLS_SHOWN = 100
CSV_CHUNK = 1000
CSV_COLUMNS = ("date occurred", "kind", "amount", "reference", "description", "call id", "actor")


# --- object tools: payments, refunds, adjustments -----------------------------------------


class RefundForm(PaymentForm):
    """Money paid back to the customer: posted by services.post_refund as a debit."""

    amount = forms.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        help_text="The money paid back, as a positive number; it is debited from the account.",
    )
    reference = forms.CharField(
        max_length=100,
        required=False,
        help_text="The bank's or gateway's refund id; posting it twice debits once.",
    )


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
            f"nothing was posted again and the balance is still {account.balance} {account.currency}.",
            messages.WARNING,
        )
        return None
    return f"{what} of {entry.amount} {account.currency} posted; the balance is now {account.balance}."


# --- the ledger: a date range, and CSV streamed in chunks ----------------------------------


def day_start(day: date) -> datetime:
    """Midnight at the start of `day` in the current time zone (statements are by local day)."""
    return timezone.make_aware(datetime.combine(day, time.min))


class LedgerFilterForm(forms.Form):
    """The account ledger page's filters; every field may be left empty."""

    kind = forms.ChoiceField(choices=[("", "All kinds"), *LedgerEntry.Kind.choices], required=False)
    occurred_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    occurred_to = forms.DateField(
        required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("occurred_from"), data.get("occurred_to")
        if start and end and end < start:
            self.add_error("occurred_to", "The range ends on or after the day it starts.")
        return data

    def apply(self, entries):
        """`entries` narrowed by the valid filters (all of them when the form is invalid)."""
        if not self.is_valid():
            return entries
        data = self.cleaned_data
        if data["kind"]:
            entries = entries.filter(kind=data["kind"])
        return between(entries, data["occurred_from"], data["occurred_to"])


def between(entries, start: date | None, end: date | None):
    """Entries that occurred from the start of day `start` to the end of day `end`."""
    if start:
        entries = entries.filter(occurred_at__gte=day_start(start))
    if end:
        entries = entries.filter(occurred_at__lt=day_start(end + timedelta(days=1)))
    return entries


class OccurredBetweenFilter(admin.ListFilter):
    """A from/to day range on when entries occurred, for the ledger changelist."""

    title = "occurred between"
    template = "admin/billing/ledgerentry/occurred_filter.html"
    parameters = ("occurred_from", "occurred_to")

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.values = {}
        for name in self.parameters:
            value = params.pop(name, None)
            value = value[-1] if isinstance(value, list) else value
            if value:
                try:
                    self.values[name] = date.fromisoformat(value)
                except ValueError as exc:
                    raise IncorrectLookupParameters(f"{name}: give a day as YYYY-MM-DD.") from exc

    def has_output(self):
        return True

    def expected_parameters(self):
        return list(self.parameters)

    def queryset(self, request, queryset):
        return between(queryset, self.values.get("occurred_from"), self.values.get("occurred_to"))

    def choices(self, changelist):
        # One "choice": the small GET form, carrying the list's other parameters along.
        kept = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name not in self.parameters
            for value in values
        ]
        yield {
            "selected": bool(self.values),
            "kept": kept,
            "values": {name: value.isoformat() for name, value in self.values.items()},
            "reset_url": changelist.get_query_string(remove=list(self.parameters)),
        }


def _spreadsheet_safe(value) -> str:
    # Text a client sent (a reference, a description) must not run as a formula when the
    # file is opened in a spreadsheet.
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# Every export reads these columns; the first three are the keys chunks are cut by.
EXPORT_COLUMNS = (
    "pk",
    "occurred_at",
    "created_at",
    "kind",
    "amount",
    "reference",
    "description",
    "cdr__call_id",
    "actor_label",
)


def _in_chunks(rows, key: str) -> Iterator[list[tuple]]:
    """Lists of `rows` (values_list of EXPORT_COLUMNS, ...), newest `key` first.

    Keyset pagination on (key, pk) rather than one long cursor: every chunk is a short
    indexed query, on MariaDB as on PostgreSQL, however large the ledger.
    """
    position = EXPORT_COLUMNS.index(key)
    rows = rows.order_by(f"-{key}", "-pk")
    after = None
    while True:
        page = rows
        if after is not None:
            moment, pk = after
            page = rows.filter(Q(**{f"{key}__lt": moment}) | Q(**{key: moment, "pk__lt": pk}))
        batch = list(page[:CSV_CHUNK])
        if not batch:
            return
        yield batch
        after = (batch[-1][position], batch[-1][0])


class _Echo:
    def write(self, value):
        return value


def ledger_csv(request, entries, *, filename: str, key: str, with_account: bool = False):
    """Stream `entries` as CSV, newest `key` first, one database chunk per piece sent."""
    rows = entries.values_list(*EXPORT_COLUMNS, *(["account__peer__name"] if with_account else []))
    writer = csv.writer(_Echo())

    def pieces() -> Iterator[str]:
        yield writer.writerow([*CSV_COLUMNS, "account"] if with_account else CSV_COLUMNS)
        for batch in _in_chunks(rows, key):
            yield "".join(
                writer.writerow(
                    [
                        timezone.localtime(occurred).isoformat(),
                        kind,
                        amount,
                        *(_spreadsheet_safe(text) for text in texts),
                    ]
                )
                for _pk, occurred, _created, kind, amount, *texts in batch
            )

    # Under ASGI (uvicorn, in production) Django buffers a synchronous iterator whole
    # before sending it: only an asynchronous one streams.
    content = _asynchronously(pieces()) if isinstance(request, ASGIRequest) else pieces()
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


async def _asynchronously(pieces: Iterator[str]):
    step = sync_to_async(next, thread_sensitive=True)
    while (piece := await step(pieces, None)) is not None:
        yield piece


# --- accounts --------------------------------------------------------------------------------

SETTINGS = ("peer", "currency", "mode", "credit_limit", "low_balance_threshold", "notification_email")
MONEY = ("balance", "reserved", "available")


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
        "balance",
        "reserved",
        "available",
        "credit_limit",
        "currency",
        "low_balance_threshold",
        "money_links",
    )
    list_select_related = ("peer", "peer__reseller")
    list_filter = ("mode", "currency", ("peer__reseller", ScopedRelatedFilter))
    search_fields = ("peer__name", "peer__company")
    fieldsets = ((None, {"fields": SETTINGS}), ("Money", {"fields": MONEY}))
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
        return [*(name for name in SETTINGS if name not in services.ACCOUNT_SETTINGS), *MONEY]

    @admin.display(description="owner", ordering="peer__reseller__name")
    def owner(self, account):
        return account.peer.reseller or "operator"

    @admin.display(description="available")
    def available(self, account):
        return account.available

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
            "total": entries.aggregate(total=Sum("amount"))["total"],
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


# --- the ledger ------------------------------------------------------------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyModelAdmin):
    """The ledger is the truth: entries are corrected by posting new ones, never edited."""

    operator_only_fields = ("account__peer__reseller",)
    change_list_template = "admin/billing/ledgerentry/change_list.html"
    list_display = (
        "occurred_at",
        "account",
        "kind",
        "amount",
        "reference",
        "description",
        "actor_label",
        "cdr_id",
    )
    list_select_related = ("account__peer",)
    list_filter = ("kind", OccurredBetweenFilter, ("account__peer__reseller", ScopedRelatedFilter))
    search_fields = ("=reference", "account__peer__name", "description")
    # Statements follow when things happened (a call's end), not when they were written.
    date_hierarchy = "occurred_at"
    actions = ("export_csv",)
    fields = (
        "account",
        "kind",
        "amount",
        "reference",
        "cdr",
        "description",
        "actor_label",
        "occurred_at",
        "created_at",
    )

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request):
        """The changelist as it is filtered, searched and drilled down, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(f"{reverse(self._url_name('changelist'))}?e=1")
        return self._csv(request, changelist.queryset)

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return self._csv(request, queryset)

    def _csv(self, request, entries):
        # The queryset comes from get_queryset: visible_to(scope) is already applied.
        return ledger_csv(
            request,
            entries,
            filename=f"ledger-{timezone.localdate():%Y%m%d}.csv",
            key="created_at",
            with_account=True,
        )


# --- re-rating -------------------------------------------------------------------------------


class RerateRunForm(ScopedModelForm):
    class Meta:
        model = RerateRun
        fields = ("period_start", "period_end", "peer", "table")
        help_texts = {
            "period_start": "Calls set up at or after this moment.",
            "period_end": "Calls set up before this moment.",
            "peer": "Only this peer's calls, on its side; empty: every peer you manage.",
            "table": "Only calls priced by this price list; empty: every price list.",
        }


@admin.register(RerateRun)
class RerateRunAdmin(ScopedModelAdmin):
    """Runs are requested here and run by a worker; what they changed is shown, never edited."""

    operator_can = frozenset({VIEW, ADD})
    reseller_can = frozenset({VIEW, ADD})
    operator_only_fields = ("reseller",)
    add_form = RerateRunForm
    change_form_template = "admin/billing/reraterun/change_form.html"
    list_display = (
        "created_at",
        "period",
        "peer",
        "table",
        "reseller",
        "state",
        "examined",
        "changed",
        "actor_label",
    )
    list_select_related = ("peer", "table", "reseller")
    list_filter = ("state", ("reseller", ScopedRelatedFilter))
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        ("period_start", "period_end"),
        ("peer", "table"),
        "reseller",
        ("state", "examined", "changed"),
        "error",
        ("actor_label", "created_at", "started_at", "finished_at"),
    )

    def get_fields(self, request, obj=None):
        return list(RerateRunForm.Meta.fields) if obj is None else super().get_fields(request, obj)

    @admin.display(description="period", ordering="period_start")
    def period(self, run):
        return f"{run.period_start:%Y-%m-%d %H:%M} → {run.period_end:%Y-%m-%d %H:%M}"

    def create_via_service(self, request, form):
        data = form.cleaned_data
        return rerating.request_rerate(
            actor=self.scope(request),
            period_start=data["period_start"],
            period_end=data["period_end"],
            peer=data.get("peer"),
            table=data.get("table"),
        )

    def response_add(self, request, obj, post_url_continue=None):
        if "_addanother" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request, f"{obj} is queued; a worker re-prices the calls and posts the differences."
        )
        return HttpResponseRedirect(reverse(self._url_name("change"), args=[obj.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            # The run's lines on accounts the user may see: a run is its owner's, but the
            # lines are filtered again rather than trusted to follow.
            lines = (
                RerateLine.objects.filter(
                    run=obj, account__in=Account.objects.visible_to(self.scope(request)).values("pk")
                )
                .select_related("account__peer")
                .order_by("account__peer__name", "pk")
            )
            lines = list(lines)
            currencies = {line.account.currency for line in lines}
            # Sums only make sense in one currency; an operator's run may span several.
            if len(currencies) == 1:
                before, after = sum(line.before for line in lines), sum(line.after for line in lines)
                context["totals"] = {
                    "calls": sum(line.calls for line in lines),
                    "before": before,
                    "after": after,
                    "difference": after - before,
                    "currency": currencies.pop(),
                }
            context["lines"] = lines
        return super().render_change_form(request, context, add, change, form_url, obj)


from apps.billing import fee_admin  # noqa: E402, F401
