"""This period of each subscription, as the admin, the API and the portal show it.

A period's usage row is made when a call first uses it (apps.bundles.services.usage); until
then the period is shown from the offer, with nothing used. Read only: nothing here writes.
"""

from collections.abc import Iterable
from datetime import date

from django.utils import timezone

from apps.bundles.models import Bundle, Subscription, Usage
from apps.bundles.services.usage import offer_of
from apps.core.formatting import format_minutes, format_total


def today_of(subscription: Subscription) -> date:
    """Today on the customer's clock, which its periods are counted on."""
    return timezone.localdate(timezone=subscription.account.zone)


def current_usages(subscriptions: Iterable[Subscription]) -> dict[int, Usage | None]:
    """{subscription id: this period's usage (unsaved when no call used it yet), or None when
    the subscription is not in force today}, in one query.

    The subscriptions come with their bundle and account__peer (select_related).
    """
    subscriptions = list(subscriptions)
    periods = {}
    for subscription in subscriptions:
        offer = offer_of(subscription)
        day = today_of(subscription)
        if offer.in_force(day):
            periods[subscription.pk] = (offer, *offer.period_of(day))
    found = {}
    if periods:
        rows = Usage.objects.filter(
            subscription_id__in=list(periods), period_start__in={start for _, start, _ in periods.values()}
        )
        found = {(u.subscription_id, u.period_start): u for u in rows}
    current = {}
    for subscription in subscriptions:
        if subscription.pk not in periods:
            current[subscription.pk] = None
            continue
        offer, start, end = periods[subscription.pk]
        usage = found.get((subscription.pk, start))
        if usage is None:
            seconds, money = offer.included(start, end)
            usage = Usage(period_start=start, period_end=end, included_seconds=seconds, included_money=money)
        usage.subscription = subscription
        current[subscription.pk] = usage
    return current


def shown(usage: Usage, seconds: int, money) -> str:
    """An amount of `usage`'s period as its bundle counts: minutes:seconds, or money."""
    subscription = usage.subscription
    if subscription.bundle.kind == Bundle.Kind.MINUTES:
        return format_minutes(seconds)
    return format_total(money, subscription.account.currency)


def included(usage: Usage) -> str:
    return shown(usage, usage.included_seconds, usage.included_money)


def used(usage: Usage) -> str:
    return shown(usage, usage.used_seconds, usage.used_money)


def left(usage: Usage) -> str:
    return shown(usage, usage.left_seconds, usage.left_money)
