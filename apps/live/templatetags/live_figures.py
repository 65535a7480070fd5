"""Template tags of the live views: the figures panel, and the admin home's dashboard.

Tags rather than view code, so that the admin home (Django's own index view) shows them by
one line in its template; what they show is read through `visible_to(scope)` here, never
decided in a template.
"""

from datetime import datetime

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.live import figures
from apps.tenancy.scope import Scope, request_scope

register = template.Library()


@register.filter
def iso_time(value: str | None) -> str:
    """An ISO time from the figures as HH:MM:SS in the current time zone ("" when none)."""
    if not value:
        return ""
    return timezone.localtime(datetime.fromisoformat(value)).strftime("%H:%M:%S")


@register.filter
def seconds_clock(value) -> str:
    """Whole seconds as m:ss or h:mm:ss (the duration so far of a call in progress)."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@register.filter
def window(quality: dict, minutes) -> dict:
    """`{{ figures.quality|window:5 }}`: one window's ASR and ACD."""
    return (quality or {}).get(str(minutes), {})


@register.inclusion_tag("live/_dashboard.html", takes_context=True)
def admin_dashboard(context) -> dict:
    """The admin home's dashboard for the signed-in operator or reseller staff, scoped."""
    request = context["request"]
    scope = request_scope(request)
    if not (scope.is_operator or scope.is_reseller):
        return {"shown": False}
    now = timezone.now()
    links = [
        (_("Live dashboard"), reverse("live:dashboard")),
        (_("Reports"), reverse("reports:traffic")),
        (_("Check routing"), reverse("check-routing")),
    ]
    if scope.is_operator:
        links.append((_("Cluster status"), reverse("admin:cluster_nodestatus_changelist")))
    return {
        "shown": True,
        "request": request,
        "figures": figures.figures_for(scope, now),
        "read_at": now.isoformat(),
        **health(scope, now),
        "links": [
            (_("Live dashboard"), reverse("live:dashboard")),
            (_("Reports"), reverse("reports:traffic")),
            (_("Check routing"), reverse("check-routing")),
            *(
                [(_("Cluster status"), reverse("admin:cluster_nodestatus_changelist"))]
                if scope.is_operator
                else []
            ),
        ],
    }


def health(scope: Scope, now: datetime) -> dict:
    """Stale nodes (the operator's), rating errors and price imports not finished, as `scope` sees them."""
    from apps.cdr.models import RatingError
    from apps.rates.models import BUSY_STATES, PriceImport

    stale = []
    if scope.is_operator:
        from apps.cluster.presence import cluster_report

        stale = [report.name for report in cluster_report(now=now) if report.enabled and report.stale]
    unfinished = list(BUSY_STATES | {PriceImport.State.STAGED})
    imports = PriceImport.objects.visible_to(scope).filter(state__in=unfinished).select_related("table")
    return {
        "show_nodes": scope.is_operator,
        "stale_nodes": stale,
        "rating_errors": RatingError.objects.visible_to(scope).count(),
        "imports": list(imports.order_by("-created_at")[:5]),
        "import_count": imports.count(),
    }
