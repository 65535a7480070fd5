"""Calls: the customer's CDRs filtered and exported, one call's page with its legs,
recordings and capture."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Q
from django.http import Http404
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from apps.cdr.models import Cdr
from apps.core.exports import FORMATS, export_response, keyset_chunks
from apps.files.models import StoredFile
from apps.media import recordings
from apps.portal.forms import CdrFilterForm
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope, access

CDRS_PER_PAGE = 25
# Calls on the overview; the Calls page has them all.
LATEST_CALLS = 10
# Rows per query of an export; the tests make it small to see the chunks.
EXPORT_CHUNK = 2000

# The columns a customer is shown. Loading only these keeps the supplier side of a call
# (supplier, gateway, buy cost, the number as sent out) out of every template's reach; a
# template that reached for a deferred field would cost a query per row, which the
# query-count tests catch.
CUSTOMER_CDR_FIELDS = (
    "id",
    "caller",
    "callee",
    "destination",
    "created_at",
    "duration_ms",
    "billable_seconds",
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
    "node",
)
# The export's columns, customer-side only as above; the price per minute is worked out
# from the last two (see price_per_minute).
EXPORT_COLUMNS = (
    "created_at",
    "caller",
    "callee",
    "destination",
    "duration_ms",
    "sip_code",
    "sip_reason",
    "billable_seconds",
    "sell_cost",
)


def price_per_minute(sell_cost, billable_seconds) -> Decimal | None:
    """What the customer paid per billed minute of one call: its cost over its billed time.

    Derived from the CDR rather than read from the reservation's sell tariff: the tariff is
    not kept for every call (none on CDRs without a reservation, NULL on older ones), and
    reading it would join a second large table per row of a list or a million-row export.
    The figure is what was charged, the connection fee and the billing increments included,
    so it can differ a little from the list price of a short call.
    """
    if sell_cost is None or not billable_seconds:
        return None
    return (Decimal(sell_cost) * 60 / billable_seconds).quantize(Decimal("0.000001"))


def _priced(cdrs):
    for cdr in cdrs:
        cdr.per_minute = price_per_minute(cdr.sell_cost, cdr.billable_seconds)
    return cdrs


def latest_calls(scope: Scope, count: int = LATEST_CALLS) -> list[Cdr]:
    """The overview's newest calls: one short indexed read, no COUNT over the customer's history."""
    cdrs = recordings.with_recording(Cdr.objects.visible_to(scope).only(*CUSTOMER_CDR_FIELDS))
    return _priced(list(cdrs.order_by("-created_at", "-id")[:count]))


# --- keyset pages: "newer" and "older" without COUNT(*) or OFFSET ---------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_of(moment: datetime, pk: int) -> str:
    """A row's place in a (moment, pk) ordering, as a short URL-safe string."""
    return f"{(moment - _EPOCH) // timedelta(microseconds=1)}.{pk}"


def parse_cursor(value: str | None) -> tuple[datetime, int] | None:
    try:
        micros, pk = (int(part) for part in (value or "").split("."))
        return _EPOCH + timedelta(microseconds=micros), pk
    except (ValueError, OverflowError):
        return None


@dataclass
class KeysetPage:
    """One page of a list ordered newest first, with cursors to the pages either side."""

    object_list: list
    newer: str | None = None  # cursor for the page of newer rows, None on the newest page
    older: str | None = None

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self):
        return len(self.object_list)

    def __getitem__(self, index):
        return self.object_list[index]


def keyset_page(queryset, request, *, key: str, size: int) -> KeysetPage:
    """The page of `queryset` that ?before= / ?after= (cursors) ask for, newest `key` first.

    A full COUNT(*) of a filtered month of a million calls takes seconds and OFFSET reads
    every row it skips; the (customer, created_at) index answers a keyset page in one short
    range read wherever it is. The price: no "page 7 of 40,000", only newer and older.
    """
    after, before = parse_cursor(request.GET.get("after")), parse_cursor(request.GET.get("before"))
    if before is not None:
        moment, pk = before
        newer_rows = queryset.filter(Q(**{f"{key}__gt": moment}) | Q(**{key: moment, "pk__gt": pk}))
        rows = list(newer_rows.order_by(key, "pk")[: size + 1])
        if len(rows) > size:
            rows = rows[:size][::-1]
            first, last = rows[0], rows[-1]
            return KeysetPage(
                rows,
                newer=cursor_of(getattr(first, key), first.pk),
                older=cursor_of(getattr(last, key), last.pk),
            )
        after = None  # fewer than a page is newer: that is the newest page, shown whole
    ordered = queryset.order_by(f"-{key}", "-pk")
    if after is not None:
        moment, pk = after
        ordered = ordered.filter(Q(**{f"{key}__lt": moment}) | Q(**{key: moment, "pk__lt": pk}))
    rows = list(ordered[: size + 1])
    page = KeysetPage(rows[:size])
    if len(rows) > size:
        last = rows[size - 1]
        page.older = cursor_of(getattr(last, key), last.pk)
    if after is not None and rows:
        first = rows[0]
        page.newer = cursor_of(getattr(first, key), first.pk)
    return page


