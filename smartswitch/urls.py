from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView

from apps.callcontrol.views import check_routing_view
from apps.core.middleware import speaks_json


def health(request):
    """Liveness for load balancers and keepalived checks: the process answers, and so does its
    database; 503 when this node's Galera member is not in the cluster's primary component.

    On a Galera member the check reads the member's own status and no table: a read that
    waits for the cluster (wsrep_sync_wait) stalls on every node at once while the survivors
    of a dead member wait to evict it, and keepalived would take the shared IP off them all.
    """
    from django.conf import settings

    from apps.cluster.presence import galera_state
    from apps.nodes.models import Node

    galera = galera_state()
    if not galera.member:
        Node.objects.filter(name=settings.NODE_NAME).exists()
        return JsonResponse({"status": "ok", "node": settings.NODE_NAME})
    healthy = galera.ready and galera.cluster_status == "Primary" and not galera.error
    return JsonResponse(
        {
            "status": "ok" if healthy else "unavailable",
            "node": settings.NODE_NAME,
            "database": galera.summary(),
        },
        status=200 if healthy else 503,
    )


# Clients of the JSON paths read JSON, also when no view answers (a path the resolver does
# not know, such as /api/v1/accounts/0.5/payments/). DRF's own exception handler covers its
# views; with DEBUG on, apps.core.middleware turns Django's technical 404 page into JSON.


def bad_request(request, exception):
    if speaks_json(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if speaks_json(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if speaks_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if speaks_json(request):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


handler400 = bad_request
handler403 = permission_denied
handler404 = page_not_found
handler500 = server_error

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:dashboard", permanent=False)),
    path("admin/check-routing/", admin.site.admin_view(check_routing_view), name="check-routing"),
    # Reports and the live dashboard are admin pages (admin_view inside each app's urls).
    path("admin/reports/", include("apps.reports.urls")),
    path("admin/live/", include("apps.live.urls")),
    path("admin/", admin.site.urls),
    path("portal/", include("apps.portal.urls")),
    path("capture/", include("apps.capture.urls")),
    path("api/v1/", include("smartswitch.api_urls")),
    # Under ASGI these paths never reach Django (smartswitch.asgi); the views serve WSGI and tests.
    path("call-control/v1/", include("apps.callcontrol.urls")),
    path("health/", health, name="health"),
]
