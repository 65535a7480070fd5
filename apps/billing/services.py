"""The only write path for money: accounts, postings and the balance cache."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import Account, LedgerEntry
from apps.cdr.models import Cdr
from apps.core.db import retry_on_conflict
from apps.core.errors import Conflict, DomainError
from apps.core.money import ZERO, money
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.tenancy.scope import Scope

ACCOUNT_SETTINGS = ("mode", "credit_limit", "low_balance_threshold")


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
    return save_object(account, actor=actor, action="account.opened")


@retry_on_conflict
def update_account(account: Account, *, actor: Scope, changes: dict) -> Account:
    """Change an account's mode, credit limit or warning threshold; never its balance."""
    ensure_manages(actor, account.peer.reseller_id)
    current = Account.objects.select_for_update().get(pk=account.pk)
    apply_changes(current, changes, allowed=ACCOUNT_SETTINGS)
    return save_object(current, actor=actor, action="account.changed")


def post(postings: list[Posting]) -> list[LedgerEntry]:
    """Write `postings` and move the balances by their sums, in the caller's transaction.

    Postings whose (account, kind, reference) already exists are skipped, so replaying a
    batch is harmless. Each account's balance is updated once per batch, in account order,
    which keeps concurrent batches from deadlocking each other and keeps Galera write-sets
    small (one row per account, however many charges the batch holds).
    """
    if not postings:
        return []
    referenced = [p for p in postings if p.reference is not None]
    existing = set()
    if referenced:
        rows = LedgerEntry.objects.filter(
            account_id__in={p.account_id for p in referenced},
            reference__in={p.reference for p in referenced},
        ).values_list("account_id", "kind", "reference")
        existing = set(rows)
    fresh: list[Posting] = []
    seen = set(existing)
    for posting in postings:
        key = (posting.account_id, posting.kind, posting.reference)
        if posting.reference is not None and key in seen:
            continue
        seen.add(key)
        fresh.append(posting)
    if not fresh:
        return []
    now = timezone.now()
    entries = LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                account_id=p.account_id,
                kind=p.kind,
                amount=money(p.amount),
                reference=p.reference,
                cdr_id=p.cdr_id,
                description=p.description[:200],
                occurred_at=p.occurred_at or now,
            )
            for p in fresh
        ]
    )
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for posting in fresh:
        totals[posting.account_id] += money(posting.amount)
    for account_id in sorted(totals):
        Account.objects.filter(pk=account_id).update(balance=F("balance") + totals[account_id])
    return entries


def _post_one(
    account: Account, *, actor: Scope, kind: str, amount: Decimal, reference: str | None, description: str
) -> tuple[LedgerEntry, bool]:
    ensure_manages(actor, account.peer.reseller_id)
    amount = money(amount)
    if reference is not None:
        prior = LedgerEntry.objects.filter(account=account, kind=kind, reference=reference).first()
        if prior is not None:
            if prior.amount != amount:
                raise Conflict(
                    f"Reference {reference!r} was already posted with amount {prior.amount}.",
                    field="reference",
                )
            return prior, False
    entry = LedgerEntry(
        account=account,
        kind=kind,
        amount=amount,
        reference=reference,
        description=description[:200],
        actor=actor.user,
        actor_label=actor.label[:100],
    )
    try:
        # A savepoint, so that losing a race on the unique reference leaves the outer
        # transaction usable for reading the winner's row.
        with transaction.atomic():
            entry.save(force_insert=True)
    except IntegrityError:
        prior = LedgerEntry.objects.get(account=account, kind=kind, reference=reference)
        if prior.amount != amount:
            raise Conflict(f"Reference {reference!r} was already posted.", field="reference") from None
        return prior, False
    Account.objects.filter(pk=account.pk).update(balance=F("balance") + amount)
    audit.record(actor, f"ledger.{kind}", account, amount=amount, reference=reference, entry=entry.pk)
    return entry, True


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


@retry_on_conflict
def post_call_charges(charges: list[tuple[Account, Cdr]]) -> int:
    """Debit rated calls at their sell cost, once per CDR and account; returns rows written."""
    postings = [
        Posting(
            account_id=account.pk,
            kind=LedgerEntry.Kind.CHARGE,
            amount=-money(cdr.sell_cost),
            reference=f"cdr:{cdr.pk}",
            cdr_id=cdr.pk,
            description="Call charge",
            occurred_at=cdr.ended_at or cdr.created_at,
        )
        for account, cdr in charges
        if cdr.sell_cost
    ]
    return len(post(postings))


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
