"""Bundles: the rater takes a covered call off its bundle before money, exactly once, and
call control lets a call last on what the bundle has left.

The world (tests/switching.py): Acme buys from Retail, United Kingdom (44) at 0.0150 a
minute and Germany (49) at 0.0200, billed per second, with 10.00 USD.
"""

import os
import subprocess
import sys
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry, RecurringFee, Reservation
from apps.billing.services import fees, rating, rerating
from apps.bundles.models import Bundle, Usage
from apps.bundles.services import catalogue
from apps.cdr.models import Cdr
from apps.core.errors import DomainError
from apps.invoicing import documents
from apps.invoicing.models import InvoiceLine
from apps.invoicing.services import invoices
from apps.rates.models import Rate
from tests.billing.test_rating import cdr
from tests.billing.test_rating_race import ROOT, database_url
from tests.billing.test_rerating import correct_price
from tests.factories import make_reseller
from tests.switching import BERLIN, SYSTEM, UK

CHARGE = LedgerEntry.Kind.CHARGE
ZERO_IP = "198.51.100.20"


def this_period_start():
    return timezone.localdate().replace(day=1)


def minutes_bundle(minutes=10, *, prefixes="44", destinations="", price="0", **kwargs) -> Bundle:
    return catalogue.create_bundle(
        actor=SYSTEM,
        name=f"{minutes} min",
        kind=Bundle.Kind.MINUTES,
        minutes=minutes,
        prefixes=prefixes,
        destinations=destinations,
        price=Decimal(price),
        **kwargs,
    )


def give(peer, bundle, starts_on=None):
    account = Account.objects.get(peer=peer)
    return catalogue.subscribe(account, bundle, actor=SYSTEM, starts_on=starts_on or this_period_start())


def charges(peer):
    return list(LedgerEntry.objects.filter(account__peer=peer, kind=CHARGE).values_list("amount", flat=True))


def usage(subscription) -> Usage:
    return Usage.objects.get(subscription=subscription)


def test_a_call_the_bundle_covers_wholly_costs_no_money(world):
    subscription = give(world.customer, minutes_bundle(10))
    call = cdr(world, seconds=90, callee=UK)

    rating.rate_batch()

    call.refresh_from_db()
    assert (call.sell_cost, call.bundle_seconds, call.bundle_money) == (0, 90, Decimal("0.0225"))
    assert call.bundle_usage == usage(subscription)
    assert charges(world.customer) == []
    period = usage(subscription)
    assert (period.included_seconds, period.used_seconds, period.calls) == (600, 90, 1)


def test_a_call_longer_than_what_is_left_pays_for_the_rest_of_its_seconds(world):
    subscription = give(world.customer, minutes_bundle(1))
    call = cdr(world, seconds=90, callee=UK)

    rating.rate_batch()

    call.refresh_from_db()
    # 90 s at 0.0150/min cost 0.0225; the bundle took 60 of the 90 billable seconds.
    assert (call.sell_cost, call.bundle_seconds) == (Decimal("0.0075"), 60)
    assert charges(world.customer) == [Decimal("-0.0075")]
    assert usage(subscription).left_seconds == 0
    following = cdr(world, seconds=30, callee=UK)
    rating.rate_batch()
    following.refresh_from_db()
    assert (following.sell_cost, following.bundle_seconds, following.bundle_usage) == (
        Decimal("0.0075"),
        0,
        None,
    )


def test_calls_to_destinations_the_bundle_does_not_name_are_charged_as_always(world):
    give(world.customer, minutes_bundle(10, prefixes="", destinations="United Kingdom"))
    uk, berlin = cdr(world, seconds=60, callee=UK), cdr(world, seconds=60, callee=BERLIN)

    rating.rate_batch()

    uk.refresh_from_db(), berlin.refresh_from_db()
    assert (uk.sell_cost, uk.bundle_seconds) == (0, 60)  # by the name its price list gives 44
    assert (berlin.sell_cost, berlin.bundle_seconds) == (Decimal("0.02"), 0)
    assert charges(world.customer) == [Decimal("-0.02")]


