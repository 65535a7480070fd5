"""Invoices of the cast, made through the services, in a fixed past year (never today's).

For reseller A's customer, reseller B's and the operator's own: March's invoice, issued, with
a credit note against it, and April's, a draft. Everything the admin, the API and the portal
show of invoices is checked against who may see which of these nine.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.billing.models import LedgerEntry
from apps.billing.services.ledger import Posting, post
from apps.invoicing.models import Invoice
from apps.invoicing.services import invoices
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.conftest import Cast
from tests.factories import CdrFactory

SYSTEM = Scope.system()
YEAR = 2024
# Who looks, by the cast's names: (login or key attribute path, whose invoices it may see).
WHO = ["operator", "a.staff", "b.staff", "a.customer", "b.customer"]


def charge(peer: Peer, amount: str, at: datetime, destination: str = "Germany", seconds: int = 60) -> None:
    """A rated call of `peer` at `at`, charged to its account as the rater would."""
    cdr = CdrFactory(customer=peer, destination=destination, billable_seconds=seconds, created_at=at)
    post(
        [
            Posting(
                peer.account.pk,
                LedgerEntry.Kind.CHARGE,
                -Decimal(amount),
                reference=f"cdr:{cdr.pk}",
                cdr_id=cdr.pk,
                occurred_at=at,
            )
        ]
    )


def draft(peer: Peer, month: int, *, actor: Scope = SYSTEM) -> Invoice:
    last = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}.get(month, 31)
    return invoices.create_invoice(
        peer.account, actor=actor, period_start=date(YEAR, month, 1), period_end=date(YEAR, month, last)
    )


@dataclass
class Books:
    """One customer's invoices: March issued and credited, April a draft."""

    issued: Invoice
    credit_note: Invoice
    draft: Invoice

    @property
    def all(self) -> list[Invoice]:
        return [self.issued, self.credit_note, self.draft]

    @property
    def customer_sees(self) -> list[Invoice]:
        return [self.issued, self.credit_note]


def keep_books(peer: Peer) -> Books:
    charge(peer, "12.50", datetime(YEAR, 3, 5, 10, tzinfo=UTC), "Germany", 300)
    charge(peer, "1.25", datetime(YEAR, 3, 9, 18, tzinfo=UTC), "France", 45)
    charge(peer, "3", datetime(YEAR, 4, 2, 9, tzinfo=UTC), "Germany", 90)
    issued = invoices.issue(draft(peer, 3), actor=SYSTEM, now=datetime(YEAR, 4, 1, 6, tzinfo=UTC))
    note = invoices.credit(
        issued,
        actor=SYSTEM,
        amount=Decimal("2.50"),
        reason="Dropped calls",
        now=datetime(YEAR, 4, 3, tzinfo=UTC),
    )
    return Books(issued=issued, credit_note=note, draft=draft(peer, 4))


@dataclass
class Ledgers:
    a: Books
    b: Books
    operator: Books

    @property
    def all(self) -> list[Invoice]:
        return [*self.a.all, *self.b.all, *self.operator.all]

    def visible_to(self, who: str) -> set[int]:
        """Ids of the invoices `who` (one of WHO) may see."""
        books = {
            "operator": self.all,
            "a.staff": self.a.all,
            "b.staff": self.b.all,
            "a.customer": self.a.customer_sees,
            "b.customer": self.b.customer_sees,
        }[who]
        return {invoice.pk for invoice in books}


@pytest.fixture
def ledgers(cast: Cast) -> Ledgers:
    return Ledgers(
        a=keep_books(cast.a.customer),
        b=keep_books(cast.b.customer),
        operator=keep_books(cast.operator_customer),
    )
