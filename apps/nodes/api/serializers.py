from apps.core.api import CreateOnlyFieldsMixin, ModelSerializer
from apps.nodes.models import Node


class NodeSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """One cluster member and its addresses; the name is fixed once created."""

    class Meta:
        model = Node
        fields = [
            "id",
            "name",
            "management_address",
            "sip_address",
            "sip_port",
            "public_hostname",
            "enabled",
            "vrrp_interface",
            "vrrp_priority",
            "dns_weight",
            "last_heartbeat",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_heartbeat", "created_at", "updated_at"]
        # The name is the node's identity: its django-q2 cluster and task queue.
        create_only = ["name"]
        validators = []
