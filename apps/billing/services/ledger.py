"""The only write path for money: accounts, postings and the balance cache."""

# ruff: noqa: S608 - table and column names come from the models; every value is a parameter.

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache

from django.db import OperationalError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.billing import notify
from apps.billing.models import Account, LedgerEntry
from apps.core.changes import announce
from apps.core.db import insert_rows, retry_on_conflict
from apps.core.errors import Conflict, DomainError, NotAllowed, OutOfRange
from apps.core.models import money_to_db
from apps.core.money import (
    MAX_BALANCE,
    MAX_CREDIT_LIMIT,
    MONEY_QUANTUM,
    STORAGE_LIMIT,
    ZERO,
    balance_in_range,
    check_amount,
    shown,
)
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.tenancy.scope import Scope

ACCOUNT_SETTINGS = (
    "mode",
    "credit_limit",
    "low_balance_threshold",
    "notification_email",
    "daily_spend_limit",
    "monthly_spend_limit",
    "invoice_period",
    "tax_rate",
    "invoice_language",
)
# What one ledger row can hold at all (DECIMAL(20, 6)); the balance bound does the rest.
STORABLE = STORAGE_LIMIT - MONEY_QUANTUM


class BalanceOutOfRange(OutOfRange):
    """Postings that would take these accounts' balances past +-MAX_BALANCE (none is written)."""

    def __init__(self, message: str, *, account_ids: list[int]) -> None:
        super().__init__(message, field="amount")
        self.account_ids = account_ids


@dataclass(frozen=True)
class Posting:
    """A ledger row to write: the service layer's unit of money movement."""

    account_id: int
    kind: str
    amount: Decimal
    reference: str | None = None
    cdr_id: int | None = None
    description: str = ""
    occurred_at: datetime | None = None


@retry_on_conflict
def open_account(
    peer,
    *,
    actor: Scope,
    currency: str,
    mode: str = Account.Mode.PREPAID,
    credit_limit: Decimal = ZERO,
    low_balance_threshold: Decimal | None = None,
) -> Account:
    """Open the one account of `peer` with a zero balance."""
    return _opened(
        Account(
            peer=peer, currency=currency, mode=mode, low_balance_threshold=_threshold(low_balance_threshold)
        ),
        credit_limit,
        actor,
    )


def _opened(account: Account, credit_limit: Decimal, actor: Scope) -> Account:
    account.credit_limit = check_amount(credit_limit, field="credit_limit", maximum=MAX_CREDIT_LIMIT)
    save_object(account, actor=actor, action="account.opened")
    announce("billing.Account", [account.pk])
    return account


@retry_on_conflict
def open_reseller_account(
    reseller,
    *,
    actor: Scope,
    rate_table_id: int,
    mode: str = Account.Mode.POSTPAID,
    credit_limit: Decimal = ZERO,
) -> Account:
    """Open `reseller`'s account with the operator (operator only), charged for its customers'
    calls at the prices of `rate_table_id` (an operator's sell list in the reseller's
    currency); its money then bounds what those customers may spend together."""
    from apps.rates.models import RateTable
    from apps.tenancy.models import Reseller

    ensure_manages(actor, None)
    reseller = Reseller.objects.select_for_update().get(pk=reseller.pk)
    if Account.objects.filter(reseller=reseller).exists():
        raise DomainError(f"{reseller} has an account already.")
    table = RateTable.objects.filter(
        pk=rate_table_id, reseller__isnull=True, purpose=RateTable.Purpose.SELL
    ).first()
    if table is None:
        raise DomainError("Choose one of the operator's sell price lists.", field="rate_table_id")
    if table.currency != reseller.currency:
        raise DomainError(
            f"The price list is in {table.currency}, the reseller in {reseller.currency}.",
            field="rate_table_id",
        )
    reseller.rate_table = table
    save_object(reseller, actor=actor, action="reseller.priced")
    account = _opened(Account(reseller=reseller, currency=reseller.currency, mode=mode), credit_limit, actor)
    announce("tenancy.Reseller", [reseller.pk])
    return account


# What a customer may set on its own account (the portal's Money page).
CUSTOMER_ACCOUNT_SETTINGS = frozenset({"low_balance_threshold", "notification_email"})


