"""The REST API at /api/v1/: one router for every app's viewsets, and the OpenAPI schema."""

from pathlib import Path

import drf_spectacular_sidecar
from django.urls import include, path, re_path, reverse
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.billing.api.urls import routes as billing_routes
from apps.cdr.api.urls import routes as cdr_routes
from apps.nodes.api.urls import routes as node_routes
from apps.peers.api.urls import routes as peer_routes
from apps.rates.api.urls import routes as rate_routes

SWAGGER_UI_DIST = (
    Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist"
)

router = DefaultRouter()
for prefix, viewset, basename in [*peer_routes, *billing_routes, *rate_routes, *cdr_routes, *node_routes]:
    router.register(prefix, viewset, basename=basename)


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI whose scripts come from this server, not a CDN: switches often run offline."""

    @staticmethod
    def _swagger_ui_resource(filename):
        return reverse("schema-ui-asset", args=[filename])

    @staticmethod
    def _swagger_ui_favicon():
        return reverse("schema-ui-asset", args=["favicon-32x32.png"])


urlpatterns = [
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/ui/", SwaggerView.as_view(url_name="schema"), name="schema-ui"),
    # A handful of files from the pinned drf-spectacular-sidecar package; the pattern admits
    # plain file names only, so nothing outside that folder can be asked for.
    re_path(
        r"^schema/ui/assets/(?P<path>[A-Za-z0-9_.-]+)$",
        serve,
        {"document_root": SWAGGER_UI_DIST},
        name="schema-ui-asset",
    ),
]
