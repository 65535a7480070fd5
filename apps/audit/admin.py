"""The audit trail in the admin: read-only, a reseller reads its own."""

import json

from django.apps import apps
from django.contrib import admin
from django.utils.html import format_html

from apps.audit.models import AuditEntry
from apps.core.admin import ReadOnlyModelAdmin, ScopedRelatedFilter


class ObjectTypeFilter(admin.SimpleListFilter):
    """Choices from the installed models, not from SELECT DISTINCT over the whole trail."""

    title = "object type"
    parameter_name = "object_type"

    def lookups(self, request, model_admin):
        return sorted(
            (model._meta.label_lower, model._meta.verbose_name.capitalize())
            for model in apps.get_models()
            if model._meta.app_label in {"tenancy", "nodes", "peers", "rates", "billing", "cdr"}
        )

    def queryset(self, request, queryset):
        return queryset.filter(object_type=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyModelAdmin):
    operator_only_fields = ("reseller",)
    list_display = ("created_at", "actor_label", "action", "object_type", "object_repr", "reseller")
    list_select_related = ("reseller",)
    list_filter = (ObjectTypeFilter, ("reseller", ScopedRelatedFilter))
    search_fields = ("action", "actor_label", "object_repr", "=object_id")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "reseller",
        "details",
    )
    readonly_fields = ("details",)

    @admin.display(description="data")
    def details(self, entry):
        return format_html("<pre>{}</pre>", json.dumps(entry.data, indent=2, sort_keys=True, default=str))
