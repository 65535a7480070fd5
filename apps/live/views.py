"""The live dashboard of the admin (/admin/live/): the operator's cluster or a reseller's customers."""

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.live import figures
from apps.tenancy.scope import request_scope


def dashboard(request):
    """Live calls, calls per second, ASR/ACD and alerts: first rendered here, then pushed by ws/live/."""
    from django.contrib import admin

    scope = request_scope(request)
    if not (scope.is_operator or scope.is_reseller):
        raise PermissionDenied
    now = timezone.now()
    context = {
        **admin.site.each_context(request),
        "title": _("Live dashboard"),
        "figures": figures.figures_for(scope, now),
        "read_at": now.isoformat(),
    }
    return TemplateResponse(request, "admin/live/dashboard.html", context)
