"""Numbers: the customer's DIDs, what each costs, and where its calls go."""

from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache

from apps.dids.models import Did, DidTarget
from apps.portal.views.common import context, customer, customer_required
from apps.portal.views.connectivity import registrations
from apps.tenancy.scope import Scope, access

NUMBERS_PER_PAGE = 50

# A customer sees what it pays for a number and where its calls go; what the number costs
# its provider (supplier, buy prices) and the provider's notes stay out of every template.
CUSTOMER_DID_FIELDS = (
    "id",
    "number",
    "last_number",
    "hunting",
    "sell_monthly",
    "sell_per_minute",
    "min_seconds",
    "increment_seconds",
    "enabled",
)


def _dids(scope: Scope):
    targets = DidTarget.objects.select_related("sip_account", "gateway__peer")
    return (
        Did.objects.visible_to(scope)
        .only(*CUSTOMER_DID_FIELDS)
        .prefetch_related(Prefetch("targets", queryset=targets))
        .order_by("number")
    )


def _registered(dids) -> set[int]:
    """Ids of the targets' SIP accounts with a live registration (OpenSIPS's location table)."""
    accounts = {t.sip_account for did in dids for t in did.targets.all() if t.sip_account_id}
    return {pk for pk, contacts in registrations(list(accounts)).items() if contacts}


@never_cache
@customer_required
def numbers(request, scope: Scope):
    """The customer's numbers, what each costs, and where its calls go."""
    peer = customer(scope)
    page_obj = Paginator(_dids(scope), NUMBERS_PER_PAGE).get_page(request.GET.get("page"))
    page = context(peer, nav="numbers", page_obj=page_obj, registered=_registered(page_obj))
    return render(request, "portal/numbers.html", page)


@never_cache
@customer_required
def number(request, scope: Scope, pk: int):
    """One of the customer's numbers; anyone else's is a 404."""
    peer = customer(scope)
    did = access(_dids(scope), scope, pk)
    return render(
        request, "portal/number.html", context(peer, nav="numbers", did=did, registered=_registered([did]))
    )


urlpatterns = [
    path("numbers/", numbers, name="numbers"),
    path("numbers/<int:pk>/", number, name="number"),
]
