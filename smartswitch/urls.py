from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView


def health(request):
    """Liveness for load balancers and keepalived checks: the process answers and reads the DB."""
    from django.conf import settings

    from apps.nodes.models import Node

    Node.objects.filter(name=settings.NODE_NAME).exists()
    return JsonResponse({"status": "ok", "node": settings.NODE_NAME})


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:dashboard", permanent=False)),
    path("admin/", admin.site.urls),
    path("portal/", include("apps.portal.urls")),
    path("api/v1/", include("smartswitch.api_urls")),
    path("health/", health, name="health"),
]
