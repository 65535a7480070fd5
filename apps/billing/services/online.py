"""Online billing: end live calls that their account can no longer pay for.

Call control reserves a call's money before it starts, so an account's available money
(balance, plus credit when postpaid, minus what its live calls hold) is normally zero or
more. It goes negative while calls are up when money leaves by another path: a refund, a
debit adjustment, a fee, another call's charge. Those calls would overrun; this module
ends as few of them as it takes, newest first, through their node's OpenSIPS.

A cut call keeps its money reserved until its CDR is rated (the CDR says what it really
cost), but from the moment it is cut it counts only for what it used until then: its
amount times the share of its granted seconds that had passed, rounded up. That is what
makes a run converge: the calls left up fit the money, and the next run cuts nothing new.
Elapsed time is counted from the reservation (call setup, before answer), so the estimate
errs on the side of the account.

One query finds the accounts whose available money is negative and that have live calls;
when there is none, that is all a run does. A second query reads those accounts' live
calls; everything else is decided in memory, then each chosen call is cut.
"""

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from itertools import groupby

from django.conf import settings
from django.db.models import Case, ExpressionWrapper, F, Value, When
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import Account, Reservation
from apps.core.db import retry_on_conflict
from apps.core.models import MoneyField
from apps.core.money import MONEY_QUANTUM, ZERO
from engines import EngineError
from engines.opensips.mi import DialogEnd, MIClient, MIUnavailable, url_for

logger = logging.getLogger(__name__)

ENDED = DialogEnd.ENDED.value  # the engine ended the call
GONE = DialogEnd.GONE.value  # the engine no longer knew the call: it was over already
ERROR_PREFIX = "error: "  # the engine refused; the text follows
# A call claimed for cutting whose result is still blank after this long was claimed by a
# run that died before it could record what the engine said: it may still be up, so it
# counts again for its whole amount (it is not asked to end twice; newer calls go first).
STALE_CLAIM = timedelta(minutes=1)
RESULT_LENGTH = Reservation._meta.get_field("cut_result").max_length


@dataclass(frozen=True, slots=True)
class CutReport:
    """What one run did.

    accounts_over: accounts whose live calls overran their money when the run began;
    cut: calls the engine ended; gone: calls the engine no longer knew (already over);
    failed: calls the engine refused to end (recorded) or whose engine was unreachable
    (left for the next run).
    """

    accounts_over: int = 0
    cut: int = 0
    gone: int = 0
    failed: int = 0


def used_so_far(amount: Decimal, max_duration: int, elapsed: timedelta) -> Decimal:
    """The share of a call's reserved `amount` its first `elapsed` used, rounded up."""
    if max_duration <= 0:
        return amount
    seconds = min(max(math.ceil(elapsed.total_seconds()), 0), max_duration)
    return (amount * seconds / max_duration).quantize(MONEY_QUANTUM, rounding=ROUND_CEILING)


def spending(call: Reservation, now: datetime) -> Decimal:
    """What a live call counts against its account's money now."""
    if call.cut_at is None:
        return call.amount
    stopped = call.cut_result in (ENDED, GONE) or (not call.cut_result and now - call.cut_at < STALE_CLAIM)
    if stopped:
        return used_so_far(call.amount, call.max_duration, call.cut_at - call.created_at)
    return call.amount  # the engine refused to end it, or the run that tried died


def choose_cuts(spendable: Decimal, calls: Iterable[Reservation], now: datetime) -> tuple[bool, list]:
    """(whether the calls overrun `spendable`, the calls to end so that the rest fit).

    Newest first: the calls that have used the least are cut, the long-running ones that
    the account paid for when they started are kept. Calls already tried and calls with
    no node to end them on are never chosen; they count as they stand.
    """
    calls = list(calls)
    total = sum((spending(call, now) for call in calls), ZERO)
    over = total > spendable
    chosen = []
    candidates = sorted(
        (call for call in calls if call.cut_at is None and call.node_id is not None),
        key=lambda call: (call.created_at, call.pk),
        reverse=True,
    )
    for call in candidates:
        if total <= spendable:
            break
        total -= call.amount - used_so_far(call.amount, call.max_duration, now - call.created_at)
        chosen.append(call)
    return over, chosen


def _available_money():
    credit = Case(
        When(mode=Account.Mode.POSTPAID, then=F("credit_limit")),
        default=Value(ZERO),
        output_field=MoneyField(),
    )
    return ExpressionWrapper(F("balance") + credit - F("reserved"), output_field=MoneyField())


