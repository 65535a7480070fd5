"""Money: the customer's balance, its ledger (call charges summed per day) with filters and
export, and its low-balance warning settings, changed through apps.billing's update_account."""

from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum
from django.db.models.functions import TruncHour
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from apps.billing.models import LedgerEntry
from apps.billing.services.ledger import update_account
from apps.core.errors import DomainError, NotAllowed
from apps.core.exports import FORMATS, export_response, keyset_chunks
from apps.portal.forms import LedgerFilterForm, NotificationSettingsForm
from apps.portal.views.calls import KeysetPage, keyset_page
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope

ENTRIES_PER_PAGE = 25
# Call charges per day are shown for at most this many days back from the range's end:
# a customer looking further picks a range.
CHARGE_DAYS = 31
EXPORT_COLUMNS = ("occurred_at", "kind", "amount", "description", "reference", "cdr__call_id")


@dataclass
class DayOfCharges:
    day: date
    calls: int
    total: Decimal


def charges_per_day(charges, zone) -> list[DayOfCharges]:
    """Call charges summed per day of `zone`, newest day first.

    Summed per UTC hour in SQL, then folded into the customer's days here: truncating in
    another time zone needs MariaDB's time zone tables, which a stock server lacks (it then
    answers NULL), while a UTC hour is plain arithmetic on every database. A month is at
    most 744 rows. In the few zones offset by a half or quarter hour, the charges of the
    hour that straddles midnight count toward the day that hour starts in.
    """
    hours = (
        charges.annotate(hour=TruncHour("occurred_at", tzinfo=UTC))
        .values("hour")
        .annotate(total=Sum("amount"), calls=Count("id"))
        .order_by()
    )
    days: dict[date, DayOfCharges] = {}
    for row in hours:
        day = timezone.localtime(row["hour"], zone).date()
        found = days.setdefault(day, DayOfCharges(day, 0, Decimal(0)))
        found.calls += row["calls"]
        found.total += row["total"] or 0
    return sorted(days.values(), key=lambda d: d.day, reverse=True)


def _entries(scope: Scope, account):
    # visible_to first: the account is the customer's own, and the scope says so again.
    return LedgerEntry.objects.visible_to(scope).filter(account=account)


def _filtered(entries, form: LedgerFilterForm):
    start, end = form.bounds()
    if start is not None:
        entries = entries.filter(occurred_at__gte=start)
    if end is not None:
        entries = entries.filter(occurred_at__lt=end)
    if form.cleaned_data.get("kind"):
        entries = entries.filter(kind=form.cleaned_data["kind"])
    return entries


@never_cache
@customer_required
def money(request, scope: Scope):
    """Balance, ledger and warning settings; POST saves the settings, ?format= exports."""
    peer = customer(scope)
    page = context(peer, nav="money")
    account = page["account"]
    if account is None:
        return render(request, "portal/money.html", page)
    zone = peer.zone
    form = LedgerFilterForm(request.GET, zone=zone)
    settings_form = NotificationSettingsForm(
        request.POST if request.method == "POST" else None,
        initial={
            "low_balance_threshold": account.low_balance_threshold,
            "notification_email": account.notification_email,
        },
    )
    if request.method == "POST" and save_settings(request, scope, account, settings_form):
        messages.success(request, _("Your warning settings are saved."))
        return redirect(request.get_full_path())

    entries = _entries(scope, account)
    itemised = False
    days, listed = [], KeysetPage([])
    if form.is_valid():
        entries = _filtered(entries, form)
        fmt = request.GET.get("format")
        if fmt in FORMATS:
            return export_ledger(request, entries, fmt, currency=account.currency)
        kind = form.cleaned_data["kind"]
        itemised = form.cleaned_data["itemised"] or kind not in ("", LedgerEntry.Kind.CHARGE)
        if itemised:
            listed = keyset_page(entries, request, key="occurred_at", size=ENTRIES_PER_PAGE)
        else:
            charges = entries.filter(kind=LedgerEntry.Kind.CHARGE)
            start, end = form.bounds()
            last = end or timezone.now()
            recent = last - timedelta(days=CHARGE_DAYS)
            days = charges_per_day(
                charges.filter(occurred_at__gte=max(start, recent) if start else recent), zone
            )
            if kind != LedgerEntry.Kind.CHARGE:
                others = entries.exclude(kind=LedgerEntry.Kind.CHARGE)
                listed = keyset_page(others, request, key="occurred_at", size=ENTRIES_PER_PAGE)
    query = request.GET.copy()
    for name in ("after", "before", "format"):
        query.pop(name, None)
    page.update(
        form=form,
        settings_form=settings_form,
        itemised=itemised,
        days=days,
        days_total=sum((d.total for d in days), Decimal(0)),
        charge_days=CHARGE_DAYS,
        page_obj=listed,
        filters_query=query.urlencode(),
        filtered=any(value for value in query.values()),
        zone=zone,
    )
    return render(request, "portal/money.html", page)


def save_settings(request, scope: Scope, account, form: NotificationSettingsForm) -> bool:
    """Hand the changed settings to update_account; its refusals land on their fields."""
    if not form.is_valid():
        return False
    changes = {name: value for name, value in form.cleaned_data.items() if name in form.changed_data}
    if not changes:
        return True
    try:
        update_account(account, actor=scope, changes=changes)
    except ValidationError as exc:  # the model's clean(), run by the service's full_clean()
        for name, errors in exc.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
        return False
    except NotAllowed:
        form.add_error(None, _("Your provider keeps these settings for you; please ask them to change them."))
        return False
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return False
    return True


def export_ledger(request, entries, fmt: str, *, currency: str):
    """The filtered ledger, itemised, read in keyset chunks however long it is."""
    labels = dict(LedgerEntry.Kind.choices)
    header = [_("Date"), _("Kind"), _("Amount"), _("Currency"), _("Description"), _("Reference"), _("Call")]

    def rows(chunks):
        for chunk in chunks:
            yield [
                [occurred, labels.get(kind, kind), amount, currency, description, reference, call_id]
                for occurred, kind, amount, description, reference, call_id in chunk
            ]

    return export_response(
        request,
        fmt,
        filename=f"ledger-{timezone.localdate():%Y%m%d}",
        header=header,
        chunks=rows(keyset_chunks(entries, "occurred_at", EXPORT_COLUMNS)),
        title=_("Ledger"),
    )


urlpatterns = [path("money/", money, name="money")]