def test_a_money_bundle_pays_the_price_of_calls_until_it_is_spent(world):
    bundle = catalogue.create_bundle(
        actor=SYSTEM, name="1 cent", kind=Bundle.Kind.MONEY, money=Decimal("0.01"), prefixes="44"
    )
    subscription = give(world.customer, bundle)
    first, second = cdr(world, seconds=30, callee=UK), cdr(world, seconds=60, callee=UK)

    rating.rate_batch()

    first.refresh_from_db(), second.refresh_from_db()
    # 0.0075 covered wholly; then 0.015 of which 0.0025 was left
    assert (first.sell_cost, first.bundle_money) == (0, Decimal("0.0075"))
    assert (second.sell_cost, second.bundle_money) == (Decimal("0.0125"), Decimal("0.0025"))
    period = usage(subscription)
    assert (period.used_money, period.left_money, period.calls) == (Decimal("0.01"), 0, 2)


def test_rating_the_same_calls_again_takes_nothing_more_off_the_bundle(world):
    subscription = give(world.customer, minutes_bundle(10))
    cdr(world, seconds=90, callee=UK)
    rating.rate_batch()
    rating.requeue_errors()  # nothing in error: nothing put back

    assert rating.rate_batch().selected == 0
    assert usage(subscription).used_seconds == 90


def test_the_price_of_a_bundle_is_a_fee_of_the_account_charged_by_the_fee_task(world):
    bundle = minutes_bundle(100, price="5.00")
    subscription = give(world.customer, bundle)

    fee = RecurringFee.objects.get(pk=subscription.fee_id)
    assert (fee.amount, fee.period, fee.starts_on, fee.name) == (
        Decimal("5.00"),
        "monthly",
        this_period_start(),
        "Bundle 100 min",
    )
    fees.post_due_fees(timezone.localdate())
    fee_rows = LedgerEntry.objects.filter(account__peer=world.customer, kind=LedgerEntry.Kind.FEE)
    assert list(fee_rows.values_list("amount", flat=True)) == [Decimal("-5.00")]

    catalogue.update_bundle(bundle, actor=SYSTEM, changes={"price": Decimal("7.00")})
    fee.refresh_from_db()
    assert fee.amount == Decimal("7.00")  # from the next period not yet charged


def test_ending_a_subscription_ends_its_fee_and_cuts_what_the_period_includes(world):
    subscription = give(world.customer, minutes_bundle(100, price="5.00"))
    cdr(world, seconds=60, callee=UK)
    rating.rate_batch()
    start = this_period_start()

    catalogue.end_subscription(subscription, actor=SYSTEM, ends_on=start)

    fee = RecurringFee.objects.get(pk=subscription.fee_id)
    days = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - start
    assert fee.ends_on == start
    assert usage(subscription).included_seconds == 6000 // days.days


def test_a_sold_bundle_keeps_its_kind_and_period(world):
    bundle = minutes_bundle(10)
    give(world.customer, bundle)
    with pytest.raises(DomainError) as refused:
        catalogue.update_bundle(bundle, actor=SYSTEM, changes={"period": "daily"})
    assert refused.value.field == "period"


def test_an_account_takes_only_its_owners_bundles(world):
    reseller = make_reseller("Reseller B")
    theirs = minutes_bundle(10, reseller=reseller)
    with pytest.raises(DomainError, match="operator's bundles only"):
        give(world.customer, theirs)


