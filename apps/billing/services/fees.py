"""Recurring fees: which periods are due (pure), and posting each of them once (bookkeeping).

A fee is charged in advance: the period containing today is due on its first day. Every
period is posted with the reference "fee:<fee id>:<first day>", unique per account on the
ledger, so a task run twice, late, or on two nodes at once charges each period once.
"""

import calendar
import copy
import logging
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Concat
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry, RecurringFee
from apps.billing.services.ledger import Posting, post
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.core.money import check_amount, money
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.rates.tariffs import round_half_up
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)

FEE_SETTINGS = ("name", "amount", "period", "starts_on", "ends_on", "prorate", "enabled")
# What decides which days a period covers, and so its reference: frozen once charged.
SCHEDULE_FIELDS = ("starts_on", "period", "ends_on")
# References looked up per query; well under every backend's limit on bound parameters.
LOOKUP_CHUNK = 500


class FeePeriod(NamedTuple):
    """One charged stretch of a fee: its first and last day (cut) and what it costs."""

    first_day: date
    last_day: date
    amount: Decimal


# --- the pure part: no ORM, no clock -----------------------------------------------------


def periods_due(fee: RecurringFee, today: date) -> list[FeePeriod]:
    """The periods of `fee` due by `today`: from starts_on to the period containing today.

    A monthly period is a calendar month, a daily one a day; both are cut by starts_on and
    ends_on. A cut monthly period costs amount * charged days / days in the month, rounded
    once, when the fee prorates; otherwise the full amount.
    """
    last_due = today if fee.ends_on is None else min(today, fee.ends_on)
    periods = []
    first_day = fee.starts_on
    while first_day <= last_due:
        period_start, period_end = period_around(fee.period, first_day)
        last_day = period_end if fee.ends_on is None else min(period_end, fee.ends_on)
        charged = (last_day - first_day).days + 1
        whole = (period_end - period_start).days + 1
        periods.append(FeePeriod(first_day, last_day, _period_amount(fee, charged, whole)))
        first_day = period_end + timedelta(days=1)
    return periods


def period_around(period: str, day: date) -> tuple[date, date]:
    if period == RecurringFee.Period.DAILY:
        return day, day
    if period == RecurringFee.Period.MONTHLY:
        days = calendar.monthrange(day.year, day.month)[1]
        return day.replace(day=1), day.replace(day=days)
    raise ValueError(f"Unknown fee period {period!r}.")


def _period_amount(fee: RecurringFee, charged: int, whole: int) -> Decimal:
    amount = money(fee.amount)
    if charged == whole or not fee.prorate:
        return amount
    # Rounded once from the exact share: amount * days / 31 has no finite decimal expansion.
    return money(round_half_up(Fraction(amount) * charged / whole))


def fee_reference(fee: RecurringFee, first_day: date) -> str:
    """The ledger reference of the period of `fee` that starts on `first_day`."""
    return f"fee:{fee.pk}:{first_day.isoformat()}"


def _describe(fee: RecurringFee, period: FeePeriod) -> str:
    if period.first_day == period.last_day:
        return f"{fee.name}, {period.first_day}"
    return f"{fee.name}, {period.first_day} to {period.last_day}"


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# --- reading what was posted ---------------------------------------------------------------


def last_posted_day(fee: RecurringFee) -> date | None:
    """The first day of the latest period of `fee` on the ledger, or None."""
    prefix = f"fee:{fee.pk}:"
    # ISO dates sort as strings, and the prefix pins the fee ("fee:1:" never matches "fee:12:").
    reference = (
        LedgerEntry.objects.filter(
            account_id=fee.account_id, kind=LedgerEntry.Kind.FEE, reference__startswith=prefix
        )
        .order_by("-reference")
        .values_list("reference", flat=True)
        .first()
    )
    return date.fromisoformat(reference.removeprefix(prefix)) if reference else None


def with_last_posted(fees):
    """Annotate a fee queryset with `last_posted_reference`, in the same query."""
    latest = (
        LedgerEntry.objects.filter(
            account_id=OuterRef("account_id"),
            kind=LedgerEntry.Kind.FEE,
            reference__startswith=Concat(Value("fee:"), OuterRef("pk"), Value(":"), output_field=CharField()),
        )
        .order_by("-reference")
        .values("reference")[:1]
    )
    return fees.annotate(last_posted_reference=Subquery(latest))


def day_of_reference(reference: str | None) -> date | None:
    """The first day named by a fee reference "fee:<id>:<day>", or None."""
    return date.fromisoformat(reference.rsplit(":", 1)[1]) if reference else None


# --- posting -------------------------------------------------------------------------------


def post_due_fees(today: date | None = None) -> int:
    """Post every due period of the enabled fees not posted yet; return the rows written.

    The scheduled task. Missed periods (a node down, a fee added late, a fee enabled
    again) are caught up. Each account's fees are posted in one transaction that holds
    the account's row lock, so the fee rows read are the ones a concurrent change_fee
    left; an account that fails is logged and the others are still posted.
    """
    today = today or timezone.localdate()
    fees = list(_chargeable_fees(today))
    pending = _unposted(fees, today)
    written, failed = 0, []
    for account_id in sorted(pending):
        try:
            written += _post_account_fees(account_id, today)
        except Exception:
            # One account's conflict (a fee changed while another node posted it) must not
            # hold back every other account's fees; the next run tries it again.
            logger.exception("Recurring fees of account %s were not posted", account_id)
            failed.append(account_id)
    logger.info(
        "Recurring fees for %s: %d ledger rows written on %d of %d accounts with due periods "
        "(%d enabled fees checked)",
        today,
        written,
        len(pending) - len(failed),
        len(pending),
        len(fees),
    )
    if failed:
        logger.error("Recurring fees for %s: accounts not posted: %s", today, failed)
    return written


