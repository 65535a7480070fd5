"""The ledger in the admin, read only: entries by kind and occurrence date, and CSV exports
streamed in keyset chunks by apps.core.exports (an account's, or any selection of entries)."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from apps.billing.models import LedgerEntry
from apps.core.admin import (
    ReadOnlyModelAdmin,
    ScopedRelatedFilter,
)
from apps.core.exports import export_response, keyset_chunks

CSV_CHUNK = 1000
CSV_COLUMNS = ("date occurred", "kind", "amount", "reference", "description", "call id", "actor")


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


# Every export reads these columns (apps.core.exports makes the text spreadsheet-safe).
EXPORT_COLUMNS = (
    "occurred_at",
    "kind",
    "amount",
    "reference",
    "description",
    "cdr__call_id",
    "actor_label",
)


def ledger_csv(request, entries, *, filename: str, key: str, with_account: bool = False):
    """Stream `entries` as CSV, newest `key` first, one database chunk per piece sent.

    Read in keyset chunks and streamed (asynchronously under ASGI) by apps.core.exports;
    the time keeps its full precision, as statements and earlier exports wrote it.
    """
    columns = (*EXPORT_COLUMNS, *(["account__peer__name"] if with_account else []))

    def rows(chunks):
        for chunk in chunks:
            yield [(timezone.localtime(occurred).isoformat(), *rest) for occurred, *rest in chunk]

    return export_response(
        request,
        "csv",
        filename=filename.removesuffix(".csv"),
        header=[*CSV_COLUMNS, "account"] if with_account else CSV_COLUMNS,
        # CSV_CHUNK is read here, at each export, so that tests can make chunks small.
        chunks=rows(keyset_chunks(entries, key, columns, size=CSV_CHUNK)),
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
