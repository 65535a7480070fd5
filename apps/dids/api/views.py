"""DIDs: every write calls apps.dids.services; customers set where their DIDs' calls go."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ScopedModelViewSet, model_changes
from apps.core.db import retry_on_conflict
from apps.dids import services
from apps.dids.api import filters, serializers
from apps.dids.models import Did
from apps.tenancy.api.permissions import HasScope


class DidViewSet(ScopedModelViewSet):
    """Numbers in stock and on customers; `?holds=` finds the DID or block holding a number.

    Only the operator adds, deletes and prices what a number costs us; a reseller assigns its
    customers' DIDs among them, releases them and sets their sell prices and targets.
    """

    queryset = Did.objects.select_related("customer", "supplier").prefetch_related(
        "targets__sip_account", "targets__gateway__peer"
    )
    serializer_class = serializers.DidSerializer
    filterset_class = filters.DidFilter
    ordering_fields = ("number", "created_at")

    def create_object(self, data):
        customer = data.pop("customer", None)
        targets = serializers.as_targets(data.pop("targets", []))
        return services.create_did(
            actor=self.scope, customer=customer, targets=targets, **model_changes(Did, data)
        )

    def update_object(self, did, changes):
        # One transaction for the whole PATCH: a refused assignment undoes the price change
        # that came with it, and a write conflict replays all of it.
        return retry_on_conflict(lambda: self._update(did, changes))()

    def _update(self, did, changes):
        has_customer = "customer" in changes
        customer = changes.pop("customer", None)
        targets = changes.pop("targets", None)
        targets = None if targets is None else serializers.as_targets(targets)
        if changes:
            did = services.update_did(did, actor=self.scope, changes=model_changes(Did, changes))
        if has_customer and customer is None:
            did = services.release_did(did, actor=self.scope)
        elif has_customer and customer.pk != did.customer_id:
            return services.assign_did(did, customer, actor=self.scope, targets=targets or ())
        if targets is not None:
            did = services.set_targets(did, targets, actor=self.scope)
        return did

    def destroy_object(self, did):
        services.delete_did(did, actor=self.scope)

    @extend_schema(request=serializers.TargetsSerializer, responses=serializers.DidSerializer)
    @action(detail=True, methods=["post"], url_path="set-targets", permission_classes=[HasScope])
    def set_targets(self, request, pk=None):
        """Send the DID's calls to these targets, tried in order (customers too, on their own DIDs)."""
        did = self.get_object()
        body = serializers.TargetsSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        services.set_targets(
            did,
            serializers.as_targets(body.validated_data["targets"]),
            actor=self.scope,
            hunting=body.validated_data.get("hunting"),
        )
        return Response(self.get_serializer(self.get_object()).data)
