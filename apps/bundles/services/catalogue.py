"""The write services of bundles: the catalogue, and accounts' subscriptions to it.

A subscription's price is a recurring fee of the account (apps.billing.services.fees):
charged in advance each period, prorated when the subscription starts or ends within one,
on the ledger like every other fee. What a period includes is prorated the same way.
"""

import copy
from datetime import date
from decimal import Decimal

from apps.billing.models import Account
from apps.billing.services import fees
from apps.bundles.models import Bundle, Subscription, Usage
from apps.bundles.services.usage import offer_of
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.core.money import check_amount
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.tenancy.scope import Scope

BUNDLE_SETTINGS = ("name", "kind", "minutes", "money", "period", "price", "prefixes", "destinations")
# What decides the periods and the fee of subscriptions already sold: fixed once sold.
SOLD_FIELDS = ("kind", "period")


@retry_on_conflict
def create_bundle(*, actor: Scope, reseller=None, **settings) -> Bundle:
    """A bundle in the operator's catalogue, or in `reseller`'s (a reseller's is its own)."""
    reseller_id = getattr(reseller, "pk", None)
    if actor.is_reseller:
        reseller_id = actor.reseller_id
    ensure_manages(actor, reseller_id)
    bundle = apply_changes(Bundle(reseller_id=reseller_id), _checked(settings), allowed=BUNDLE_SETTINGS)
    save_object(bundle, actor=actor, action="bundle.created")
    announce("bundles.Bundle", [bundle.pk])
    return bundle


@retry_on_conflict
def update_bundle(bundle: Bundle, *, actor: Scope, changes: dict) -> Bundle:
    """Change a bundle. What periods include is fixed when each begins; a new price is
    charged from the next period not yet charged."""
    current = Bundle.objects.select_for_update().get(pk=bundle.pk)
    ensure_manages(actor, current.reseller_id)
    sold = current.subscriptions.exists()
    for name in SOLD_FIELDS:
        if sold and name in changes and changes[name] != getattr(current, name):
            raise DomainError(
                f"This bundle is sold: its {name} cannot change. Make a new bundle.", field=name
            )
    before = copy.copy(current)
    apply_changes(current, _checked(changes), allowed=BUNDLE_SETTINGS)
    save_object(current, actor=actor, action="bundle.changed")
    if current.price != before.price:
        for subscription in current.subscriptions.exclude(fee=None).select_related("fee"):
            fees.change_fee(subscription.fee, actor=actor, changes={"amount": current.price})
    announce("bundles.Bundle", [current.pk])
    return current


def _checked(settings: dict) -> dict:
    settings = dict(settings)
    for name in ("money", "price"):
        if settings.get(name) is not None:
            settings[name] = check_amount(settings[name], field=name, minimum=Decimal(0))
    return settings


@retry_on_conflict
def subscribe(
    account: Account, bundle: Bundle, *, actor: Scope, starts_on: date, ends_on=None
) -> Subscription:
    """Give `account` the bundle from `starts_on`; its price becomes a fee of the account."""
    ensure_manages(actor, account.owner_reseller_id)
    if account.peer_id is None:
        raise DomainError("Bundles are for customers' accounts.", field="account")
    if bundle.reseller_id != account.owner_reseller_id:
        owner = "its reseller's" if account.owner_reseller_id else "the operator's"
        raise DomainError(f"This account can have {owner} bundles only.", field="bundle")
    subscription = Subscription(account=account, bundle=bundle, starts_on=starts_on, ends_on=ends_on)
    subscription.full_clean()
    if bundle.price:
        subscription.fee = fees.add_fee(
            account,
            actor=actor,
            name=f"Bundle {bundle.name}"[:100],
            amount=bundle.price,
            period=bundle.period,
            starts_on=starts_on,
            ends_on=ends_on,
        )
    save_object(subscription, actor=actor, action="bundle.subscribed")
    announce("bundles.Subscription", [subscription.pk])
    return subscription


@retry_on_conflict
def end_subscription(subscription: Subscription, *, actor: Scope, ends_on: date) -> Subscription:
    """Stop the bundle after `ends_on`: its fee ends with it, and the periods from that day
    on include only their share of days (nothing for periods after it)."""
    # order_by(): the default ordering joins the account's (nullable) peer, which PostgreSQL
    # refuses to lock.
    rows = Subscription.objects.select_for_update().select_related("account", "bundle").order_by()
    current = rows.get(pk=subscription.pk)
    ensure_manages(actor, current.account.owner_reseller_id)
    current.ends_on = ends_on
    current.full_clean()
    if current.fee_id is not None:
        fees.end_fee(current.fee, actor=actor, ends_on=ends_on)
    save_object(current, actor=actor, action="bundle.ended")
    offer = offer_of(current)
    periods = Usage.objects.select_for_update().filter(subscription=current, period_end__gte=ends_on)
    for usage in periods.order_by("pk"):
        usage.included_seconds, usage.included_money = offer.included(usage.period_start, usage.period_end)
        usage.save(update_fields=["included_seconds", "included_money"])
    announce("bundles.Subscription", [current.pk])
    return current