@retry_on_conflict
def update_account(account: Account, *, actor: Scope, changes: dict) -> Account:
    """Change an account's mode, limits, warning or invoicing settings; never its balance.

    A customer may change its own low-balance warning (threshold and e-mail), nothing else.
    """
    if actor.is_customer:
        if actor.peer_id != account.peer_id:
            raise NotAllowed("You cannot change objects of another owner.")
        refused = set(changes) - CUSTOMER_ACCOUNT_SETTINGS
        if refused:
            raise NotAllowed(f"Your provider keeps these settings: {', '.join(sorted(refused))}.")
    else:
        ensure_manages(actor, account.owner_reseller_id)
    current = Account.objects.select_for_update().get(pk=account.pk)
    changes = _bounded_settings(changes)
    apply_changes(current, changes, allowed=ACCOUNT_SETTINGS)
    save_object(current, actor=actor, action="account.changed")
    # Call control holds which account is whose and which prepaid suppliers are out of money.
    announce("billing.Account", [current.pk], fields=changes)
    return current


def _threshold(value) -> Decimal | None:
    return None if value is None else check_amount(value, field="low_balance_threshold")


def _bounded_settings(changes: dict) -> dict:
    """`changes` with the credit limit and threshold checked against the bounds, as money."""
    changes = dict(changes)
    if changes.get("credit_limit") is not None:
        changes["credit_limit"] = check_amount(
            changes["credit_limit"], field="credit_limit", maximum=MAX_CREDIT_LIMIT
        )
    if "low_balance_threshold" in changes:
        changes["low_balance_threshold"] = _threshold(changes["low_balance_threshold"])
    for name in ("daily_spend_limit", "monthly_spend_limit"):
        if changes.get(name) is not None:
            changes[name] = check_amount(changes[name], field=name, maximum=MAX_BALANCE)
    return changes


@retry_on_conflict
def post(postings: list[Posting], *, actor: Scope | None = None) -> list[tuple[LedgerEntry, bool]]:
    """Write `postings` and move the balances by their sums; return (entry, created) for each.

    A posting whose (account, kind, reference) exists already is not written again: the
    stored entry comes back with created=False, or Conflict is raised when its amount
    differs. Each account is written once per batch, in one statement for all of them, in
    account order, which keeps concurrent batches from deadlocking each other and keeps
    Galera write-sets small (one row per account, however many charges the batch holds).

    A batch that would take a balance past +-MAX_BALANCE (or one already past it further
    out) is refused whole with BalanceOutOfRange, before anything is written: the balances
    are read under the same locks that serialise every posting on those accounts.
    """
    if not postings:
        return []
    account_ids = sorted({p.account_id for p in postings})
    # Lock the accounts, in one order, before looking for earlier postings: concurrent
    # posters on one server queue here instead of racing to the unique index; on Galera
    # the loser fails certification at commit and the retry replays the batch, which then
    # finds the winner's rows.
    balances = _lock_accounts(account_ids)
    results, fresh, totals = _entries(postings, actor)
    _check_balances(balances, totals)
    now = timezone.now()
    _insert_entries(fresh, now)
    _write_accounts(totals, _spending(fresh), {})
    _track_low_balances(sorted(totals))
    return results


def post_rated(postings: list[Posting], *, released: dict[int, Decimal]) -> list[tuple[LedgerEntry, bool]]:
    """The rater's `post`: the entries first, then every account's whole change (balance,
    spending counters, the money of the batch's closed reservations, `released`) by one
    statement, which the caller's commit follows at once.

    Every call of a busy customer writes its account row when it is authorized, and waits
    while another transaction holds it (reservations.LOCK ORDER): here that is one
    statement's time, where reading the balances under lock and then writing them held the
    row for several round trips of a worker that runs at a low CPU priority (issue 13). The
    caller holds what makes the references unique by other means (the rater holds its
    CDRs' rows). The balance bounds are checked by the statement itself: a batch that would
    take a balance out of range is undone to before the statement and refused whole with
    BalanceOutOfRange, as `post` refuses it.
    """
    if not postings and not released:
        return []
    results, fresh, totals = _entries(postings, None)
    _insert_entries(fresh, timezone.now())
    account_ids = sorted(set(totals) | set(released))
    # What the statement needs but does not change, read without a lock: the customers'
    # clocks (spending counters) and which accounts watch their balance.
    zones, watched = _account_facts(account_ids)
    spending = _spending(fresh, zones)
    before = transaction.savepoint()
    if _write_accounts(totals, spending, released) != len(account_ids):
        transaction.savepoint_rollback(before)
        _check_balances(_lock_accounts(account_ids), totals)  # raises BalanceOutOfRange
        raise RuntimeError(f"Accounts {account_ids} changed under the rater; the batch is retried.")
    # A threshold set since the read above is checked by the account's next posting.
    _track_low_balances(sorted(set(totals) & watched))
    return results


