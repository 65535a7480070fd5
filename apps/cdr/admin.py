"""Call records in the admin: read-only, scoped to the customer's owner, cheap on big tables.

A CDR's page also plays and offers its recordings, and links to its capture (pcap, SIP
ladder); whoever may see the CDR may hear it, nobody else. The list as filtered exports as
CSV or XLSX, streamed in keyset chunks by apps.core.exports, with the columns the login may
see (reseller staff never get the supplier leg).
"""

import operator
from functools import reduce

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from apps.billing.services import rating
from apps.cdr.models import Cdr, RatingError
from apps.core.admin import VIEW, ReadOnlyModelAdmin, ScopedRelatedFilter
from apps.core.exports import FORMATS, export_response, keyset_chunks
from apps.files.models import StoredFile
from apps.media import recordings

# What apps.billing.services.rating writes when it cannot price a call, by kind: label, how the
# text reads, and whether it is about the supplier leg, which names the operator's
# supplier and its price list: resellers never see that.
ERROR_KINDS = {
    "customer": ("Unknown customer", "startswith", "Unknown customer", False),
    "account": ("Customer has no account", "contains", " has no account", False),
    "sell_table": ("No sell price list", "contains", " has no sell price list", False),
    "sell_rate": ("No sell rate", "startswith", "No sell rate", False),
    "supplier": ("Unknown supplier", "startswith", "Unknown supplier", True),
    "buy_table": ("No buy price list", "contains", " has no buy price list", True),
    "buy_rate": ("No buy rate", "startswith", "No buy rate", True),
}
# (header, column) of the export: everyone's, then the operator's supplier leg.
EXPORT_COLUMNS = (
    ("start", "created_at"),
    ("customer", "customer__name"),
    ("caller", "caller"),
    ("callee", "callee"),
    ("destination", "destination"),
    ("duration ms", "duration_ms"),
    ("billed seconds", "billable_seconds"),
    ("sip code", "sip_code"),
    ("sip reason", "sip_reason"),
    ("sell cost", "sell_cost"),
    ("rating", "rating_state"),
    ("call id", "call_id"),
)
OPERATOR_EXPORT_COLUMNS = (
    ("supplier", "supplier__name"),
    ("number sent", "callee_out"),
    ("supplier billed seconds", "supplier_billable_seconds"),
    ("buy cost", "buy_cost"),
    ("node", "node__name"),
    ("rating error", "rating_error"),
)
SUPPLIER_KINDS = tuple(kind for kind, (*_, supplier) in ERROR_KINDS.items() if supplier)
CUSTOMER_KINDS = tuple(kind for kind in ERROR_KINDS if kind not in SUPPLIER_KINDS)
HIDDEN_REASON = "The call cannot be priced on the operator's side yet; the operator is told."


def error_kind_q(*kinds: str) -> Q:
    """Rating errors of any of these kinds."""
    return reduce(
        operator.or_,
        (Q(**{f"rating_error__{ERROR_KINDS[kind][1]}": ERROR_KINDS[kind][2]}) for kind in kinds),
    )


def is_kind(error: str, kind: str) -> bool:
    _label, lookup, text, _supplier = ERROR_KINDS[kind]
    return error.startswith(text) if lookup == "startswith" else text in error


def tenant_reason(error: str) -> str:
    """`error` as resellers may read it: customer-side reasons only, never the supplier leg."""
    if not error or any(is_kind(error, kind) for kind in CUSTOMER_KINDS):
        return error
    return HIDDEN_REASON


