"""Controllers and alerts: controllers written through apps.fraud.rules, alerts undone through
apps.fraud.services; both scoped (a reseller's key sees its own controllers and its customers'
alerts, a customer's key the alerts about itself)."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ScopedModelViewSet, ScopedReadOnlyViewSet, model_changes
from apps.fraud import rules, services
from apps.fraud.api import filters, serializers
from apps.fraud.models import Alert, Controller
from apps.tenancy.api.permissions import HasScope, ReadOnlyForCustomers


class ControllerViewSet(ScopedModelViewSet):
    """Rules that watch traffic, spend, numbers and logins, and act (or warn) past a threshold."""

    queryset = Controller.objects.select_related("reseller", "peer")
    serializer_class = serializers.ControllerSerializer
    filterset_class = filters.ControllerFilter
    ordering_fields = ("name", "kind", "created_at")

    def create_object(self, data):
        reseller = data.pop("reseller", None)
        return rules.create_controller(
            actor=self.scope, reseller_id=reseller.pk if reseller else None, **model_changes(Controller, data)
        )

    def update_object(self, controller, changes):
        return rules.update_controller(
            controller, actor=self.scope, changes=model_changes(Controller, changes)
        )

    def destroy_object(self, controller):
        rules.delete_controller(controller, actor=self.scope)


class AlertViewSet(ScopedReadOnlyViewSet):
    """Episodes of the controllers, newest first; `?open=true` lists those not yet over."""

    queryset = Alert.objects.select_related("controller")
    serializer_class = serializers.AlertSerializer
    filterset_class = filters.AlertFilter
    ordering_fields = ("started_at", "ends_at", "measured")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(request=serializers.UndoSerializer, responses=serializers.AlertSerializer)
    @action(detail=True, methods=["post"], permission_classes=[HasScope, ReadOnlyForCustomers])
    def undo(self, request, pk=None):
        """End the episode now and lift its action (resume, unlock, unban, admit), audited."""
        alert = self.get_object()
        body = serializers.UndoSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = services.undo_alert(alert, actor=self.scope, reason=body.validated_data["reason"])
        return Response(self.get_serializer(alert).data)