def _entries(
    postings: list[Posting], actor: Scope | None
) -> tuple[list[tuple[LedgerEntry, bool]], list[LedgerEntry], dict[int, Decimal]]:
    """(entry, created) for each posting, the entries to insert, and their sums by account."""
    known = _posted({(p.account_id, p.kind, p.reference) for p in postings if p.reference is not None})
    user = actor.user if actor else None
    label = actor.label[:100] if actor else "system"
    now = timezone.now()
    results: list[tuple[LedgerEntry, bool]] = []
    fresh: list[LedgerEntry] = []
    for posting in postings:
        amount = check_amount(posting.amount, field="amount", maximum=STORABLE)
        key = (posting.account_id, posting.kind, posting.reference)
        prior = known.get(key) if posting.reference is not None else None
        if prior is not None:
            if prior.amount != amount:
                raise Conflict(
                    f"Reference {posting.reference!r} was already posted with amount {prior.amount}.",
                    field="reference",
                )
            results.append((prior, False))
            continue
        entry = LedgerEntry(
            account_id=posting.account_id,
            kind=posting.kind,
            amount=amount,
            reference=posting.reference,
            cdr_id=posting.cdr_id,
            description=posting.description[:200],
            occurred_at=posting.occurred_at or now,
            actor_id=user.pk if user else None,
            actor_label=label,
        )
        if posting.reference is not None:
            known[key] = entry
        fresh.append(entry)
        results.append((entry, True))
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for entry in fresh:
        totals[entry.account_id] += entry.amount
    return results, fresh, dict(totals)


def _lock_accounts(account_ids: list[int]) -> dict[int, Decimal]:
    """Lock these accounts in id order; their balances, by id."""
    locked = Account.objects.select_for_update().filter(pk__in=account_ids).order_by("pk")
    return dict(locked.values_list("pk", "balance"))


def _insert_entries(entries: list[LedgerEntry], now: datetime) -> None:
    if len(entries) == 1:
        entries[0].save(force_insert=True)  # returns its id on every backend, unlike bulk inserts
    elif entries:
        _insert(entries, now)


def _check_balances(balances: dict[int, Decimal], totals: dict[int, Decimal]) -> None:
    """Refuse totals that would take a balance out of +-MAX_BALANCE, or one out of it further out.

    A balance already out of range (written before the bounds, or by hand) may still move
    toward the range: charges against it, and the operator's repairing adjustment.
    """
    beyond = {}
    for pk, total in totals.items():
        before = balances[pk]
        after = before + total
        if not balance_in_range(after) and not abs(after) < abs(before):
            beyond[pk] = after
    if beyond:
        which = ", ".join(f"account {pk} to {shown(after)}" for pk, after in sorted(beyond.items()))
        raise BalanceOutOfRange(
            f"This would take the balance out of range ({which}); a balance stays between "
            f"-{MAX_BALANCE:,.0f} and {MAX_BALANCE:,.0f}.",
            account_ids=sorted(beyond),
        )


def _posted(keys: set[tuple]) -> dict[tuple, LedgerEntry]:
    """The stored entries of these (account, kind, reference) keys, by key.

    One probe of the unique index per key: filtering on account_id IN (…) AND reference
    IN (…) instead, as the ORM would, reads every entry of those accounts, and a
    supplier's account gathers one per call it carried.
    """
    keys = list(keys)
    found = []
    size = connection.ops.bulk_batch_size(["account", "kind", "reference"], keys) or 1
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    for start in range(0, len(keys), size):
        chunk = keys[start : start + size]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {table} WHERE (account_id, kind, reference) IN"
                f" (VALUES {', '.join(['(%s, %s, %s)'] * len(chunk))})",
                [value for key in chunk for value in key],
            )
            found += [pk for (pk,) in cursor.fetchall()]
    if not found:
        return {}
    return {
        (entry.account_id, entry.kind, entry.reference): entry
        for entry in LedgerEntry.objects.filter(pk__in=found)
    }


def _insert(entries: list[LedgerEntry], now: datetime) -> None:
    for entry in entries:
        entry.created_at = now
    insert_rows(entries, returning=True)


