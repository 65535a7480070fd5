"""Controllers and alerts as the API shows and accepts them; alerts are read and undone only."""

from rest_framework import serializers

from apps.core.api import CreateOnlyFieldsMixin, ModelSerializer, ScopedRelatedField
from apps.fraud.models import Alert, Controller
from apps.peers.models import Peer
from apps.tenancy.models import Reseller
from apps.tenancy.scope import request_scope


class ControllerSerializer(CreateOnlyFieldsMixin, ModelSerializer):
    """A rule: what to watch, over which window, past which threshold, and what to do.

    Which fields each kind reads is in docs/FRAUD.md; `kind` and the owner are set when
    creating. A reseller's key always creates controllers of its own, which watch only its
    customers.
    """

    reseller = ScopedRelatedField(
        queryset=Reseller.objects.all(),
        required=False,
        allow_null=True,
        help_text="Operator only. Owner; empty means the operator. A reseller's key always creates for "
        "its reseller.",
    )
    peer = ScopedRelatedField(
        queryset=Peer.objects.all(),
        required=False,
        allow_null=True,
        help_text="Watch only this customer (or supplier, for termination); empty: every one the owner has.",
    )

    class Meta:
        model = Controller
        fields = [
            "id",
            "name",
            "kind",
            "metric",
            "reseller",
            "peer",
            "enabled",
            "action",
            "window_minutes",
            "min_count",
            "threshold",
            "floor",
            "per_destination",
            "short_seconds",
            "baseline_days",
            "account_limit",
            "cluster_wide",
            "block_minutes",
            "trial_share",
            "trial_minutes",
            "notify",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        create_only = ("kind", "reseller")
        # The unique name per owner is checked once, by the service's full_clean().
        validators = []

    def to_internal_value(self, data):
        if (
            not request_scope(self.context["request"]).is_operator
            and hasattr(data, "keys")
            and "reseller" in data
        ):
            raise serializers.ValidationError({"reseller": ["Only the operator sets this."]})
        return super().to_internal_value(data)


class AlertSerializer(ModelSerializer):
    """One episode: the subject caught, the measure against the threshold, the action and its end."""

    controller_name = serializers.CharField(
        source="controller.name",
        read_only=True,
        default=None,
        help_text="Empty once the controller is deleted.",
    )
    # Not an enum here: the schema has one enum component per choice set, the controller's.
    kind = serializers.CharField(read_only=True, help_text="The kind of its controller (see controllers).")
    in_force = serializers.SerializerMethodField(help_text="Its action holds now (blocked or in its trial).")

    class Meta:
        model = Alert
        fields = [
            "id",
            "controller",
            "controller_name",
            "kind",
            "effect",
            "reseller",
            "subject",
            "peer",
            "destination",
            "number",
            "source_ip",
            "username",
            "sip_account",
            "measured",
            "threshold",
            "attempts",
            "window_minutes",
            "detail",
            "started_at",
            "last_seen_at",
            "ends_at",
            "trial_until",
            "trial_share",
            "ended_at",
            "undone_at",
            "undone_reason",
            "emailed_at",
            "in_force",
        ]
        read_only_fields = fields

    def get_in_force(self, alert) -> bool:
        return alert.in_force(self.context["now"])


class UndoSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="", help_text="Recorded in the audit trail."
    )
