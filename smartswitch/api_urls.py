"""The REST API at /api/v1/: one router for every app's viewsets, and the OpenAPI schema."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.billing.api.urls import routes as billing_routes
from apps.bundles.api.urls import routes as bundle_routes
from apps.cdr.api.urls import routes as cdr_routes
from apps.dids.api.urls import routes as did_routes
from apps.fraud.api.urls import routes as fraud_routes
from apps.invoicing.api.urls import routes as invoicing_routes
from apps.nodes.api.urls import routes as node_routes
from apps.peers.api.urls import routes as peer_routes
from apps.rates.api.urls import routes as rate_routes
from apps.routing.api.urls import routes as routing_routes

router = DefaultRouter()
for prefix, viewset, basename in [
    *peer_routes,
    *did_routes,
    *billing_routes,
    *invoicing_routes,
    *bundle_routes,
    *rate_routes,
    *cdr_routes,
    *node_routes,
    *routing_routes,
    *fraud_routes,
]:
    router.register(prefix, viewset, basename=basename)

urlpatterns = [
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's files come from drf-spectacular-sidecar through our static files, not a
    # CDN: switches often run on networks without Internet access.
    path("schema/ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-ui"),
]
