"""Bundles, subscriptions and their periods' usage: read within the key's scope, written only
through apps.bundles.services.catalogue.

The operator and resellers keep their catalogues and subscribe their customers; a customer's
key reads the bundles it has, its subscriptions and their usage.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.bundles import periods
from apps.bundles.api import filters, serializers
from apps.bundles.models import Bundle, Subscription, Usage
from apps.bundles.services import catalogue
from apps.core.api import ScopedModelViewSet, ScopedReadOnlyViewSet, ScopedViewSetMixin, model_changes
from apps.tenancy.api.permissions import HasScope, ReadOnlyForCustomers

WRITE = [HasScope, ReadOnlyForCustomers]


class BundleViewSet(ScopedModelViewSet):
    """The operator's catalogue and each reseller's own; a customer's key lists the bundles it has.

    Never deleted: subscriptions and their fees name a bundle. A different offer is a new bundle.
    """

    queryset = Bundle.objects.select_related("reseller")
    serializer_class = serializers.BundleSerializer
    filterset_class = filters.BundleFilter
    ordering_fields = ("name", "price", "created_at")
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create_object(self, data):
        reseller = data.pop("reseller", None)
        return catalogue.create_bundle(actor=self.scope, reseller=reseller, **model_changes(Bundle, data))

    def update_object(self, bundle, changes):
        return catalogue.update_bundle(bundle, actor=self.scope, changes=model_changes(Bundle, changes))


class SubscriptionViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Accounts' bundles, each with this period's included, used and left on the customer's clock."""

    queryset = Subscription.objects.select_related("account__peer", "bundle")
    serializer_class = serializers.SubscriptionSerializer
    filterset_class = filters.SubscriptionFilter
    permission_classes = WRITE
    ordering_fields = ("starts_on", "ends_on", "created_at")

    def get_serializer(self, instance=None, *args, **kwargs):
        if instance is not None and self.action in ("list", "retrieve"):
            rows = instance if kwargs.get("many") else [instance]
            context = kwargs.setdefault("context", self.get_serializer_context())
            context["current"] = periods.current_usages(rows)
        return super().get_serializer(instance, *args, **kwargs)

    def _answer(self, subscription: Subscription, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=subscription.pk)
        context = {**self.get_serializer_context(), "current": periods.current_usages([fresh])}
        return Response(serializers.SubscriptionSerializer(fresh, context=context).data, code)

    def _body(self, serializer_class):
        body = serializer_class(data=self.request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        return body.validated_data

    @extend_schema(
        summary="Subscribe an account to a bundle",
        description="Give a customer's account the bundle from `starts_on`; its price becomes a "
        "recurring fee of the account. The bundle is of the account's owner's catalogue: the "
        "operator's for its own customers, the reseller's for the reseller's.",
        request=serializers.SubscribeSerializer,
        responses={201: serializers.SubscriptionSerializer},
    )
    def create(self, request):
        data = self._body(serializers.SubscribeSerializer)
        subscription = catalogue.subscribe(
            data["account"],
            data["bundle"],
            actor=self.scope,
            starts_on=data["starts_on"],
            ends_on=data.get("ends_on"),
        )
        return self._answer(subscription, status.HTTP_201_CREATED)

    @extend_schema(
        summary="End a subscription",
        description="Stop the bundle after `ends_on`: its fee ends with it, and the period it ends in "
        "includes only its share of days.",
        request=serializers.EndSerializer,
        responses=serializers.SubscriptionSerializer,
    )
    @action(detail=True, methods=["post"], permission_classes=WRITE)
    def end(self, request, pk=None):
        subscription = self.get_object()
        data = self._body(serializers.EndSerializer)
        return self._answer(
            catalogue.end_subscription(subscription, actor=self.scope, ends_on=data["ends_on"])
        )


class UsageViewSet(ScopedReadOnlyViewSet):
    """The periods of subscriptions that calls used: what each includes, used and has left."""

    queryset = Usage.objects.all()
    serializer_class = serializers.UsageSerializer
    filterset_class = filters.UsageFilter
    ordering_fields = ("period_start",)