# --- the call list and its export --------------------------------------------------------------


def filtered_calls(scope: Scope, form: CdrFilterForm):
    return form.apply(Cdr.objects.visible_to(scope))


@never_cache
@customer_required
def cdrs(request, scope: Scope):
    """Every call of the customer, newest first, filtered; ?format=csv|xlsx downloads them all."""
    peer = customer(scope)
    form = CdrFilterForm(request.GET)
    fmt = request.GET.get("format")
    if form.is_valid():
        if fmt in FORMATS:
            return export_calls(request, scope, form, fmt, currency=context(peer)["currency"])
        calls = recordings.with_recording(filtered_calls(scope, form).only(*CUSTOMER_CDR_FIELDS))
        page_obj = keyset_page(calls, request, key="created_at", size=CDRS_PER_PAGE)
        _priced(page_obj.object_list)
    else:
        page_obj = KeysetPage([])
    query = request.GET.copy()
    for name in ("after", "before", "format", "page"):
        query.pop(name, None)
    page = context(
        peer,
        nav="cdrs",
        form=form,
        page_obj=page_obj,
        filters_query=query.urlencode(),
        filtered=any(value for name, value in query.items()),
    )
    return render(request, "portal/cdrs.html", page)


def export_calls(request, scope: Scope, form: CdrFilterForm, fmt: str, *, currency: str):
    """The filtered calls, all of them, read in keyset chunks and written as they are read."""
    header = [
        _("Start"),
        _("Caller"),
        _("Callee"),
        _("Destination"),
        _("Duration (s)"),
        _("SIP code"),
        _("SIP reason"),
        _("Billed (s)"),
        _("Price per minute"),
        _("Cost"),
        _("Currency"),
    ]

    def rows(chunks):
        for chunk in chunks:
            yield [
                [
                    *head,
                    Decimal(duration_ms) / 1000,
                    code,
                    reason,
                    billed,
                    price_per_minute(cost, billed),
                    cost,
                    currency,
                ]
                for *head, duration_ms, code, reason, billed, cost in chunk
            ]

    chunks = keyset_chunks(filtered_calls(scope, form), "created_at", EXPORT_COLUMNS, size=EXPORT_CHUNK)
    return export_response(
        request,
        fmt,
        filename=f"calls-{timezone.localdate():%Y%m%d}",
        header=header,
        chunks=rows(chunks),
        title=_("Calls"),
    )


# --- one call ----------------------------------------------------------------------------------


def _call(scope: Scope, pk: int) -> Cdr:
    return access(Cdr.objects.only(*CUSTOMER_CALL_FIELDS), scope, pk)


@never_cache
@customer_required
def call(request, scope: Scope, pk: int):
    """One of the customer's calls with its legs, recordings and capture; anyone else's is a 404."""
    peer = customer(scope)
    cdr = _call(scope, pk)
    _priced([cdr])
    # Other attempts of the same call (a failover, a forked leg) that are this customer's
    # too: the Call-ID is the customer's phone's, so another customer's CDR may share it.
    legs = _priced(
        list(
            Cdr.objects.visible_to(scope)
            .filter(call_id=cdr.call_id)
            .only(*CUSTOMER_CDR_FIELDS)
            .order_by("created_at", "pk")[:50]
        )
    )
    files = list(recordings.files_for_cdr(cdr))
    played = recordings.with_presence(f for f in files if f.kind == StoredFile.Kind.RECORDING)
    for stored in played:
        stored.url = reverse("portal:call-recording", args=[cdr.pk, stored.pk])
    captured = any(f.kind == StoredFile.Kind.CAPTURE for f in files)
    page = context(
        peer,
        nav="cdrs",
        cdr=cdr,
        legs=legs if len(legs) > 1 else [],
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
