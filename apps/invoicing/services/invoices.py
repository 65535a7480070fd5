"""The write path of invoices: draft, issue, credit, payment, delivery, and the schedule.

An invoice's figures are the ledger's over its period ([starts_at, ends_at) on the
customer's clock): the opening balance (every entry before), the period's entries by kind,
and the closing balance, so closing = opening + the period's entries, to the micro-unit.
The call charges are itemised per destination from their CDRs, the rest entry by entry.

Issuing takes the issuer's next number under the issuer row's lock, in the transaction that
issues: a number is used only if the invoice is issued, so the series has no gaps, and on
Galera two nodes issuing at once conflict on that row and one replays (retry_on_conflict).
Tax on top of tax-exclusive prices is posted to the ledger when the invoice is issued, as
of the period's last instant, so the balance owes it and the invoice still equals the
ledger. An issued invoice never changes; `credit` issues a credit note, which credits the
account through the ledger.
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import Account, LedgerEntry
from apps.billing.services.ledger import Posting, post, post_payment
from apps.cdr.models import Cdr
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.core.formatting import minor_units
from apps.core.money import check_amount
from apps.core.services import ensure_manages
from apps.invoicing import periods, tax
from apps.invoicing.models import Invoice, InvoiceLine, Issuer
from apps.peers.models import Peer
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
Kind = LedgerEntry.Kind
LINE_KINDS = {
    Kind.FEE: InvoiceLine.Kind.FEE,
    Kind.PAYMENT: InvoiceLine.Kind.PAYMENT,
    Kind.REFUND: InvoiceLine.Kind.REFUND,
    Kind.ADJUSTMENT: InvoiceLine.Kind.ADJUSTMENT,
    Kind.TAX: InvoiceLine.Kind.TAX,
}
# Invoice fields that hold the period's sum of each ledger kind.
KIND_FIELDS = {
    Kind.CHARGE: "charges",
    Kind.FEE: "fees",
    Kind.PAYMENT: "payments",
    Kind.REFUND: "refunds",
    Kind.ADJUSTMENT: "adjustments",
    Kind.TAX: "tax_posted",
    Kind.TERMINATED: "terminated",
}
INVOICED_ROLES = (Peer.Role.CUSTOMER, Peer.Role.USER)


@dataclass
class Figures:
    """What the ledger says of one account over [starts_at, ends_at)."""

    opening_balance: Decimal = ZERO
    sums: dict[str, Decimal] = field(default_factory=dict)
    lines: list[InvoiceLine] = field(default_factory=list)

    @property
    def closing_balance(self) -> Decimal:
        return self.opening_balance + sum(self.sums.values(), ZERO)


def issuer_for(account: Account) -> Issuer:
    """The profile of whoever invoices `account`: its customer's reseller, or the operator
    (for its own customers, and for a reseller's account with it)."""
    reseller = account.peer.reseller if account.peer_id else None
    issuer, _ = Issuer.objects.get_or_create(
        key=Issuer.key_for(reseller.pk if reseller else None),
        defaults={
            "reseller": reseller,
            "legal_name": (reseller.company or reseller.name) if reseller else "Operator",
            "email": reseller.email if reseller else "",
        },
    )
    return issuer


def calculate(account: Account, starts_at: datetime, ends_at: datetime) -> Figures:
    """The ledger of `account` over [starts_at, ends_at): balances, sums by kind, lines."""
    entries = LedgerEntry.objects.filter(account=account)
    period = entries.filter(occurred_at__gte=starts_at, occurred_at__lt=ends_at)
    figures = Figures(opening_balance=entries.filter(occurred_at__lt=starts_at).total() or ZERO)
    figures.sums = dict.fromkeys(KIND_FIELDS.values(), ZERO)
    for row in period.order_by().values("kind").annotate(total=Sum("amount")):
        figures.sums[KIND_FIELDS[row["kind"]]] = row["total"]
    # Calls by destination: those it made (charges), and those a peer that sends and receives
    # terminated for us (credits, by its own billable seconds).
    for kind, line_kind, seconds in (
        (Kind.CHARGE, InvoiceLine.Kind.CALLS, "cdr__billable_seconds"),
        (Kind.TERMINATED, InvoiceLine.Kind.TERMINATED, "cdr__supplier_billable_seconds"),
    ):
        calls = (
            period.filter(kind=kind)
            .values("cdr__destination")
            .annotate(calls=Count("id"), seconds=Sum(seconds), amount=Sum("amount"))
            .order_by("cdr__destination")
        )
        for row in calls:
            figures.lines.append(
                InvoiceLine(
                    kind=line_kind,
                    description=row["cdr__destination"] or "Other destinations",
                    calls=row["calls"],
                    seconds=row["seconds"] or 0,
                    amount=row["amount"],
                )
            )
    for entry in period.exclude(kind__in=(Kind.CHARGE, Kind.TERMINATED)).order_by("occurred_at", "id"):
        figures.lines.append(_line(entry, account.zone))
    figures.lines.extend(_bundle_lines(account, starts_at, ends_at))
    return figures


def _bundle_lines(account: Account, starts_at: datetime, ends_at: datetime) -> list[InvoiceLine]:
    """What each of the account's bundles covered of the period's calls (apps.bundles)."""
    covered = (
        Cdr.objects.filter(
            bundle_usage__subscription__account=account, created_at__gte=starts_at, created_at__lt=ends_at
        )
        .values("bundle_usage__subscription__bundle__name", "bundle_usage__subscription_id")
        .annotate(calls=Count("id"), seconds=Sum("bundle_seconds"), worth=Sum("bundle_money"))
        .order_by("bundle_usage__subscription_id")
    )
    return [
        InvoiceLine(
            kind=InvoiceLine.Kind.BUNDLE,
            description=row["bundle_usage__subscription__bundle__name"][:200],
            calls=row["calls"],
            seconds=row["seconds"] or 0,
            amount=-(row["worth"] or ZERO),
        )
        for row in covered
    ]


def _line(entry: LedgerEntry, zone) -> InvoiceLine:
    return InvoiceLine(
        kind=LINE_KINDS[entry.kind],
        description=(entry.description or entry.get_kind_display())[:200],
        occurred_on=timezone.localtime(entry.occurred_at, zone).date(),
        amount=entry.amount,
    )


@retry_on_conflict
def create_invoice(
    account: Account, *, actor: Scope, period_start: date, period_end: date, figures: bool = True
) -> Invoice:
    """A draft invoice of `account` for the days period_start..period_end on its clock.

    The period must have ended and must not overlap another invoice's; asking again for the
    same period returns the invoice there is. `figures=False` leaves them to `issue`, which
    calculates them again anyway (the schedule issues at once).
    """
    ensure_manages(actor, account.owner_reseller_id)
    try:
        starts_at, ends_at = periods.instants(period_start, period_end, account.zone)
    except ValueError as exc:
        raise DomainError(str(exc).capitalize() + ".", field="period_end") from None
    if ends_at > timezone.now():
        raise DomainError("The period has not ended yet.", field="period_end")
    key = f"{account.pk}:{starts_at.isoformat()}:{ends_at.isoformat()}"
    existing = Invoice.objects.filter(period_key=key).first()
    if existing is not None:
        return existing
    overlapping = Invoice.objects.filter(
        account=account, kind=Invoice.Kind.INVOICE, starts_at__lt=ends_at, ends_at__gt=starts_at
    ).first()
    if overlapping is not None:
        raise DomainError(f"The period overlaps invoice {overlapping}.", field="period_start")
    invoice = Invoice(
        issuer=issuer_for(account),
        account=account,
        period_key=key,
        period_start=period_start,
        period_end=period_end,
        starts_at=starts_at,
        ends_at=ends_at,
        time_zone=account.time_zone,
        currency=account.currency,
        actor_label=actor.label[:100],
    )
    try:
        with transaction.atomic():
            if figures:
                _fill(invoice, calculate(account, starts_at, ends_at))
            else:
                invoice.save()
    except IntegrityError:
        # Made meanwhile by another node's schedule (the period key is unique).
        return Invoice.objects.get(period_key=key)
    audit.record(actor, "invoice.drafted", invoice, period=f"{period_start}..{period_end}")
    return invoice


def _fill(invoice: Invoice, figures: Figures, *, save: bool = True) -> None:
    """Set `invoice`'s figures and tax from `figures`; `save`: save it and replace its lines."""
    account, issuer = invoice.account, invoice.issuer
    invoice.opening_balance = figures.opening_balance
    for name, value in figures.sums.items():
        setattr(invoice, name, value)
    invoice.closing_balance = figures.closing_balance
    invoice.language = account.invoice_language or issuer.language
    invoice.tax_rate = account.tax_rate if account.tax_rate is not None else issuer.tax_rate
    invoice.tax_name = issuer.tax_name
    table = account.peer.sell_rate_table if account.peer_id else account.reseller.rate_table
    invoice.prices_include_tax = bool(table and table.prices_include_tax)
    # Taxed: what the period's calls and fees cost (a credit in them lowers it).
    consumed = max(-(invoice.charges + invoice.fees), ZERO)
    taxed = tax.split(
        consumed, invoice.tax_rate, included=invoice.prices_include_tax, places=minor_units(invoice.currency)
    )
    invoice.net, invoice.tax, invoice.total = taxed.net, taxed.tax, taxed.total
    invoice.amount_due = max(-invoice.closing_balance, ZERO)
    if not save:
        return
    invoice.save()
    invoice.lines.all().delete()
    for position, line in enumerate(figures.lines, start=1):
        line.invoice, line.position = invoice, position
    InvoiceLine.objects.bulk_create(figures.lines)


def _locked(invoice: Invoice) -> tuple[Issuer, Invoice]:
    """The invoice's issuer and the invoice, read again under their locks, in that order
    (the issuer row serialises everything that takes a number)."""
    issuer = Issuer.objects.select_for_update().get(pk=invoice.issuer_id)
    # No joins under FOR UPDATE: PostgreSQL refuses to lock the nullable side of an outer
    # join (an account's peer), so the account is read after the lock.
    return issuer, Invoice.objects.select_for_update().get(pk=invoice.pk)


@retry_on_conflict
def issue(invoice: Invoice, *, actor: Scope, now: datetime | None = None) -> Invoice:
    """Number `invoice`, post its tax when prices exclude it, and fix it for good.

    Its figures are calculated again first: a call rated late into the period is on it.
    Issuing an issued invoice returns it as it is.
    """
    ensure_manages(actor, invoice.account.owner_reseller_id)
    now = now or timezone.now()
    issuer, invoice = _locked(invoice)
    if not invoice.is_draft:
        return invoice
    account = invoice.account
    invoice.issuer = issuer
    figures = calculate(account, invoice.starts_at, invoice.ends_at)
    _fill(invoice, figures, save=False)
    if invoice.tax and not invoice.prices_include_tax:
        ((entry, created),) = post(
            [
                Posting(
                    account.pk,
                    Kind.TAX,
                    -invoice.tax,
                    reference=f"invoice:{invoice.pk}",
                    description=f"{invoice.tax_name} {invoice.tax_rate.normalize():f}%",
                    # The period's last instant: the tax belongs to the period it taxes.
                    occurred_at=invoice.ends_at - timedelta(microseconds=1),
                )
            ],
            actor=actor,
        )
        if created:  # else the calculation had it already
            figures.sums["tax_posted"] += entry.amount
            figures.lines.append(_line(entry, account.zone))
    _fill(invoice, figures)
    invoice.sequence = issuer.next_invoice
    invoice.number = f"{issuer.invoice_prefix}{invoice.sequence:06d}"
    issuer.next_invoice += 1
    issuer.save(update_fields=["next_invoice", "updated_at"])
    invoice.state = Invoice.State.ISSUED
    invoice.issued_at = now
    invoice.due_on = timezone.localtime(now, account.zone).date() + timedelta(days=issuer.payment_terms_days)
    invoice.actor_label = actor.label[:100]
    Invoice.objects.filter(pk=invoice.pk).update(
        sequence=invoice.sequence,
        number=invoice.number,
        state=invoice.state,
        issued_at=now,
        due_on=invoice.due_on,
        actor_label=invoice.actor_label,
    )
    audit.record(actor, "invoice.issued", invoice, number=invoice.number, total=invoice.total)
    return invoice


@retry_on_conflict
def credit(
    invoice: Invoice, *, actor: Scope, amount: Decimal, reason: str, now: datetime | None = None
) -> Invoice:
    """A credit note of `amount` (tax included) against issued `invoice`, credited to its account.

    Together the credit notes of an invoice never exceed its total.
    """
    ensure_manages(actor, invoice.account.owner_reseller_id)
    amount = check_amount(amount, field="amount")
    if amount <= 0:
        raise DomainError("A credit note credits a positive amount.", field="amount")
    if not reason.strip():
        raise DomainError("Say why the invoice is corrected.", field="reason")
    now = now or timezone.now()
    issuer, invoice = _locked(invoice)
    if invoice.kind != Invoice.Kind.INVOICE or invoice.is_draft:
        raise DomainError("Only an issued invoice is corrected by a credit note.")
    credited = invoice.credit_notes.aggregate(total=Sum("total"))["total"] or ZERO
    if credited + amount > invoice.total:
        raise DomainError(
            f"The invoice's total is {invoice.total}, {credited} of it credited already.", field="amount"
        )
    taxed = tax.split(amount, invoice.tax_rate, included=True, places=minor_units(invoice.currency))
    note = Invoice.objects.create(
        issuer=issuer,
        account=invoice.account,
        kind=Invoice.Kind.CREDIT_NOTE,
        state=Invoice.State.ISSUED,
        sequence=issuer.next_credit_note,
        number=f"{issuer.credit_note_prefix}{issuer.next_credit_note:06d}",
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        starts_at=invoice.starts_at,
        ends_at=invoice.ends_at,
        time_zone=invoice.time_zone,
        currency=invoice.currency,
        language=invoice.language,
        tax_rate=invoice.tax_rate,
        tax_name=invoice.tax_name,
        prices_include_tax=invoice.prices_include_tax,
        net=taxed.net,
        tax=taxed.tax,
        total=amount,
        adjustments=amount,
        corrects=invoice,
        reason=reason[:200],
        issued_at=now,
        due_on=timezone.localtime(now, invoice.account.zone).date(),
        actor_label=actor.label[:100],
    )
    issuer.next_credit_note += 1
    issuer.save(update_fields=["next_credit_note", "updated_at"])
    InvoiceLine.objects.create(
        invoice=note, position=1, kind=InvoiceLine.Kind.CREDIT, description=reason[:200], amount=amount
    )
    post(
        [
            Posting(
                invoice.account_id,
                Kind.ADJUSTMENT,
                amount,
                reference=f"credit-note:{note.pk}",
                description=f"Credit note {note.number} for {invoice.number}",
            )
        ],
        actor=actor,
    )
    audit.record(actor, "invoice.credited", note, invoice=invoice.number, amount=amount)
    return note


@retry_on_conflict
def record_payment(
    invoice: Invoice, *, actor: Scope, amount: Decimal | None = None, reference: str | None = None
) -> tuple[Invoice, LedgerEntry]:
    """Post a payment of `invoice` (by default what is left of its amount due) and mark it
    paid once its payments cover that amount.

    The ledger entry refers to the invoice's number unless `reference` says otherwise (a
    bank transfer's id): posting the same reference again is a no-op, as every payment is.
    """
    ensure_manages(actor, invoice.account.owner_reseller_id)
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.kind != Invoice.Kind.INVOICE or invoice.is_draft:
        raise DomainError("Only an issued invoice is paid.")
    reference = reference or f"invoice:{invoice.number}"
    # A retried request (the same reference) gets the payment it made.
    payments = LedgerEntry.objects.filter(account=invoice.account, kind=Kind.PAYMENT)
    known = payments.filter(reference=reference).first()
    if known is not None:
        return invoice, known
    paid = _paid(invoice)
    if invoice.state == Invoice.State.PAID or (amount is None and paid >= invoice.amount_due):
        raise DomainError(f"Invoice {invoice.number} is paid already.")
    amount = invoice.amount_due - paid if amount is None else amount
    entry, created = post_payment(
        invoice.account,
        actor=actor,
        amount=amount,
        reference=reference,
        description=f"Payment of {invoice.number}",
    )
    if created and paid + entry.amount >= invoice.amount_due:
        invoice.state, invoice.paid_at = Invoice.State.PAID, entry.occurred_at
        invoice.save(update_fields=["state", "paid_at"])
        audit.record(actor, "invoice.paid", invoice, number=invoice.number, amount=entry.amount)
    return invoice, entry


def _paid(invoice: Invoice) -> Decimal:
    """What payments described as this invoice's have brought in so far."""
    return (
        LedgerEntry.objects.filter(
            account=invoice.account, kind=Kind.PAYMENT, description=f"Payment of {invoice.number}"
        ).total()
        or ZERO
    )


def recipients(invoice: Invoice) -> list[str]:
    """Where an invoice goes: the account's notification address, else its reseller's."""
    account = invoice.account
    reseller = account.peer.reseller if account.peer_id else account.reseller
    address = account.notification_email or (reseller.email if reseller else "")
    return [address] if address else []


def send(
    invoice: Invoice, *, actor: Scope, to: list[str] | None = None, now: datetime | None = None
) -> Invoice:
    """E-mail issued `invoice` with its PDF to `to` (default: recipients()) and mark it sent."""
    from apps.invoicing import documents

    ensure_manages(actor, invoice.account.owner_reseller_id)
    if invoice.is_draft:
        raise DomainError("A draft is not sent; issue it first.")
    to = to or recipients(invoice)
    if not to:
        raise DomainError("The account has no e-mail address to send the invoice to.", field="to")
    documents.email_message(invoice, to=to).send()
    invoice.sent_at, invoice.sent_to = now or timezone.now(), ", ".join(to)[:254]
    if invoice.state == Invoice.State.ISSUED:
        invoice.state = Invoice.State.SENT
    invoice.save(update_fields=["state", "sent_at", "sent_to"])
    audit.record(actor, "invoice.sent", invoice, to=invoice.sent_to)
    return invoice


def issue_due(*, now: datetime | None = None) -> dict[str, int]:
    """Invoice every account whose last complete period has no invoice yet; send what can be.

    Idempotent per account and period (run by the lease holder every hour, and safe if two
    nodes run it). A failure on one account is logged and left for the next run.
    """
    now = now or timezone.now()
    system = Scope.system()
    done = {"issued": 0, "sent": 0, "failed": 0}
    accounts = (
        # Customers, and resellers for what their customers' calls cost them.
        Account.objects.filter(Q(peer__role__in=INVOICED_ROLES) | Q(reseller__isnull=False))
        .exclude(invoice_period=Account.InvoicePeriod.NONE)
        .select_related("peer__reseller", "peer__sell_rate_table", "reseller__rate_table")
    )
    for account in accounts.iterator(chunk_size=500):
        first, last = periods.last_complete_period(
            account.invoice_period, timezone.localtime(now, account.zone).date()
        )
        starts_at, ends_at = periods.instants(first, last, account.zone)
        if (
            account.created_at >= ends_at
            or Invoice.objects.filter(
                Q(period_key=f"{account.pk}:{starts_at.isoformat()}:{ends_at.isoformat()}")
                & ~Q(state=Invoice.State.DRAFT)
            ).exists()
        ):
            continue
        try:
            draft = create_invoice(account, actor=system, period_start=first, period_end=last, figures=False)
            invoice = issue(draft, actor=system, now=now)
            done["issued"] += 1
            if recipients(invoice):
                send(invoice, actor=system, now=now)
                done["sent"] += 1
        except Exception:
            logger.exception("invoice of account %s for %s..%s not issued", account.pk, first, last)
            done["failed"] += 1
    return done