def test_the_invoice_shows_what_bundles_covered_and_its_totals_stay_the_ledgers(world):
    Rate.objects.update(effective_from=F("effective_from") - timedelta(days=2))  # in force yesterday noon
    world.snapshot()
    yesterday = timezone.localdate() - timedelta(days=1)
    give(world.customer, minutes_bundle(1), starts_on=yesterday - timedelta(days=40))
    at = timezone.make_aware(datetime.combine(yesterday, time(12)))
    cdr(world, seconds=90, callee=UK, created_at=at, answered_at=at)
    cdr(world, seconds=60, callee=BERLIN, created_at=at, answered_at=at)
    rating.rate_batch()

    invoice = invoices.create_invoice(
        Account.objects.get(peer=world.customer), actor=SYSTEM, period_start=yesterday, period_end=yesterday
    )

    bundle_lines = invoice.lines.filter(kind=InvoiceLine.Kind.BUNDLE)
    assert [(x.description, x.calls, x.seconds, x.amount) for x in bundle_lines] == [
        ("1 min", 1, 60, Decimal("-0.015"))
    ]
    # The calls charged: UK's uncovered 30 s (0.0075) and Berlin (0.02); the bundle's worth is not money.
    assert invoice.charges == Decimal("-0.0275")
    assert "Included in bundles" in documents.render_html(invoice)


# --- call control -------------------------------------------------------------------------


def test_a_customer_without_money_calls_on_its_bundle_and_pays_nothing(world):
    zero = world.add_customer("Zero", ZERO_IP, balance="0")
    refused = world.call(UK, source_ip=ZERO_IP)
    assert (refused.code, refused.reason) == (402, "Insufficient funds")
    subscription = give(zero, minutes_bundle(2))

    decision = world.call(UK, source_ip=ZERO_IP)

    assert decision.routed, decision.steps
    assert (decision.max_duration, decision.amount) == (120, 0)
    held = Reservation.objects.get(pk=decision.reservation)
    assert (held.bundle_usage_id, held.bundle_seconds, held.amount) == (usage(subscription).pk, 120, 0)
    assert "bundle 2 min: 120 s left" in decision.steps[-1].detail
    # The whole bundle is held by that live call: a second call finds nothing left.
    second = world.call(UK, source_ip=ZERO_IP)
    assert (second.code, second.reason) == (402, "Insufficient funds")

    call = cdr(world, customer=zero, seconds=75, callee=UK, call_id=decision.request.call_id)
    rating.rate_batch()

    call.refresh_from_db(), held.refresh_from_db()
    assert (call.sell_cost, call.bundle_seconds) == (0, 75)
    assert held.outcome == Reservation.Outcome.RATED
    account = Account.objects.get(peer=zero)
    assert (account.balance, account.reserved) == (0, 0)
    assert usage(subscription).left_seconds == 45
    third = world.call(UK, source_ip=ZERO_IP)
    assert (third.routed, third.max_duration) == (True, 45)


def test_money_and_bundle_together_pay_a_call_longer_than_either(world):
    poor = world.add_customer("Poor", ZERO_IP, balance="0.015")  # one minute of UK
    give(poor, minutes_bundle(1))

    decision = world.call(UK, source_ip=ZERO_IP)

    assert decision.max_duration == 120
    assert decision.amount == Decimal("0.015")
    call = cdr(world, customer=poor, seconds=120, callee=UK, call_id=decision.request.call_id)
    rating.rate_batch()
    call.refresh_from_db()
    assert (call.sell_cost, call.bundle_seconds) == (Decimal("0.015"), 60)
    assert Account.objects.get(peer=poor).balance == 0


def test_a_customer_with_the_money_takes_the_short_way_and_the_rater_still_uses_the_bundle(world):
    subscription = give(world.customer, minutes_bundle(10))  # Acme has 10.00: a whole call's worth

    decision = world.call(UK)

    held = Reservation.objects.get(pk=decision.reservation)
    assert (held.bundle_usage_id, held.bundle_seconds, held.amount > 0) == (None, 0, True)
    call = cdr(world, seconds=90, callee=UK, call_id=decision.request.call_id)
    rating.rate_batch()
    call.refresh_from_db(), held.refresh_from_db()
    assert (call.sell_cost, call.bundle_seconds, held.outcome) == (0, 90, Reservation.Outcome.RATED)
    assert usage(subscription).used_seconds == 90
    assert Account.objects.get(peer=world.customer).reserved == 0


