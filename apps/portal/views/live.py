"""Live calls: the customer's calls in progress and its live figures, pushed by ws/live/."""

from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache

from apps.live import figures
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope


@never_cache
@customer_required
def live(request, scope: Scope):
    """First rendered here from the database; apps/live/static/live/live.js keeps it current."""
    now = timezone.now()
    page = context(
        customer(scope), nav="live", figures=figures.figures_for(scope, now), read_at=now.isoformat()
    )
    return render(request, "portal/live.html", page)


urlpatterns = [path("live/", live, name="live")]
