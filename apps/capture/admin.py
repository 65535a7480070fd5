"""Capture settings in the admin: the operator's one row, invisible to resellers."""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.capture import services
from apps.capture.models import CaptureSettings
from apps.core.admin import CHANGE, VIEW, ScopedModelAdmin, form_changes


@admin.register(CaptureSettings)
class CaptureSettingsAdmin(ScopedModelAdmin):
    """One row: the list goes straight to it, and it is never added or deleted by hand."""

    operator_can = frozenset({VIEW, CHANGE})
    fields = ("sample_percent", "updated_at")
    readonly_fields = ("updated_at",)

    def get_queryset(self, request):
        # A plain manager (no tenant owns cluster settings): the operator's or nobody's.
        queryset = CaptureSettings.objects.all()
        return queryset if self.scope(request).is_operator else queryset.none()

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)  # the stock 403
        url = reverse(self._url_name("change"), args=[CaptureSettings.SINGLETON_ID])
        return HttpResponseRedirect(url)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if (
            obj is None
            and str(object_id) == str(CaptureSettings.SINGLETON_ID)
            and self.has_view_permission(request)
        ):
            # Not saved yet: show the defaults; the service creates the row on save.
            obj = CaptureSettings(pk=CaptureSettings.SINGLETON_ID)
        return obj

    def update_via_service(self, request, obj, form):
        services.update_capture_settings(actor=self.scope(request), changes=form_changes(form))