def test_a_subscription_that_has_ended_lends_no_seconds(world):
    zero = world.add_customer("Zero", ZERO_IP, balance="0")
    today = timezone.localdate()
    ended = give(zero, minutes_bundle(10), starts_on=today - timedelta(days=40))
    catalogue.end_subscription(ended, actor=SYSTEM, ends_on=today - timedelta(days=10))

    decision = world.call(UK, source_ip=ZERO_IP)

    assert (decision.code, decision.reason) == (402, "Insufficient funds")


def test_a_call_the_bundle_does_not_cover_is_decided_on_money_alone(world):
    zero = world.add_customer("Zero", ZERO_IP, balance="0")
    give(zero, minutes_bundle(10))
    decision = world.call(BERLIN, source_ip=ZERO_IP)
    assert (decision.code, decision.reason) == (402, "Insufficient funds")


# --- re-rating ----------------------------------------------------------------------------


def test_re_rating_keeps_what_the_bundle_covered_and_reprices_the_rest(world):
    give(world.customer, minutes_bundle(1))
    call = cdr(world, seconds=90, callee=UK)
    rating.rate_batch()
    correct_price(world, world.sell_table, "44", "0.0300")
    now = timezone.now()

    rerating.run(
        rerating.request_rerate(actor=SYSTEM, period_start=now - timedelta(days=1), period_end=now).pk
    )

    call.refresh_from_db()
    # 90 s at 0.0300 cost 0.045; the bundle's 60 s stay covered: 0.015 left to pay.
    assert (call.sell_cost, call.bundle_seconds) == (Decimal("0.015"), 60)
    spent = LedgerEntry.objects.filter(account__peer=world.customer).exclude(kind=LedgerEntry.Kind.PAYMENT)
    assert spent.aggregate(t=Sum("amount"))["t"] == Decimal("-0.015")


# --- exactly once, two raters racing ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_raters_racing_take_each_covered_second_once(world, tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers in one file; this race needs a server database")
    subscription = give(world.customer, minutes_bundle(100))  # 6,000 s for 600 calls of 1-20 s
    start = timezone.now() - timedelta(hours=1)
    Cdr.objects.bulk_create(
        Cdr(
            call_id=f"bundle-race-{i}@test",
            node=world.node,
            customer=world.customer,
            supplier=world.suppliers["Alpha"],
            callee=UK,
            created_at=start + timedelta(seconds=i),
            answered_at=start + timedelta(seconds=i),
            ended_at=start + timedelta(seconds=i + 20),
            duration_ms=1000 * (1 + i % 20),
            sip_code=200,
        )
        for i in range(600)
    )
    world.snapshot()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PREFIX_INDEX_DIR": str(settings.PREFIX_INDEX_DIR),
        "SMARTSWITCH_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
    }
    raters = [
        subprocess.Popen(
            [sys.executable, "manage.py", "rate_cdrs", "--batch", "25"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [rater.communicate(timeout=300) for rater in raters]
    assert [rater.returncode for rater in raters] == [0, 0], outputs

    calls = Cdr.objects.filter(call_id__startswith="bundle-race-")
    total = sum(1 + i % 20 for i in range(600))  # 6,300 s
    period = usage(subscription)
    covered = calls.aggregate(s=Sum("bundle_seconds"))["s"]
    assert (period.used_seconds, covered) == (6000, 6000)
    assert period.calls == calls.exclude(bundle_seconds=0).count()
    # What the bundle did not cover was charged, once per call: 300 s at 0.0150/min.
    charged = LedgerEntry.objects.filter(account__peer=world.customer, kind=CHARGE)
    assert charged.count() == calls.exclude(sell_cost=0).count()
    assert -charged.aggregate(t=Sum("amount"))["t"] == calls.aggregate(t=Sum("sell_cost"))["t"]
    assert total - covered == 300
