"""Calls: the customer's CDRs, one call's page with its recordings and capture."""

from django.core.paginator import Page, Paginator
from django.http import Http404
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.cache import never_cache

from apps.cdr.models import Cdr
from apps.files.models import StoredFile
from apps.media import recordings
from apps.portal.forms import CdrFilterForm
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope, access

CDRS_PER_PAGE = 25

# The columns a customer is shown. Loading only these keeps the supplier side of a call
# (supplier, gateway, buy cost, the number as sent out) out of every template's reach; a
# template that reached for a deferred field would cost a query per row, which the
# query-count tests catch.
CUSTOMER_CDR_FIELDS = (
    "id",
    "caller",
    "callee",
    "created_at",
    "duration_ms",
    "sip_code",
    "sip_reason",
    "sell_cost",
    "rating_state",
)
# A call's own page adds when it was answered and ended, and what finds its files (its
# Call-ID, which the customer's phone chose, and its node, used and never shown).
CUSTOMER_CALL_FIELDS = (
    *CUSTOMER_CDR_FIELDS,
    "call_id",
    "answered_at",
    "ended_at",
    "billable_seconds",
    "node",
)


def cdr_page(request, scope: Scope, *, start=None, end=None) -> Page:
    cdrs = recordings.with_recording(
        Cdr.objects.visible_to(scope).between(start, end).only(*CUSTOMER_CDR_FIELDS)
    ).order_by("-created_at", "-id")
    # get_page() answers a page past the end with the last page and junk with the first.
    return Paginator(cdrs, CDRS_PER_PAGE).get_page(request.GET.get("page"))


@never_cache
@customer_required
def cdrs(request, scope: Scope):
    """Every call of the customer, newest first, optionally within a range of days."""
    peer = customer(scope)
    form = CdrFilterForm(request.GET)
    if form.is_valid():
        start, end = form.bounds()
        page_obj = cdr_page(request, scope, start=start, end=end)
    else:
        page_obj = Paginator(Cdr.objects.none(), CDRS_PER_PAGE).get_page(1)
    return render(request, "portal/cdrs.html", context(peer, nav="cdrs", form=form, page_obj=page_obj))


def _call(scope: Scope, pk: int) -> Cdr:
    return access(Cdr.objects.only(*CUSTOMER_CALL_FIELDS), scope, pk)


@never_cache
@customer_required
def call(request, scope: Scope, pk: int):
    """One of the customer's calls with its recordings and capture; anyone else's is a 404."""
    peer = customer(scope)
    cdr = _call(scope, pk)
    files = list(recordings.files_for_cdr(cdr))
    played = recordings.with_presence(f for f in files if f.kind == StoredFile.Kind.RECORDING)
    for stored in played:
        stored.url = reverse("portal:call-recording", args=[cdr.pk, stored.pk])
    captured = any(f.kind == StoredFile.Kind.CAPTURE for f in files)
    page = context(
        peer,
        nav="cdrs",
        cdr=cdr,
        recordings=played,
        capture_links=recordings.capture_links(cdr, "portal") if captured else [],
    )
    return render(request, "portal/call.html", page)


@customer_required
def call_recording(request, scope: Scope, pk: int, file_id: int):
    """Play (or, with ?download=1, download) a recording of one of the customer's calls."""
    cdr = _call(scope, pk)
    stored = recordings.files_for_cdr(cdr).filter(kind=StoredFile.Kind.RECORDING, pk=file_id).first()
    if stored is None:
        raise Http404
    return recordings.serve_recording(request, stored, download=request.GET.get("download") == "1")


urlpatterns = [
    path("calls/", cdrs, name="cdrs"),
    path("calls/<int:pk>/", call, name="call"),
    path("calls/<int:pk>/recordings/<int:file_id>/", call_recording, name="call-recording"),
]
