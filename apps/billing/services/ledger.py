"""The only write path for money: accounts, postings and the balance cache."""

# ruff: noqa: S608 - table and column names come from the models; every value is a parameter.

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.billing import notify
from apps.billing.models import Account, LedgerEntry
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import Conflict, DomainError
from apps.core.money import MONEY_DIGITS, MONEY_PLACES, ZERO, money
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.tenancy.scope import Scope

ACCOUNT_SETTINGS = ("mode", "credit_limit", "low_balance_threshold", "notification_email")


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
    account = Account(
        peer=peer,
        currency=currency,
        mode=mode,
        credit_limit=money(credit_limit),
        low_balance_threshold=None if low_balance_threshold is None else money(low_balance_threshold),
    )
    save_object(account, actor=actor, action="account.opened")
    announce("billing.Account", [account.pk])
    return account


@retry_on_conflict
def update_account(account: Account, *, actor: Scope, changes: dict) -> Account:
    """Change an account's mode, credit limit or warning threshold; never its balance."""
    ensure_manages(actor, account.peer.reseller_id)
    current = Account.objects.select_for_update().get(pk=account.pk)
    apply_changes(current, changes, allowed=ACCOUNT_SETTINGS)
    save_object(current, actor=actor, action="account.changed")
    # Call control holds which account is whose and which prepaid suppliers are out of money.
    announce("billing.Account", [current.pk], fields=changes)
    return current


@retry_on_conflict
def post(postings: list[Posting], *, actor: Scope | None = None) -> list[tuple[LedgerEntry, bool]]:
    """Write `postings` and move the balances by their sums; return (entry, created) for each.

    A posting whose (account, kind, reference) exists already is not written again: the
    stored entry comes back with created=False, or Conflict is raised when its amount
    differs. Each account's balance is updated once per batch, in account order, which
    keeps concurrent batches from deadlocking each other and keeps Galera write-sets small
    (one row per account, however many charges the batch holds).
    """
    if not postings:
        return []
    account_ids = sorted({p.account_id for p in postings})
    # Lock the accounts, in one order, before looking for earlier postings: concurrent
    # posters on one server queue here instead of racing to the unique index; on Galera
    # the loser fails certification at commit and the retry replays the batch, which then
    # finds the winner's rows.
    list(Account.objects.select_for_update().filter(pk__in=account_ids).order_by("pk").values_list("pk"))
    known = _posted({(p.account_id, p.kind, p.reference) for p in postings if p.reference is not None})
    user = actor.user if actor else None
    label = actor.label[:100] if actor else "system"
    now = timezone.now()
    results: list[tuple[LedgerEntry, bool]] = []
    fresh: list[LedgerEntry] = []
    for posting in postings:
        amount = money(posting.amount)
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
    if len(fresh) == 1:
        fresh[0].save(force_insert=True)  # returns its id on every backend, unlike bulk inserts
    elif fresh:
        _insert(fresh, now)
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for entry in fresh:
        totals[entry.account_id] += entry.amount
    _add_to_balances(totals)
    _track_low_balances(sorted(totals))
    return results


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
    """Insert new entries as bulk_create does, without its per-object preparation.

    That preparation (a dozen field conversions and an SQL fragment per object) was a
    third of a rater's time. Ids come back where the database returns them, as with
    bulk_create.
    """
    ops = connection.ops
    names = ("account", "kind", "amount", "reference", "cdr", "description", "occurred_at", "actor")
    columns = [LedgerEntry._meta.get_field(name).column for name in (*names, "actor_label", "created_at")]
    returning = ""
    if connection.features.can_return_rows_from_bulk_insert:
        returning = " " + ops.return_insert_columns([LedgerEntry._meta.pk])[0]
    created_at = ops.adapt_datetimefield_value(now)
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    size = min(1000, ops.bulk_batch_size(columns, entries))
    for start in range(0, len(entries), size):
        chunk = entries[start : start + size]
        params = []
        for entry in chunk:
            entry.created_at = now
            params += [
                entry.account_id,
                entry.kind,
                ops.adapt_decimalfield_value(entry.amount, MONEY_DIGITS, MONEY_PLACES),
                entry.reference,
                entry.cdr_id,
                entry.description,
                ops.adapt_datetimefield_value(entry.occurred_at),
                entry.actor_id,
                entry.actor_label,
                created_at,
            ]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ops.quote_name(LedgerEntry._meta.db_table)}"
                f" ({', '.join(ops.quote_name(column) for column in columns)})"
                f" VALUES {', '.join([row] * len(chunk))}{returning}",
                params,
            )
            ids = [pk for (pk,) in ops.fetch_returned_insert_rows(cursor)] if returning else []
        for entry, pk in zip(chunk, ids or [None] * len(chunk), strict=True):
            entry.pk = pk
            entry._state.adding, entry._state.db = False, connection.alias


def _add_to_balances(totals: dict[int, Decimal]) -> None:
    """Add each account's total to its balance, in one statement for all of them.

    The caller holds the accounts' locks, taken in account order.
    """
    if not totals:
        return
    ids = sorted(totals)
    params = []
    for pk in ids:
        params += [pk, connection.ops.adapt_decimalfield_value(totals[pk], MONEY_DIGITS, MONEY_PLACES)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(Account._meta.db_table)}"
            f" SET balance = balance + CASE id {' '.join(['WHEN %s THEN %s'] * len(ids))} END"
            f" WHERE id IN ({', '.join(['%s'] * len(ids))})",
            params + ids,
        )


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
    ensure_manages(actor, account.peer.reseller_id)
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
    if money(amount) <= 0:
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
    account: Account, *, actor: Scope, amount: Decimal, reference: str | None = None, description: str = ""
) -> tuple[LedgerEntry, bool]:
    """Debit money paid back to the customer."""
    if money(amount) <= 0:
        raise DomainError("Give the refunded amount as a positive number.", field="amount")
    return _post_one(
        account,
        actor=actor,
        kind=LedgerEntry.Kind.REFUND,
        amount=-money(amount),
        reference=reference,
        description=description or "Refund",
    )


@retry_on_conflict
def post_adjustment(
    account: Account, *, actor: Scope, amount: Decimal, reason: str, reference: str | None = None
) -> tuple[LedgerEntry, bool]:
    """Credit (positive) or debit (negative) a correction, with its reason."""
    if money(amount) == 0:
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


def ledger_differences() -> list[tuple[Account, Decimal, Decimal]]:
    """Accounts whose cached balance differs from the sum of their ledger: [(account, balance, sum)]."""
    sums = dict(
        LedgerEntry.objects.values("account_id")
        .annotate(total=Sum("amount"))
        .values_list("account_id", "total")
    )
    return [
        (account, account.balance, money(sums.get(account.pk) or 0))
        for account in Account.objects.select_related("peer").order_by("pk")
        if account.balance != money(sums.get(account.pk) or 0)
    ]
