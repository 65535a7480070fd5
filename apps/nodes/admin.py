"""Cluster nodes and the cluster-wide settings: the operator's, invisible to resellers."""

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Prefetch
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from apps.audit import services as audit
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
from apps.core.services import ensure_manages
from apps.nodes import services, sync
from apps.nodes.models import ClusterSettings, EngineSync, Node
from apps.nodes.status import engine_status
from apps.tenancy.scope import Scope
from engines import EngineError
from engines.freeswitch import CallEnd, ESLClient, SwitchState, read_switch
from engines.opensips import DialogEnd

# Each question the node page asks FreeSWITCH gets at most this long; the first unanswered
# stops the rest, so a dead FreeSWITCH costs the page one timeout.
FREESWITCH_PAGE_TIMEOUT = 1.0


def rotate_secret(admin_, request, node, data):
    services.rotate_call_control_secret(node, actor=admin_.scope(request))
    return (
        f"{node} has a new call-control secret: put it into {node}'s OpenSIPS configuration; "
        "until then its call-control requests are refused."
    )


def reload_opensips(admin_, request, node, data):
    outcome = sync.reload_now(node, actor=admin_.scope(request))
    if outcome.error:
        # Recorded on the node's sync state with its next retry; the page shows both.
        admin_.message_user(
            request, f"OpenSIPS on {node} did not reload: {outcome.error}. It is retried.", messages.ERROR
        )
        return None
    return f"OpenSIPS on {node} reloaded {', '.join(outcome.reloaded)}."


def esl_client_for(node: Node, *, timeout: float | None = None) -> ESLClient:
    """The ESL client of `node`'s FreeSWITCH: its management address, ESL port and password."""
    return ESLClient(
        node.management_address,
        node.esl_port,
        node.esl_password,
        timeout=timeout or getattr(settings, "FREESWITCH_ESL_TIMEOUT", 2.0),
    )


def freeswitch_status(node: Node) -> SwitchState:
    """What `node`'s FreeSWITCH says now: status, channels with their recordings, SIP profiles."""
    return read_switch(esl_client_for(node, timeout=FREESWITCH_PAGE_TIMEOUT))


def hang_up_channel(node: Node, uuid: str, *, actor: Scope) -> CallEnd:
    """Hang up channel `uuid` on `node`'s FreeSWITCH (uuid_kill; operator only), and audit it.

    FreeSWITCH hangs up the channel and, through hangup_after_bridge, its other leg: both
    sides get a BYE and OpenSIPS writes the CDR as for any hangup.
    """
    ensure_manages(actor, None)
    outcome = esl_client_for(node).hang_up(uuid)
    # Audited once FreeSWITCH answered: an unreachable engine ended nothing.
    audit.record(actor, "call.hung_up", node, uuid=uuid, engine="freeswitch", result=str(outcome))
    return outcome


def sync_row(node) -> EngineSync | None:
    """The node's OpenSIPS sync row, from the prefetch when there is one."""
    rows = [row for row in node.engine_syncs.all() if row.engine == EngineSync.Engine.OPENSIPS]
    return rows[0] if rows else None


