"""The only write path for nodes and cluster settings."""

from functools import partial

from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.nodes.models import ClusterSettings, Node, new_secret
from apps.nodes.sync import client_for
from apps.opensips import dialogs
from apps.tenancy.scope import Scope
from engines.opensips import DialogEnd

NODE_SETTINGS = (
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
)
CLUSTER_SETTINGS = (
    "origination_mode",
    "shared_ip",
    "shared_ip_prefix_length",
    "vrrp_router_id",
    "vrrp_password",
    "shared_ip_preempt",
    "vrrp_advert_ms",
    "bind_address",
    "redirect_to_assigned_node",
    "serve_when_assigned_nodes_down",
    "distribute_shared_ip",
    "default_routing_plan_id",
    "max_call_duration",
    "reservation_grace",
    "quality_window",
    "recording_stereo",
)


@retry_on_conflict
def create_node(*, actor: Scope, name: str, **fields) -> Node:
    """Add a node to the cluster (operator only)."""
    ensure_manages(actor, None)
    node = apply_changes(Node(name=name), fields, allowed=NODE_SETTINGS)
    node = save_object(node, actor=actor, action="node.created")
    announce("nodes.Node", [node.pk])
    # Its OpenSIPS's table of live calls; data definition, so once the node is committed.
    transaction.on_commit(partial(dialogs.ensure_table, node.pk))
    return node


@retry_on_conflict
def update_node(node: Node, *, actor: Scope, changes: dict) -> Node:
    """Change a node's addresses or take it out of service (operator only)."""
    ensure_manages(actor, None)
    current = Node.objects.select_for_update().get(pk=node.pk)
    apply_changes(current, changes, allowed=NODE_SETTINGS)
    current = save_object(current, actor=actor, action="node.changed")
    announce("nodes.Node", [current.pk], fields=changes)
    return current


@retry_on_conflict
def rotate_call_control_secret(node: Node, *, actor: Scope) -> Node:
    """Give `node` a new call-control secret; its OpenSIPS needs the new one from now on."""
    ensure_manages(actor, None)
    current = Node.objects.select_for_update().get(pk=node.pk)
    current.call_control_secret = new_secret()
    current.save(update_fields=["call_control_secret", "updated_at"])
    # Never the secret itself: audit entries are read by more people than node configs.
    audit.record(actor, "node.secret_rotated", current)
    # Call control's snapshot holds the secrets it checks requests against.
    announce("nodes.Node", [current.pk], fields=["call_control_secret"])
    return current


@retry_on_conflict
def update_cluster_settings(*, actor: Scope, changes: dict) -> ClusterSettings:
    """Change the cluster-wide origination, routing and call-limit settings (operator only)."""
    ensure_manages(actor, None)
    current = ClusterSettings.load()
    apply_changes(current, changes, allowed=CLUSTER_SETTINGS)
    current = save_object(current, actor=actor, action="cluster.changed")
    # Outbound registrations leave from a node's socket (dedicated IP) or the shared IP: the
    # registrant table follows node addresses and the origination mode (apps.opensips.provisioning).
    announce("nodes.ClusterSettings", [current.pk], fields=changes)
    return current


@retry_on_conflict
def record_heartbeat(node_name: str) -> bool:
    """Mark `node_name` alive now; False when no such node is configured."""
    # A plain UPDATE of one row, no audit and no announcement: this runs every few seconds
    # on every node, and call control's snapshot does not hold the heartbeat.
    return Node.objects.filter(name=node_name).update(last_heartbeat=timezone.now()) == 1


def hang_up(node: Node, call_id: str, *, actor: Scope) -> DialogEnd:
    """End the live call `call_id` on `node`'s OpenSIPS with BYEs both ways (operator only)."""
    ensure_manages(actor, None)
    outcome = client_for(node).end_dialog(call_id)
    # Audited once OpenSIPS answered: an unreachable engine ended nothing.
    audit.record(actor, "call.hung_up", node, call_id=call_id, result=str(outcome))
    return outcome
