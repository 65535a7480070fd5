"""Prices: the customer's own sell prices in force, searched and downloaded, and the changes
its price list has scheduled."""

from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from apps.core.exports import FORMATS, export_response
from apps.portal.forms import PriceSearchForm
from apps.portal.views.common import context, customer, customer_required
from apps.rates.exports import COLUMNS, HEADER, price_chunks, prices_in_force
from apps.rates.models import Rate, RateTable
from apps.tenancy.scope import Scope

PRICES_PER_PAGE = 50
# A list re-priced whole schedules a change per prefix: the page shows the first ones, the
# download has them all (it is the list as it will be in force then).
SCHEDULED_SHOWN = 100
PRICE_FIELDS = ("id", *COLUMNS)


def scheduled_changes(scope: Scope, table: RateTable, now) -> list[Rate]:
    """Rates of `table` starting after `now`, each with the price it replaces (`old_price`)."""
    upcoming = list(
        Rate.objects.visible_to(scope)
        .live()
        .filter(table=table, effective_from__gt=now)
        .only(*PRICE_FIELDS)
        .order_by("effective_from", "prefix")[:SCHEDULED_SHOWN]
    )
    current = {
        (rate.prefix, rate.period): rate.price
        for rate in prices_in_force(table, now, scope=scope)
        .filter(prefix__in={rate.prefix for rate in upcoming})
        .only("prefix", "period", "price")
    }
    for rate in upcoming:
        rate.old_price = current.get((rate.prefix, rate.period))
    return upcoming


@never_cache
@customer_required
def prices(request, scope: Scope):
    """The customer's sell prices now; ?q= searches, ?format=csv|xlsx downloads the result."""
    peer = customer(scope)
    table = RateTable.objects.visible_to(scope).filter(pk=peer.sell_rate_table_id).first()
    form = PriceSearchForm(request.GET)
    page = context(peer, nav="prices", table=table, form=form)
    if table is None:
        return render(request, "portal/prices.html", page)
    now = timezone.now()
    rates = prices_in_force(table, now, scope=scope)
    if form.is_valid():
        rates = form.apply(rates)
        fmt = request.GET.get("format")
        if fmt in FORMATS:
            return export_response(
                request,
                fmt,
                filename=f"prices-{timezone.localdate():%Y%m%d}",
                header=HEADER,
                chunks=price_chunks(rates),
                title=_("Prices"),
            )
    else:
        rates = rates.none()
    query = request.GET.copy()
    for name in ("page", "format"):
        query.pop(name, None)
    page.update(
        page_obj=Paginator(
            rates.only(*PRICE_FIELDS).order_by("prefix", "period", "pk"), PRICES_PER_PAGE
        ).get_page(request.GET.get("page")),
        scheduled=scheduled_changes(scope, table, now),
        price_currency=table.currency,
        filters_query=query.urlencode(),
        filtered=bool(request.GET.get("q")),
        noun=_("Prices"),
    )
    return render(request, "portal/prices.html", page)


urlpatterns = [path("prices/", prices, name="prices")]
