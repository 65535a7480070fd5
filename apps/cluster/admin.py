"""The cluster status page: every node's heartbeat, Galera state, engine and file sync (operator only)."""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from apps.cluster.models import NodeStatus
from apps.cluster.presence import cluster_report, galera_state
from apps.core.admin import VIEW, ScopedModelAdmin


@admin.register(NodeStatus)
class ClusterStatusAdmin(ScopedModelAdmin):
    """Written by the nodes' heartbeats only; the list is the same table as `cluster_status`."""

    operator_can = frozenset({VIEW})

    def get_queryset(self, request):
        # Node status is infrastructure: the operator's, nobody else's.
        queryset = NodeStatus.objects.select_related("node")
        return queryset if self.scope(request).is_operator else queryset.none()

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        reports = cluster_report()
        context = {
            **self.admin_site.each_context(request),
            "title": "Cluster status",
            "opts": self.model._meta,
            "reports": reports,
            "stale_after": settings.CLUSTER_STALE_SECONDS,
            "stale": [report.name for report in reports if report.enabled and report.stale],
            # Live, from the database this web process uses (the rows above are each node's last beat).
            "this_node": settings.NODE_NAME,
            "local_galera": galera_state().summary(),
        }
        return TemplateResponse(request, "admin/cluster/cluster_status.html", context)