class ErrorKindFilter(admin.SimpleListFilter):
    """Rating errors by what is missing; resellers get the supplier-side kinds as one."""

    title = "error"
    parameter_name = "error_kind"

    def lookups(self, request, model_admin):
        if model_admin.scope(request).is_operator:
            return [*((kind, label) for kind, (label, *_) in ERROR_KINDS.items()), ("other", "Other")]
        return [
            *((kind, ERROR_KINDS[kind][0]) for kind in CUSTOMER_KINDS),
            ("supplier_side", "On the operator's side"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value not in {key for key, _ in self.lookup_choices}:
            return queryset
        if value == "supplier_side":
            # As resellers see it: everything that is not a customer-side reason.
            return queryset.exclude(error_kind_q(*CUSTOMER_KINDS))
        if value == "other":
            return queryset.exclude(error_kind_q(*ERROR_KINDS))
        return queryset.filter(error_kind_q(value))


class TenantRatingReason:
    """The rating error shown raw to the operator, and without the supplier leg to resellers.

    `rating_error` is operator-only (hidden, and not a lookup resellers may filter on);
    resellers get the `rating_reason` column in its place.
    """

    def get_list_display(self, request):
        return self._for(request, super().get_list_display(request))

    def get_fieldsets(self, request, obj=None):
        return [
            (name, {**options, "fields": self._for(request, options["fields"])})
            for name, options in super().get_fieldsets(request, obj)
        ]

    def _for(self, request, names):
        operator = self.scope(request).is_operator
        kept = []
        for entry in names:
            if isinstance(entry, list | tuple):
                entry = tuple(name for name in entry if not (operator and name == "rating_reason"))
                if entry:
                    kept.append(entry)
            elif not (operator and entry == "rating_reason"):
                kept.append(entry)
        return kept

    # Not sortable: sorting by the hidden text would hint at what it says.
    @admin.display(description="rating error")
    def rating_reason(self, cdr):
        return tenant_reason(cdr.rating_error)


class SipClassFilter(admin.SimpleListFilter):
    title = "SIP code"
    parameter_name = "sip_class"

    def lookups(self, request, model_admin):
        return [(str(n), f"{n}xx") for n in range(1, 7)]

    def queryset(self, request, queryset):
        if self.value() in {str(n) for n in range(1, 7)}:
            low = int(self.value()) * 100
            return queryset.filter(sip_code__gte=low, sip_code__lt=low + 100)
        return queryset


@admin.register(Cdr)
class CdrAdmin(TenantRatingReason, ReadOnlyModelAdmin):
    # Reseller staff see their customers' calls but not the operator's supplier leg: who
    # terminated the call, through which gateway and node, and at what cost.
    operator_only_fields = (
        "supplier",
        "gateway",
        "node",
        "callee_out",
        "supplier_billable_seconds",
        "buy_cost",
        "margin",
        "rating_error",
    )
    list_display = (
        "created_at",
        "customer",
        "caller",
        "callee",
        "duration",
        "billable_seconds",
        "sip_status",
        "sell_cost",
        "supplier",
        "buy_cost",
        "margin",
        "rating_state",
        "node",
    )
    list_select_related = ("customer", "supplier", "node")
    list_filter = (
        "rating_state",
        SipClassFilter,
        ("customer", ScopedRelatedFilter.where(lambda peers: peers.customers())),
        ("supplier", ScopedRelatedFilter.where(lambda peers: peers.suppliers())),
        ("node", ScopedRelatedFilter),
    )
    search_fields = ("=call_id", "^caller", "^callee")
    date_hierarchy = "created_at"
    list_per_page = 100
    fields = (
        ("created_at", "answered_at", "ended_at"),
        "call_id",
        ("from_tag", "to_tag"),
        ("customer", "source_ip"),
        ("caller", "callee", "callee_out"),
        ("sip_code", "sip_reason"),
        ("duration_ms", "billable_seconds", "supplier_billable_seconds"),
        ("supplier", "gateway", "node"),
        ("sell_cost", "buy_cost", "margin"),
        ("rating_state", "rating_error", "rating_reason", "rated_at"),
    )
    readonly_fields = ("margin", "rating_reason")

    change_form_template = "admin/cdr/cdr/change_form.html"
    change_list_template = "admin/cdr/cdr/change_list.html"

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, cdr):
        seconds = -(-cdr.duration_ms // 1000)
        return f"{seconds // 60}:{seconds % 60:02d}"

    # -- the call's files --

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_recording"
        recording = path(
            "<path:object_id>/recordings/<int:file_id>/",
            self.admin_site.admin_view(self.recording_view),
            name=name,
        )
        export = path(
            "export/<str:fmt>/",
            self.admin_site.admin_view(self.export_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_export",
        )
        return [recording, export, *super().get_urls()]

    def export_view(self, request, fmt):
        """The list as it is filtered, searched and drilled down, as CSV or XLSX.

        The changelist's own queryset (get_queryset: visible_to the login), read in keyset
        chunks by created_at: a month of a million calls never sits in memory at once.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in FORMATS:
            raise Http404
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(f"{reverse(self._url_name('changelist'))}?e=1")
        columns = EXPORT_COLUMNS + (OPERATOR_EXPORT_COLUMNS if self.scope(request).is_operator else ())
        return export_response(
            request,
            fmt,
            filename=f"{self.opts.model_name}s-{timezone.localdate():%Y%m%d}",
            header=[header for header, _ in columns],
            chunks=keyset_chunks(changelist.queryset, "created_at", [column for _, column in columns]),
            title=str(self.opts.verbose_name_plural),
        )

    def recording_view(self, request, object_id, file_id):
        """Play (or, with ?download=1, download) a recording of a CDR this user may see."""
        cdr = self.get_object(request, unquote(object_id))
        if cdr is None:
            raise Http404  # someone else's call reads as absent
        if not self.has_view_permission(request, cdr):
            raise PermissionDenied
        stored = recordings.files_for_cdr(cdr).filter(kind=StoredFile.Kind.RECORDING, pk=file_id).first()
        if stored is None:
            raise Http404
        return recordings.serve_recording(request, stored, download=request.GET.get("download") == "1")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        cdr = self.get_object(request, unquote(object_id))
        if cdr is not None:
            extra_context = {**(extra_context or {}), **self.files_context(cdr)}
        return super().change_view(request, object_id, form_url, extra_context)

    def files_context(self, cdr) -> dict:
        """The recordings of `cdr` with their URLs, and the links to its capture pages."""
        files = list(recordings.files_for_cdr(cdr))
        name = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_recording"
        played = []
        for stored in recordings.with_presence(f for f in files if f.kind == StoredFile.Kind.RECORDING):
            stored.url = reverse(name, args=[cdr.pk, stored.pk])
            played.append(stored)
        captured = any(f.kind == StoredFile.Kind.CAPTURE for f in files)
        return {
            "recordings": played,
            "capture_links": recordings.capture_links(cdr, "admin") if captured else [],
            "files_panel": bool(files),
        }

    @admin.display(description="SIP", ordering="sip_code")
    def sip_status(self, cdr):
        return f"{cdr.sip_code} {cdr.sip_reason}".strip()

    @admin.display(description="margin")
    def margin(self, cdr):
        return cdr.margin


@admin.register(RatingError)
class RatingErrorAdmin(CdrAdmin):
    """Calls that could not be rated: fix the price list, then rate them again from here."""

    list_display = (
        "created_at",
        "customer",
        "supplier",
        "callee",
        "duration",
        "rating_error",
        "rating_reason",
    )
    list_filter = (
        ("customer", ScopedRelatedFilter.where(lambda peers: peers.customers())),
        ErrorKindFilter,
    )
    search_fields = ("=call_id", "^callee")
    actions = ("rate_again",)

    def has_rerate_permission(self, request):
        return self.allows(request, VIEW)

    @admin.action(description="Rate again", permissions=["rerate"])
    def rate_again(self, request, queryset):
        # The queryset is the admin's, scoped: only calls this user may see are put back.
        scope = self.scope(request)
        count = rating.requeue_errors(
            list(queryset.values_list("pk", flat=True)), queryset=RatingError.objects.visible_to(scope)
        )
        self.message_user(
            request,
            f"{count} call{'s' if count != 1 else ''} put back in the rating queue; "
            "the node's worker rates them within moments.",
        )