def _account_facts(account_ids: list[int]) -> tuple[dict[int, str], set[int]]:
    """The accounts' clocks (their peers' time zones, by id) and those with a low-balance
    threshold: what a posting needs to know of them and never changes."""
    zones, watched = {}, set()
    for pk, zone, threshold in Account.objects.filter(pk__in=account_ids).values_list(
        "pk", "peer__time_zone", "low_balance_threshold"
    ):
        zones[pk] = zone or "UTC"
        if threshold is not None:
            watched.add(pk)
    return zones, watched


Spending = dict[int, tuple[date, Decimal, date, Decimal]]


def _spending(entries: list[LedgerEntry], zones: dict[int, str] | None = None) -> Spending:
    """What call charges add to their accounts' spending of the day and the month (spend limits).

    The day is the call's (`occurred_at`) on the customer's clock (its peer's time zone). By
    account: the latest day charged and the charges of that day, the month of it and the
    charges of that month. A counter of an earlier day starts again from that day's
    charges, one of the same day adds them, one of a later day (a call rated after
    midnight) is left as it is (`_write_accounts`): call control reads the counters with the
    account under its lock, and they move with the balance, in the same statement.
    `zones`: the accounts' clocks when the caller has read them (`_account_facts`); read here
    only when some entry is a call's charge.
    """
    calls = [entry for entry in entries if entry.kind == LedgerEntry.Kind.CHARGE and entry.cdr_id is not None]
    if calls and zones is None:
        zones, _ = _account_facts(sorted({entry.account_id for entry in calls}))
    charged: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    for entry in calls:
        day = timezone.localtime(entry.occurred_at, _zone(zones.get(entry.account_id, "UTC"))).date()
        charged[entry.account_id].append((day, -entry.amount))
    spending: Spending = {}
    for pk, days in charged.items():
        day = max(when for when, _ in days)
        month = day.replace(day=1)
        spending[pk] = (
            day,
            sum((amount for when, amount in days if when == day), Decimal(0)),
            month,
            sum((amount for when, amount in days if when.replace(day=1) == month), Decimal(0)),
        )
    return spending


def _write_accounts(totals: dict[int, Decimal], spending: Spending, released: dict[int, Decimal]) -> int:
    """Move the accounts' balances by `totals`, their spending counters by `spending` and
    their reserved money down by `released`, in one statement; how many accounts it wrote.

    An account whose total would take its balance out of +-MAX_BALANCE (or one already out
    of it further out) is not written: the caller compares the count (`post_rated`).
    Columns are set in this order because MariaDB's later assignments see the earlier ones'
    new values and PostgreSQL's and SQLite's do not: none reads a column set before it.
    """
    account_ids = sorted(set(totals) | set(spending) | set(released))
    if not account_ids:
        return 0
    columns: list[str] = []
    params: list = []

    def by_account(column: str, then: str, values: dict[int, list]) -> None:
        if values:
            whens = " ".join([f"WHEN %s THEN {then}"] * len(values))
            columns.append(f"{column} = CASE id {whens} ELSE {column} END")
            params.extend(value for pk in sorted(values) for value in (pk, *values[pk]))

    for counter, first in (("day", 0), ("month", 2)):
        column, of = f"spent_{counter}", f"spent_{counter}_of"
        periods = {pk: (_date(value[first]), money_to_db(value[first + 1])) for pk, value in spending.items()}
        by_account(
            column,
            f"CASE WHEN {of} IS NULL OR {of} < %s THEN %s"
            f" WHEN {of} = %s THEN {column} + %s ELSE {column} END",
            {pk: [when, amount, when, amount] for pk, (when, amount) in periods.items()},
        )
        by_account(
            of,
            f"CASE WHEN {of} IS NULL OR {of} < %s THEN %s ELSE {of} END",
            {pk: [when, when] for pk, (when, _) in periods.items()},
        )
    by_account("reserved", "reserved - %s", {pk: [money_to_db(amount)] for pk, amount in released.items()})
    moved = {pk: total for pk, total in totals.items() if total}
    by_account("balance", "balance + %s", {pk: [money_to_db(total)] for pk, total in moved.items()})
    if not columns:
        return len(account_ids)
    bound = money_to_db(MAX_BALANCE)
    guard, guard_params = "", []
    if moved:
        # In range after, or nearer to it than before: what _check_balances lets through.
        then = "ABS(balance + %s) <= %s OR ABS(balance + %s) < ABS(balance)"
        guard = f" AND CASE id {' '.join([f'WHEN %s THEN {then}'] * len(moved))} ELSE 1 = 1 END"
        for pk in sorted(moved):
            total = money_to_db(moved[pk])
            guard_params += [pk, total, bound, total]
    table = connection.ops.quote_name(Account._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {', '.join(columns)}"
            f" WHERE id IN ({', '.join(['%s'] * len(account_ids))}){guard}",
            params + account_ids + guard_params,
        )
        return cursor.rowcount


