"""Peers, their IP endpoints, SIP accounts and gateways; every write calls apps.peers.services."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ScopedModelViewSet, model_changes
from apps.peers import services
from apps.peers.api import filters, serializers
from apps.peers.models import Endpoint, Gateway, Peer, Registration, SipAccount
from apps.tenancy.api.permissions import HasScope, OperatorOnly


class PeerViewSet(ScopedModelViewSet):
    """Customers and suppliers: created with their account, suspended and resumed by actions."""

    queryset = Peer.objects.prefetch_related("nodes")
    serializer_class = serializers.PeerSerializer
    filterset_class = filters.PeerFilter
    ordering_fields = ("name", "created_at")
    # A peer has an account, a ledger and CDRs: it is disabled, never deleted.
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create_object(self, data):
        reseller = data.pop("reseller", None)
        account = data.pop("account", {})
        if "mode" in account:
            account["account_mode"] = account.pop("mode")
        return services.create_peer(
            actor=self.scope,
            reseller_id=reseller.pk if reseller else None,
            nodes=data.pop("nodes", ()),
            **account,
            **model_changes(Peer, data),
        )

    def update_object(self, peer, changes):
        return services.update_peer(peer, actor=self.scope, changes=model_changes(Peer, changes))

    def _respond(self, peer):
        return Response(serializers.PeerSerializer(peer, context=self.get_serializer_context()).data)

    @extend_schema(request=serializers.SuspendSerializer, responses=serializers.PeerSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        """Refuse new calls from and to the peer on every node; calls up now go on."""
        peer = self.get_object()
        body = serializers.SuspendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._respond(
            services.suspend_peer(peer, actor=self.scope, reason=body.validated_data["reason"])
        )

    @extend_schema(request=None, responses=serializers.PeerSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Lift a suspension."""
        return self._respond(services.resume_peer(self.get_object(), actor=self.scope))

    @extend_schema(request=serializers.AssignNodesSerializer, responses=serializers.PeerSerializer)
    @action(
        detail=True, methods=["post"], url_path="assign-nodes", permission_classes=[HasScope, OperatorOnly]
    )
    def assign_nodes(self, request, pk=None):
        """Serve the peer on exactly these nodes (manual load balancing; operator only)."""
        peer = self.get_object()
        body = serializers.AssignNodesSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        services.assign_peer_to_nodes(peer, body.validated_data["nodes"], actor=self.scope)
        return self._respond(self.get_object())


class PeerChildViewSet(ScopedModelViewSet):
    """Shared writes of endpoints, gateways and SIP accounts: the child stays with its peer."""

    def update_object(self, obj, changes):
        return services.update_child(
            obj, actor=self.scope, changes=model_changes(self.queryset.model, changes)
        )

    def destroy_object(self, obj):
        services.remove_child(obj, actor=self.scope)


class EndpointViewSet(PeerChildViewSet):
    """Source addresses that identify a customer's calls (IP authentication)."""

    queryset = Endpoint.objects.select_related("peer")
    serializer_class = serializers.EndpointSerializer
    filterset_class = filters.EndpointFilter
    ordering_fields = ("ip", "peer")

    def create_object(self, data):
        peer = data.pop("peer")
        return services.add_endpoint(peer, actor=self.scope, **data)


class GatewayViewSet(PeerChildViewSet):
    """A supplier's SIP destinations, tried by priority and weight."""

    queryset = Gateway.objects.select_related("peer")
    serializer_class = serializers.GatewaySerializer
    filterset_class = filters.GatewayFilter
    ordering_fields = ("name", "priority", "peer")

    def create_object(self, data):
        peer = data.pop("peer")
        return services.add_gateway(peer, actor=self.scope, **data)


class RegistrationViewSet(PeerChildViewSet):
    """Our outbound registrations to suppliers' registrars: one per node, or one on the shared IP.

    The operator's alone, like the admin page: a registration makes the cluster's nodes (or
    its shared IP) register to a registrar, even for a reseller's two-way peer.
    """

    permission_classes = [HasScope, OperatorOnly]
    queryset = Registration.objects.select_related("peer", "node")
    serializer_class = serializers.RegistrationSerializer
    filterset_class = filters.RegistrationFilter
    ordering_fields = ("registrar", "peer", "node")

    def create_object(self, data):
        peer = data.pop("peer")
        return services.add_registration(peer, actor=self.scope, **model_changes(Registration, data))


class SipAccountViewSet(PeerChildViewSet):
    """Digest logins of customers' PBXs and phones; passwords go in, never come out."""

    queryset = SipAccount.objects.select_related("peer")
    serializer_class = serializers.SipAccountSerializer
    filterset_class = filters.SipAccountFilter
    ordering_fields = ("username", "domain", "created_at")

    def create_object(self, data):
        peer = data.pop("peer")
        return services.add_sip_account(peer, actor=self.scope, **data)

    @extend_schema(request=serializers.SipPasswordSerializer, responses=serializers.SipAccountSerializer)
    @action(detail=True, methods=["post"], url_path="set-password")
    def set_password(self, request, pk=None):
        """Replace the account's password; the old one stops working at once."""
        account = self.get_object()
        body = serializers.SipPasswordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        account = services.set_sip_password(
            account, actor=self.scope, password=body.validated_data["password"]
        )
        return Response(self.get_serializer(account).data)
