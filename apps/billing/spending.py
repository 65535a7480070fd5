"""What a customer has spent on calls today and this month, on its own clock (spend limits).

The rater keeps the counters on the account (apps.billing.services.ledger `_spending`);
a counter of an earlier day or month means nothing was spent since it turned, which is
what every page and the API show rather than the stale figure.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

ZERO = Decimal(0)


@dataclass(frozen=True)
class Spent:
    today: Decimal
    this_month: Decimal


def spent(account, *, now: datetime | None = None) -> Spent:
    """The account's spending of the current day and month in its peer's time zone."""
    try:
        zone = zoneinfo.ZoneInfo(account.peer.time_zone if account.peer_id else settings.TIME_ZONE)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        zone = zoneinfo.ZoneInfo("UTC")
    today = timezone.localtime(now or timezone.now(), zone).date()
    return Spent(
        account.spent_day if account.spent_day_of == today else ZERO,
        account.spent_month if account.spent_month_of == today.replace(day=1) else ZERO,
    )


def reseller_spent(reseller_id: int, *, now: datetime | None = None) -> Spent:
    """All the reseller's customers' spending today and this month, each on its own clock
    (the amounts are added as they are: the reseller's customers share its currency)."""
    from apps.billing.models import Account

    today = month = ZERO
    for account in Account.objects.filter(peer__reseller_id=reseller_id).select_related("peer"):
        found = spent(account, now=now)
        today, month = today + found.today, month + found.this_month
    return Spent(today, month)
