"""`{% open_alerts %}`: the alerts in force now, for the pages people watch (node, cluster).

A tag rather than view code, so that a page shows them by one line in its template.
"""

from django import template
from django.utils import timezone

from apps.fraud.models import Alert
from apps.tenancy.scope import Scope

register = template.Library()

LATEST = 5


@register.inclusion_tag("admin/fraud/open_alerts.html", takes_context=True)
def open_alerts(context, latest: int = LATEST) -> dict:
    """How many alerts the signed-in user may see are in force now, and the latest few."""
    request = context.get("request")
    scope = Scope.of_user(request.user) if request is not None else Scope.system()
    in_force = Alert.objects.visible_to(scope).in_force(timezone.now())
    return {"alert_count": in_force.count(), "alerts": list(in_force[:latest])}
