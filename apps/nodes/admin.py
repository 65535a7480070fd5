"""Cluster nodes and the cluster-wide settings: the operator's, invisible to resellers."""

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.core.admin import (
    ADD,
    CHANGE,
    VIEW,
    ConfirmForm,
    ObjectTool,
    ScopedModelAdmin,
    form_changes,
    form_values,
)
from apps.nodes import services
from apps.nodes.models import ClusterSettings, Node


def rotate_secret(admin_, request, node, data):
    services.rotate_call_control_secret(node, actor=admin_.scope(request))
    return (
        f"{node} has a new call-control secret: put it into {node}'s OpenSIPS configuration; "
        "until then its call-control requests are refused."
    )


@admin.register(Node)
class NodeAdmin(ScopedModelAdmin):
    # Taking a node out is done by disabling it; there is no delete service.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    list_display = (
        "name",
        "sip_socket",
        "management_address",
        "public_hostname",
        "enabled",
        "alive",
        "last_heartbeat",
    )
    list_filter = ("enabled",)
    search_fields = ("name", "sip_address", "management_address", "public_hostname")
    fields = (
        "name",
        "management_address",
        "sip_address",
        "sip_port",
        "public_hostname",
        "enabled",
        "last_heartbeat",
    )
    object_tools = (
        ObjectTool(
            "rotate-secret",
            "Rotate call-control secret",
            ConfirmForm,
            rotate_secret,
            help="The node's OpenSIPS sends this secret with every call-control request. After "
            "rotating, its calls are refused until its configuration has the new secret.",
        ),
    )

    def get_fields(self, request, obj=None):
        # The secret is made with the node; the operator copies it into OpenSIPS's config.
        return self.fields if obj is None else (*self.fields, "call_control_secret")

    def get_readonly_fields(self, request, obj=None):
        # The name names the node's task queue and its config files: it is set once.
        if obj is None:
            return ("last_heartbeat",)
        return ("name", "last_heartbeat", "call_control_secret")

    @admin.display(description="SIP address")
    def sip_socket(self, node):
        return f"{node.sip_address}:{node.sip_port}"

    def get_queryset(self, request):
        alive = Node.objects.alive().filter(pk=OuterRef("pk"))
        return super().get_queryset(request).annotate(is_alive=Exists(alive))

    @admin.display(description="alive", boolean=True, ordering="last_heartbeat")
    def alive(self, node):
        return node.is_alive

    def create_via_service(self, request, form):
        return services.create_node(actor=self.scope(request), **form_values(form))

    def update_via_service(self, request, obj, form):
        services.update_node(obj, actor=self.scope(request), changes=form_changes(form))


@admin.register(ClusterSettings)
class ClusterSettingsAdmin(ScopedModelAdmin):
    """One row: the list goes straight to it, and it is never added or deleted by hand."""

    operator_can = frozenset({VIEW, CHANGE})
    fieldsets = (
        (
            "Origination",
            {"fields": ("origination_mode", "shared_ip", "bind_address", "redirect_to_assigned_node")},
        ),
        ("Routing", {"fields": ("default_routing_plan", "quality_window")}),
        ("Call limits", {"fields": ("max_call_duration", "reservation_grace")}),
        (None, {"fields": ("updated_at",)}),
    )
    readonly_fields = ("updated_at",)

    def get_queryset(self, request):
        # A plain manager (no tenant owns cluster settings): the operator's or nobody's.
        queryset = ClusterSettings.objects.all()
        return queryset if self.scope(request).is_operator else queryset.none()

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)  # the stock 403
        url = reverse(self._url_name("change"), args=[ClusterSettings.SINGLETON_ID])
        return HttpResponseRedirect(url)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if (
            obj is None
            and str(object_id) == str(ClusterSettings.SINGLETON_ID)
            and self.has_view_permission(request)
        ):
            # Not saved yet: show the defaults; the service creates the row on save.
            obj = ClusterSettings(pk=ClusterSettings.SINGLETON_ID)
        return obj

    def update_via_service(self, request, obj, form):
        services.update_cluster_settings(actor=self.scope(request), changes=form_changes(form))
