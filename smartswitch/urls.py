from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView

from apps.callcontrol.views import check_routing_view


def health(request):
    """Liveness for load balancers and keepalived checks: the process answers and reads the DB."""
    from django.conf import settings

    from apps.nodes.models import Node

    Node.objects.filter(name=settings.NODE_NAME).exists()
    return JsonResponse({"status": "ok", "node": settings.NODE_NAME})


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:dashboard", permanent=False)),
    path("admin/check-routing/", admin.site.admin_view(check_routing_view), name="check-routing"),
    path("admin/", admin.site.urls),
    path("portal/", include("apps.portal.urls")),
    path("api/v1/", include("smartswitch.api_urls")),
    # Under ASGI these paths never reach Django (smartswitch.asgi); the views serve WSGI and tests.
    path("call-control/v1/", include("apps.callcontrol.urls")),
    path("health/", health, name="health"),
]