def _date(value: date):
    return connection.ops.adapt_datefield_value(value)


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return zoneinfo.ZoneInfo("UTC")  # validated when saved; a host without it reads UTC


def _track_low_balances(account_ids: list[int]) -> None:
    """Warn each account whose balance just fell below its threshold, once per crossing.

    Runs in the posting's transaction, on accounts it has locked: the flag and the balance
    move together, so two nodes posting at once cannot both send the warning. The e-mail
    leaves after commit, through the node's task queue (a slow mail server must not hold
    the rater's transaction).
    """
    rows = Account.objects.filter(pk__in=account_ids, low_balance_threshold__isnull=False).values_list(
        "pk", "balance", "low_balance_threshold", "low_balance_warned"
    )
    fell, recovered = [], []
    for pk, balance, threshold, warned in rows:
        if balance < threshold and not warned:
            fell.append(pk)
        elif balance >= threshold and warned:
            recovered.append(pk)
    if recovered:
        Account.objects.filter(pk__in=recovered).update(low_balance_warned=False)
    if fell:
        Account.objects.filter(pk__in=fell).update(low_balance_warned=True)
        transaction.on_commit(lambda: [notify.queue_low_balance_warning(pk) for pk in fell])


def _post_one(
    account: Account, *, actor: Scope, kind: str, amount: Decimal, reference: str | None, description: str
) -> tuple[LedgerEntry, bool]:
    ensure_manages(actor, account.owner_reseller_id)
    posting = Posting(account.pk, kind, amount, reference=reference, description=description)
    entry, created = post([posting], actor=actor)[0]
    if created:
        audit.record(
            actor, f"ledger.{kind}", account, amount=entry.amount, reference=reference, entry=entry.pk
        )
    return entry, created


@retry_on_conflict
def post_payment(
    account: Account, *, actor: Scope, amount: Decimal, reference: str | None = None, description: str = ""
) -> tuple[LedgerEntry, bool]:
    """Credit a payment; posting the same reference again returns the first entry."""
    amount = check_amount(amount, field="amount")
    if amount <= 0:
        raise DomainError("A payment is a positive amount.", field="amount")
    return _post_one(
        account,
        actor=actor,
        kind=LedgerEntry.Kind.PAYMENT,
        amount=amount,
        reference=reference,
        description=description or "Payment",
    )


@retry_on_conflict
def post_refund(
    account: Account,
    *,
    actor: Scope,
    amount: Decimal,
    reference: str | None = None,
    description: str = "",
    allow_over_refund: bool = False,
) -> tuple[LedgerEntry, bool]:
    """Debit money paid back to the customer, at most what was paid and not refunded yet.

    `allow_over_refund` lifts that cap (the operator's alone: a refund of money that came
    in some other way than a payment, e.g. a goodwill credit); the largest amount stays.
    """
    amount = check_amount(amount, field="amount")
    if amount <= 0:
        raise DomainError("Give the refunded amount as a positive number.", field="amount")
    ensure_manages(actor, account.owner_reseller_id)
    if allow_over_refund and not actor.is_operator:
        raise NotAllowed("Only the operator refunds more than was paid.", field="allow_over_refund")
    if not allow_over_refund:
        _check_refundable(account, amount, reference)
    return _post_one(
        account,
        actor=actor,
        kind=LedgerEntry.Kind.REFUND,
        amount=-amount,
        reference=reference,
        description=description or "Refund",
    )


@retry_on_conflict
def post_adjustment(
    account: Account, *, actor: Scope, amount: Decimal, reason: str, reference: str | None = None
) -> tuple[LedgerEntry, bool]:
    """Credit (positive) or debit (negative) a correction, with its reason.

    Its amount is within +-MAX_AMOUNT, except the operator's adjustment that brings a
    balance already out of range (an older version's bug, a hand edit) back into range.
    """
    amount = _adjustment_amount(account, actor, amount)
    if amount == 0:
        raise DomainError("An adjustment moves a non-zero amount.", field="amount")
    if not reason.strip():
        raise DomainError("Say why the balance is adjusted.", field="reason")
    return _post_one(
        account,
        actor=actor,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=amount,
        reference=reference,
        description=reason,
    )