def _overruns(now: datetime) -> list[tuple[bool, list[Reservation]]]:
    """Per account with negative available money and live calls: (overrun, calls to cut)."""
    # No index serves this filter: it scans the accounts table, which is small next to the
    # calls (and reserved > 0 drops at once the accounts in debt with no call up).
    accounts = {
        account.pk: account
        for account in Account.objects.alias(available=_available_money())
        .filter(available__lt=0, reserved__gt=0)
        .only("pk", "mode", "balance", "credit_limit")
        .order_by()
    }
    if not accounts:
        return []
    live = (
        Reservation.objects.active()
        .filter(account_id__in=accounts)
        .select_related("node", "customer")
        .order_by("account_id", "-created_at", "-id")
    )
    return [
        choose_cuts(accounts[account_id].spendable, calls, now)
        for account_id, calls in groupby(live, key=lambda call: call.account_id)
    ]


def calls_to_cut(now: datetime | None = None) -> list[Reservation]:
    """The live calls to end now so that every account's remaining calls fit its money."""
    now = now or timezone.now()
    return [call for _over, chosen in _overruns(now) for call in chosen]


@retry_on_conflict
def claim_cut(reservation_id: int, now: datetime) -> bool:
    """Take a live call to end it; False when another run (or fraud control) already has it."""
    return (
        Reservation.objects.filter(pk=reservation_id, cut_at__isnull=True, released_at__isnull=True).update(
            cut_at=now, cut_result=""
        )
        == 1
    )


@retry_on_conflict
def unclaim_cut(reservation_id: int) -> None:
    """Give a claimed call back (its node could not be asked): a later run tries again."""
    Reservation.objects.filter(pk=reservation_id, cut_result="").update(cut_at=None)


@retry_on_conflict
def record_cut(call: Reservation, result: str) -> None:
    """Write what ending the call gave (the node's answer or the error), audited."""
    call.cut_result = result[:RESULT_LENGTH]
    Reservation.objects.filter(pk=call.pk).update(cut_result=call.cut_result)
    audit.record(
        None, "reservation.cut", call, call_id=call.call_id, node=call.node.name, result=call.cut_result
    )


def cut_overruns(now: datetime | None = None) -> CutReport:
    """End the live calls that their account can no longer pay for, newest first; report."""
    now = now or timezone.now()
    overruns = _overruns(now)
    accounts_over = sum(over for over, _chosen in overruns)
    cut = gone = failed = 0
    unreachable: set[int] = set()  # nodes found down in this run: not asked again until the next
    for call in (call for _over, chosen in overruns for call in chosen):
        node = call.node
        if node.pk in unreachable:
            failed += 1
            continue
        client = MIClient(
            url_for(settings.OPENSIPS_MI_URL, node.management_address), settings.OPENSIPS_MI_TIMEOUT
        )
        # Claim, then ask the engine, then record its answer, each in its own short
        # transaction (never around the engine call). The claim is a conditional update
        # (cut_at still empty): of two runs racing on one call, on one node or two, only
        # one gets the row and asks the engine, so a call is never cut twice, and the
        # attempt is on record before the BYEs go out, so a run that dies in between
        # leaves the call marked as tried rather than forgotten. Asking the engine first
        # and writing the row after would lose both guarantees.
        if not claim_cut(call.pk, now):
            continue  # rated or claimed by another run since we read it
        try:
            outcome = client.end_dialog(call.call_id)
        except MIUnavailable as exc:
            # Nothing is known to have happened: give the claim back so the next run tries
            # again. If the request did reach OpenSIPS and only its answer was lost, that
            # next try hears 404 and records the call as gone.
            unclaim_cut(call.pk)
            unreachable.add(node.pk)
            failed += 1
            logger.warning(
                "online billing: node %s unreachable, call %s of %s left for the next run: %s",
                node.name,
                call.call_id,
                call.customer,
                exc,
            )
            continue
        except EngineError as exc:
            record_cut(call, f"{ERROR_PREFIX}{exc}")
            failed += 1
            logger.warning(
                "online billing: node %s refused to end call %s of %s: %s",
                node.name,
                call.call_id,
                call.customer,
                exc,
            )
            continue
        except Exception:
            unclaim_cut(call.pk)
            raise
        record_cut(call, outcome.value)
        if outcome is DialogEnd.ENDED:
            cut += 1
        else:
            gone += 1
        logger.info(
            "online billing: call %s of %s on node %s %s", call.call_id, call.customer, node.name, outcome
        )
    return CutReport(accounts_over=accounts_over, cut=cut, gone=gone, failed=failed)
