"""Cluster nodes, for the operator only; writes go through apps.nodes.services."""

from apps.core.api import ScopedModelViewSet
from apps.nodes import services
from apps.nodes.api.serializers import NodeSerializer
from apps.nodes.models import Node
from apps.tenancy.api.permissions import HasScope, OperatorOnly


class NodeViewSet(ScopedModelViewSet):
    """Cluster members and their addresses (operator only)."""

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    permission_classes = [HasScope, OperatorOnly]
    filterset_fields = ["enabled"]
    ordering_fields = ("name",)
    # Nodes are taken out of service (enabled=false), not deleted: CDRs point at them.
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create_object(self, data):
        return services.create_node(actor=self.scope, **data)

    def update_object(self, node, changes):
        return services.update_node(node, actor=self.scope, changes=changes)
