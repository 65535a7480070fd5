"""Call records in the admin: read-only, scoped to the customer's owner, cheap on big tables."""

from django.contrib import admin

from apps.cdr.models import Cdr
from apps.core.admin import ReadOnlyModelAdmin, ScopedRelatedFilter


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
class CdrAdmin(ReadOnlyModelAdmin):
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
        ("rating_state", "rating_error", "rated_at"),
    )
    readonly_fields = ("margin",)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, cdr):
        seconds = -(-cdr.duration_ms // 1000)
        return f"{seconds // 60}:{seconds % 60:02d}"

    @admin.display(description="SIP", ordering="sip_code")
    def sip_status(self, cdr):
        return f"{cdr.sip_code} {cdr.sip_reason}".strip()

    @admin.display(description="margin")
    def margin(self, cdr):
        return cdr.margin