def _chargeable_fees(today: date):
    return (
        RecurringFee.objects.filter(enabled=True, account__peer__enabled=True, starts_on__lte=today)
        .only("pk", "account_id", "name", "amount", "period", "starts_on", "ends_on", "prorate")
        .order_by("account_id", "pk")
    )


def _unposted(fees: list[RecurringFee], today: date) -> dict[int, list[Posting]]:
    """{account id: postings} of the due periods of `fees` whose reference is not on the ledger."""
    due = [
        Posting(
            account_id=fee.account_id,
            kind=LedgerEntry.Kind.FEE,
            amount=-period.amount,
            reference=fee_reference(fee, period.first_day),
            description=_describe(fee, period),
            occurred_at=_start_of(period.first_day),
        )
        for fee in fees
        for period in periods_due(fee, today)
    ]
    posted: set[tuple[int, str]] = set()
    for start in range(0, len(due), LOOKUP_CHUNK):
        chunk = due[start : start + LOOKUP_CHUNK]
        posted.update(
            LedgerEntry.objects.filter(
                kind=LedgerEntry.Kind.FEE,
                account_id__in={p.account_id for p in chunk},
                reference__in=[p.reference for p in chunk],
            ).values_list("account_id", "reference")
        )
    pending: dict[int, list[Posting]] = defaultdict(list)
    for posting in due:
        if (posting.account_id, posting.reference) not in posted:
            pending[posting.account_id].append(posting)
    return pending


@retry_on_conflict
def _post_account_fees(account_id: int, today: date) -> int:
    # Lock first, then read the fees: change_fee takes the same lock before it checks what
    # was charged, so a period is never posted from a fee row that a change just replaced.
    # post() takes the lock again (a no-op) and skips any reference another node wrote.
    list(Account.objects.select_for_update().filter(pk=account_id).order_by().values_list("pk"))
    fees = list(_chargeable_fees(today).filter(account_id=account_id))
    postings = _unposted(fees, today).get(account_id, [])
    return sum(created for _, created in post(postings))


# --- the write services --------------------------------------------------------------------


@retry_on_conflict
def add_fee(
    account: Account,
    *,
    actor: Scope,
    name: str,
    amount: Decimal,
    period: str,
    starts_on: date,
    ends_on: date | None = None,
    prorate: bool = True,
) -> RecurringFee:
    """Charge `account` `amount` every period from `starts_on` (through `ends_on`, when given)."""
    ensure_manages(actor, account.owner_reseller_id)
    fee = RecurringFee(
        account=account,
        name=name,
        amount=check_amount(amount, field="amount"),
        period=period,
        starts_on=starts_on,
        ends_on=ends_on,
        prorate=prorate,
    )
    return save_object(fee, actor=actor, action="fee.added")


@retry_on_conflict
def change_fee(fee: RecurringFee, *, actor: Scope, changes: dict) -> RecurringFee:
    """Change a fee's settings; new amounts apply to periods not yet charged.

    Refused when the change would alter the days of a period already charged (its start,
    period or end): that period would be charged again under another reference.
    """
    return _change(fee, actor=actor, changes=changes, action="fee.changed")


@retry_on_conflict
def end_fee(fee: RecurringFee, *, actor: Scope, ends_on: date) -> RecurringFee:
    """Stop charging `fee` after `ends_on`, the last day charged."""
    return _change(fee, actor=actor, changes={"ends_on": ends_on}, action="fee.ended")


def _change(fee: RecurringFee, *, actor: Scope, changes: dict, action: str) -> RecurringFee:
    # The account's lock first, as post_due_fees takes it: no period of this fee is posted
    # between the check below and the commit.
    owner_id, account_id = (
        RecurringFee.objects.filter(pk=fee.pk).values_list("account__peer__reseller_id", "account_id").get()
    )
    ensure_manages(actor, owner_id)
    list(Account.objects.select_for_update().filter(pk=account_id).order_by().values_list("pk"))
    current = RecurringFee.objects.select_for_update().get(pk=fee.pk)
    before = copy.copy(current)
    if "amount" in changes and changes["amount"] is not None:
        changes = {**changes, "amount": check_amount(changes["amount"], field="amount")}
    apply_changes(current, changes, allowed=FEE_SETTINGS)
    # Validated (and converted: dates given as strings) before the schedules are compared.
    current.full_clean()
    _keep_charged_periods(before, current, changes)
    return save_object(current, actor=actor, action=action)


def _keep_charged_periods(before: RecurringFee, after: RecurringFee, changes: dict) -> None:
    """Refuse a change that moves the days of a period already on the ledger."""
    if not any(name in changes for name in SCHEDULE_FIELDS):
        return
    last_posted = last_posted_day(before)
    if last_posted is None:
        return
    charged = [(p.first_day, p.last_day) for p in periods_due(before, last_posted)]
    if charged == [(p.first_day, p.last_day) for p in periods_due(after, last_posted)]:
        return
    through = charged[-1][1] if charged else last_posted
    field = next((name for name in ("ends_on", "starts_on", "period") if name in changes), None)
    raise DomainError(
        f"This fee is charged through {through}, and charged periods cannot change: "
        f"end it on or after {through}, or add a new fee for other days. "
        "Correct past charges with an adjustment.",
        field=field,
    )
