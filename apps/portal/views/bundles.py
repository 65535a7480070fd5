"""Bundles: the customer's subscriptions, what this period of each includes, used and has left,
and the periods past; one subscription's page lists all its periods.

Read only: subscriptions are made and ended by the customer's provider. Someone else's
subscription is a 404 like any object the customer may not see.
"""

from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache

from apps.bundles import periods
from apps.bundles.models import Subscription, Usage
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope, access

PERIODS_PER_PAGE = 25


def _subscriptions(scope: Scope):
    return Subscription.objects.visible_to(scope).select_related("bundle", "account__peer")


def _usages(scope: Scope):
    usages = Usage.objects.visible_to(scope)
    return usages.select_related("subscription__bundle", "subscription__account__peer")


def _with_this_period(subscriptions) -> list[Subscription]:
    subscriptions = list(subscriptions)
    current = periods.current_usages(subscriptions)
    for subscription in subscriptions:
        subscription.this_period = current[subscription.pk]
    return subscriptions


@never_cache
@customer_required
def bundles(request, scope: Scope):
    """Each subscription with this period's figures; the periods already over below."""
    peer = customer(scope)
    subscriptions = _with_this_period(_subscriptions(scope).order_by("-starts_on", "-pk"))
    today = timezone.localdate(timezone=peer.zone)
    past = _usages(scope).filter(period_end__lt=today).order_by("-period_start", "-pk")
    page_obj = Paginator(past, PERIODS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/bundles.html",
        context(peer, nav="bundles", subscriptions=subscriptions, page_obj=page_obj, today=today),
    )


@never_cache
@customer_required
def subscription(request, scope: Scope, pk: int):
    """One of the customer's subscriptions with every period calls used, newest first."""
    peer = customer(scope)
    (found,) = _with_this_period([access(_subscriptions(scope), scope, pk)])
    usages = _usages(scope).filter(subscription=found).order_by("-period_start")
    page_obj = Paginator(usages, PERIODS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/bundle.html",
        context(peer, nav="bundles", subscription=found, page_obj=page_obj),
    )


urlpatterns = [
    path("bundles/", bundles, name="bundles"),
    path("bundles/<int:pk>/", subscription, name="bundle"),
]
