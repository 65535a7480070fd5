"""Recordings, captures and their copies: the operator's only, for now.

Resellers and customers see none of these pages (the querysets give them nothing); a
customer's own recordings will reach the portal through their CDRs.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from apps.core.admin import ADD, CHANGE, NOTHING, VIEW, ReadOnlyModelAdmin, ScopedModelAdmin
from apps.core.errors import DomainError
from apps.files import services
from apps.files.models import FileCopy, NodeStorage, StoredFile
from apps.tenancy.scope import Scope


class CopyInline(admin.TabularInline):
    model = FileCopy
    extra = 0
    can_delete = False
    fields = ("node", "state", "attempts", "last_error", "next_attempt_at", "verified_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return Scope.of_user(request.user).is_operator


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=200, initial="deleted by the operator")


@admin.register(StoredFile)
class StoredFileAdmin(ReadOnlyModelAdmin):
    reseller_can = NOTHING
    list_display = ("relative_path", "kind", "origin", "size", "call_id", "created_at", "deleted_at")
    list_filter = ("kind", "origin", ("deleted_at", admin.EmptyFieldListFilter))
    list_select_related = ("origin",)
    search_fields = ("=call_id", "^relative_path")
    date_hierarchy = "created_at"
    inlines = (CopyInline,)
    actions = ("delete_everywhere",)
    readonly_fields = (
        "kind",
        "origin",
        "relative_path",
        "size",
        "sha256",
        "call_id",
        "created_at",
        "deleted_at",
        "deleted_reason",
    )

    def has_purge_permission(self, request):
        return self.scope(request).is_operator

    @admin.action(description="Delete selected files on every node", permissions=["purge"])
    def delete_everywhere(self, request, queryset):
        form, page = self.confirm_action(
            request, queryset, ReasonForm, title="Delete files on every node", action="delete_everywhere"
        )
        if form is None:
            return page
        actor, done = self.scope(request), 0
        for stored in queryset:
            try:
                services.delete_file(stored, actor=actor, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                self.message_user(request, f"{stored}: {exc.message}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"{done} file(s) queued for deletion on every node.", messages.SUCCESS)
        return None


@admin.register(FileCopy)
class FileCopyAdmin(ReadOnlyModelAdmin):
    reseller_can = NOTHING
    list_display = ("file", "node", "state", "attempts", "next_attempt_at", "verified_at", "short_error")
    list_filter = ("state", "node")
    list_select_related = ("file", "node")
    search_fields = ("^file__relative_path",)
    actions = ("retry_now",)

    @admin.display(description="last error")
    def short_error(self, copy):
        return copy.last_error[:120]

    def has_retry_permission(self, request):
        return self.scope(request).is_operator

    @admin.action(description="Send selected copies again now", permissions=["retry"])
    def retry_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        queued = services.resend_copies(ids, actor=self.scope(request))
        self.message_user(
            request,
            f"{queued} cop{'y' if queued == 1 else 'ies'} queued on their origin nodes; "
            "copies already where they should be were left alone.",
            messages.SUCCESS,
        )

    def get_urls(self):
        backlog = path("backlog/", self.admin_site.admin_view(self.backlog_view), name="files_backlog")
        return [backlog, *super().get_urls()]

    def backlog_view(self, request):
        if not self.scope(request).is_operator:
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "File sync backlog per node",
            "subtitle": None,
            "opts": self.opts,
            "backlog": sorted(services.backlog_by_node().items()),
        }
        return TemplateResponse(request, "admin/files/backlog.html", context)

    def lookup_allowed(self, lookup, value, request=None):
        # The backlog page links here by node name.
        return lookup == "node__name" or super().lookup_allowed(lookup, value, request)


@admin.register(NodeStorage)
class NodeStorageAdmin(ScopedModelAdmin):
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = NOTHING
    list_display = ("node", "sync_target", "updated_at")
    list_select_related = ("node",)
    fields = ("node", "sync_target")

    def get_readonly_fields(self, request, obj=None):
        return ("node",) if obj is not None else ()

    def create_via_service(self, request, form):
        data = form.cleaned_data
        return services.set_node_storage(
            data["node"], actor=self.scope(request), sync_target=data["sync_target"]
        )

    def update_via_service(self, request, obj, form):
        services.set_node_storage(
            obj.node, actor=self.scope(request), sync_target=form.cleaned_data["sync_target"]
        )