def sync_summary(row: EngineSync | None) -> str:
    return "never changed" if row is None else row.summary()


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
        "engine_sync",
    )
    list_filter = ("enabled",)
    change_form_template = "admin/nodes/node/change_form.html"
    search_fields = ("name", "sip_address", "management_address", "public_hostname")
    fields = (
        "name",
        "management_address",
        "sip_address",
        "sip_port",
        "public_hostname",
        "enabled",
        "media_enabled",
        "media_port",
        "esl_port",
        "vrrp_interface",
        "vrrp_priority",
        "dns_weight",
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
        ObjectTool(
            "reload-engine",
            "Reload OpenSIPS now",
            ConfirmForm,
            reload_opensips,
            help="OpenSIPS reads its address, routing and registrant tables again now. Changes "
            "are pushed by themselves; this is for a node that missed them.",
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
        syncs = Prefetch("engine_syncs", EngineSync.objects.filter(engine=EngineSync.Engine.OPENSIPS))
        return super().get_queryset(request).annotate(is_alive=Exists(alive)).prefetch_related(syncs)

    @admin.display(description="state", ordering="last_heartbeat")
    def alive(self, node):
        # Words, not the red cross of a boolean: a node that never beat is one whose workers
        # have not started yet (being set up, or demo data), not a node that died.
        if not node.enabled:
            return "disabled"
        if node.is_alive:
            return "alive"
        return "not started" if node.last_heartbeat is None else "STALE"

    @admin.display(description="OpenSIPS sync")
    def engine_sync(self, node):
        return sync_summary(sync_row(node))

    # -- the live engine, on the change page --

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            row = sync_row(obj)
            context["engine_sync"] = row
            context["engine_sync_summary"] = sync_summary(row)
            # Only when looking: a refused POST re-rendering the form does not ask the engine.
            if request.method == "GET":
                context["engine"] = engine_status(obj)
                if obj.media_enabled:
                    context["freeswitch"] = freeswitch_status(obj)
            context["hang_up_url"] = reverse(self._url_name("hang_up"), args=[obj.pk])
            context["hang_up_media_url"] = reverse(self._url_name("hang_up_media"), args=[obj.pk])
            context["now"] = timezone.now()
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        hang_up = path(
            "<path:object_id>/hang-up/",
            self.admin_site.admin_view(self.hang_up_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_hang_up",
        )
        hang_up_media = path(
            "<path:object_id>/hang-up-media/",
            self.admin_site.admin_view(self.hang_up_media_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_hang_up_media",
        )
        return [hang_up, hang_up_media, *super().get_urls()]

    def hang_up_view(self, request, object_id):
        """Confirm, then end one live call on this node's OpenSIPS (operator only)."""
        node = self.get_object(request, unquote(object_id))
        if node is None:
            raise Http404  # someone else's object reads as absent
        if not self.allows(request, CHANGE):
            raise PermissionDenied
        call_id = (request.POST.get("call_id") or request.GET.get("call_id") or "").strip()
        change_url = reverse(self._url_name("change"), args=[node.pk])
        if not call_id:
            self.message_user(request, "Say which call to hang up: call_id is missing.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                outcome = services.hang_up(node, call_id, actor=self.scope(request))
            except EngineError as exc:
                self.message_user(request, f"OpenSIPS on {node} did not end {call_id}: {exc}", messages.ERROR)
            else:
                if outcome is DialogEnd.GONE:
                    self.message_user(
                        request, f"Call {call_id} had already ended on {node}.", messages.WARNING
                    )
                else:
                    self.message_user(request, f"Call {call_id} on {node} was hung up.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        return self._confirm_hang_up(request, node, change_url, field="call_id", value=call_id)

    def hang_up_media_view(self, request, object_id):
        """Confirm, then hang up one channel of this node's FreeSWITCH (operator only)."""
        node = self.get_object(request, unquote(object_id))
        if node is None:
            raise Http404  # someone else's object reads as absent
        if not self.allows(request, CHANGE):
            raise PermissionDenied
        uuid = (request.POST.get("uuid") or request.GET.get("uuid") or "").strip()
        change_url = reverse(self._url_name("change"), args=[node.pk])
        if not uuid:
            self.message_user(request, "Say which channel to hang up: uuid is missing.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                outcome = hang_up_channel(node, uuid, actor=self.scope(request))
            except (EngineError, ValueError) as exc:
                self.message_user(
                    request, f"FreeSWITCH on {node} did not hang up {uuid}: {exc}", messages.ERROR
                )
            else:
                if outcome is CallEnd.GONE:
                    self.message_user(
                        request, f"Channel {uuid} had already ended on {node}.", messages.WARNING
                    )
                else:
                    self.message_user(request, f"Channel {uuid} on {node} was hung up.", messages.SUCCESS)
            return HttpResponseRedirect(change_url + "#freeswitch-channels")
        return self._confirm_hang_up(request, node, change_url, field="uuid", value=uuid)

    def _confirm_hang_up(self, request, node, change_url, *, field: str, value: str):
        context = {
            **self.admin_site.each_context(request),
            "title": f"Hang up a call on {node}",
            "subtitle": None,
            "object": node,
            "field": field,
            "value": value,
            "engine": "FreeSWITCH" if field == "uuid" else "OpenSIPS",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/nodes/node/hang_up.html", context)

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
            {"fields": ("origination_mode", "shared_ip", "bind_address")},
        ),
        (
            "Peers assigned to nodes, load balancing",
            {
                "fields": (
                    "redirect_to_assigned_node",
                    "serve_when_assigned_nodes_down",
                    "distribute_shared_ip",
                )
            },
        ),
        (
            "Shared IP (keepalived)",
            {
                "fields": (
                    "shared_ip_prefix_length",
                    "vrrp_router_id",
                    "vrrp_password",
                    "vrrp_advert_ms",
                    "shared_ip_preempt",
                )
            },
        ),
        ("Routing", {"fields": ("default_routing_plan", "quality_window")}),
        ("Call limits", {"fields": ("max_call_duration", "reservation_grace")}),
        ("Media", {"fields": ("recording_stereo",)}),
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