def _locked_balance(account: Account) -> Decimal:
    return Account.objects.select_for_update().filter(pk=account.pk).values_list("balance", flat=True).get()


def _check_refundable(account: Account, amount: Decimal, reference: str | None) -> None:
    """Refuse a refund above what was paid less what was refunded already (under the lock)."""
    _locked_balance(account)  # two refunds at once must not both fit in the same room
    kind = LedgerEntry.Kind.REFUND
    if (
        reference is not None
        and LedgerEntry.objects.filter(account=account, kind=kind, reference=reference).exists()
    ):
        return  # a replay: post() returns the first entry, or refuses another amount
    moved = dict(
        LedgerEntry.objects.filter(account=account, kind__in=(LedgerEntry.Kind.PAYMENT, kind))
        .values("kind")
        .annotate(total=Sum("amount"))
        .values_list("kind", "total")
    )
    paid, refunded = moved.get(LedgerEntry.Kind.PAYMENT) or ZERO, -(moved.get(kind) or ZERO)
    refundable = max(paid - refunded, ZERO)
    if amount > refundable:
        raise DomainError(
            f"At most {shown(refundable)} can be refunded: what was paid ({shown(paid)}) "
            f"less what was refunded already ({shown(refunded)}).",
            field="amount",
        )


def _adjustment_amount(account: Account, actor: Scope, amount) -> Decimal:
    try:
        return check_amount(amount, field="amount")
    except OutOfRange as refused:
        if not actor.is_operator:
            raise refused from None
        try:
            value = check_amount(amount, field="amount", maximum=STORABLE)
        except OutOfRange:
            raise refused from None
        balance = _locked_balance(account)
        if balance_in_range(balance) or not balance_in_range(balance + value):
            raise refused from None
        return value


def _summed(in_sql, in_python):
    """`in_sql()`, exact (DECIMAL, or integer micro-units on SQLite); `in_python()` if SQLite overflows.

    SQLite's SUM() raises on an int64 overflow instead of rounding, which takes a ledger far
    past every bound (rows written around them); the statement fails alone and the
    transaction goes on. DECIMAL sums on the servers do not overflow.
    """
    if connection.vendor != "sqlite":
        return in_sql()
    try:
        return in_sql()
    except OperationalError:
        return in_python()


def _ledger_sums() -> dict[int, Decimal]:
    """sum(amount) per account."""

    def in_sql():
        return dict(
            LedgerEntry.objects.order_by()
            .values("account_id")
            .annotate(total=Sum("amount"))
            .values_list("account_id", "total")
        )

    def in_python():
        sums: dict[int, Decimal] = defaultdict(Decimal)
        for account_id, amount in (
            LedgerEntry.objects.order_by().values_list("account_id", "amount").iterator()
        ):
            sums[account_id] += amount
        return sums

    return _summed(in_sql, in_python)


def ledger_total(entries) -> Decimal | None:
    """sum(amount) of a queryset of entries (None when empty), whatever they hold."""

    def in_python():
        amounts = list(entries.order_by().values_list("amount", flat=True))
        return sum(amounts, ZERO) if amounts else None

    return _summed(lambda: entries.aggregate(total=Sum("amount"))["total"], in_python)


def ledger_differences() -> list[tuple[Account, Decimal, Decimal]]:
    """Accounts whose cached balance differs from the sum of their ledger: [(account, balance, sum)].

    Never fails on what is stored, however far out of range: see balances_out_of_range.
    """
    sums = _ledger_sums()
    differences = []
    for account in Account.objects.select_related("peer").order_by("pk"):
        total = shown(sums.get(account.pk) or ZERO)
        if account.balance != total:
            differences.append((account, account.balance, total))
    return differences


def balances_out_of_range() -> list[Account]:
    """Accounts whose balance is past +-MAX_BALANCE: only rows written around the services can be."""
    beyond = Q(balance__gt=MAX_BALANCE) | Q(balance__lt=-MAX_BALANCE)
    return list(Account.objects.filter(beyond).select_related("peer").order_by("pk"))
