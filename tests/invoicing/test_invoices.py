"""Invoices: the ledger of a period on the customer's clock, numbered without gaps, fixed once
issued, corrected by credit notes, paid through the ledger, issued once per period."""

import threading
import zoneinfo
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.billing.models import Account, LedgerEntry
from apps.billing.services.ledger import Posting, post
from apps.core.errors import DomainError, NotAllowed
from apps.invoicing import periods
from apps.invoicing.models import Invoice, InvoiceLine, Issuer
from apps.invoicing.services import invoices
from apps.peers.models import Peer
from apps.tenancy import services as tenancy_services
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory, make_peer, make_rate_table, make_reseller

pytestmark = pytest.mark.django_db
SYSTEM = Scope.system()
Kind = LedgerEntry.Kind
# Fixed periods of the past, whatever today is: the tests never depend on the date.
YEAR = 2024


def customer(name: str = "Acme", *, zone: str = "UTC", **kwargs) -> Peer:
    peer = make_peer(name, time_zone=zone, **kwargs)
    # Accounts opened long before the periods invoiced here.
    Account.objects.filter(peer=peer).update(created_at=datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")))
    return Peer.objects.get(pk=peer.pk)


def charge(peer: Peer, amount: str, at: datetime, destination: str = "Germany", seconds: int = 60):
    cdr = CdrFactory(customer=peer, destination=destination, billable_seconds=seconds, created_at=at)
    post(
        [
            Posting(
                peer.account.pk,
                Kind.CHARGE,
                -Decimal(amount),
                reference=f"cdr:{cdr.pk}",
                cdr_id=cdr.pk,
                occurred_at=at,
            )
        ]
    )


def entry(peer: Peer, kind: str, amount: str, at: datetime, reference: str | None = None):
    post(
        [
            Posting(
                peer.account.pk, kind, Decimal(amount), reference=reference, description=kind, occurred_at=at
            )
        ]
    )


def month(peer: Peer, first: date) -> Invoice:
    _, last = periods.period_containing("monthly", first)
    return invoices.create_invoice(peer.account, actor=SYSTEM, period_start=first, period_end=last)


def ledger_sum(peer: Peer, **filters) -> Decimal:
    return LedgerEntry.objects.filter(account=peer.account, **filters).total() or Decimal(0)


def test_an_invoice_is_the_ledger_of_its_month_on_the_customers_clock():
    zone = zoneinfo.ZoneInfo("America/New_York")
    peer = customer(zone="America/New_York")
    local = lambda *args: datetime(*args, tzinfo=zone)  # noqa: E731
    entry(peer, Kind.PAYMENT, "100", local(YEAR, 2, 20), "before")
    # 23:59:59 on 29 February in New York is 1 March in UTC: February's call.
    charge(peer, "1.50", local(YEAR, 2, 29, 23, 59, 59), "Germany", 90)
    charge(peer, "2.25", local(YEAR, 3, 1), "Germany", 120)
    charge(peer, "0.75", local(YEAR, 3, 15, 12), "France", 30)
    entry(peer, Kind.FEE, "-5", local(YEAR, 3, 1), "fee:1:2024-03")
    entry(peer, Kind.PAYMENT, "20", local(YEAR, 3, 10), "PSP-2")
    entry(peer, Kind.REFUND, "-3", local(YEAR, 3, 11), "R-1")
    entry(peer, Kind.ADJUSTMENT, "0.40", local(YEAR, 3, 31, 23, 59, 59, 999999), "goodwill")
    charge(peer, "9.99", local(YEAR, 4, 1), "Germany")  # April's

    invoice = month(peer, date(YEAR, 3, 1))

    assert invoice.starts_at == local(YEAR, 3, 1) and invoice.ends_at == local(YEAR, 4, 1)
    assert invoice.is_draft and invoice.number == ""
    assert invoice.opening_balance == Decimal("98.5")
    assert invoice.charges == Decimal("-3")
    assert (invoice.fees, invoice.payments, invoice.refunds) == (Decimal(-5), Decimal(20), Decimal(-3))
    assert invoice.adjustments == Decimal("0.4")
    assert invoice.closing_balance == Decimal("107.9") == ledger_sum(peer, occurred_at__lt=invoice.ends_at)
    calls = {line.description: line for line in invoice.lines.filter(kind=InvoiceLine.Kind.CALLS)}
    assert {name: (line.calls, line.seconds, line.amount) for name, line in calls.items()} == {
        "France": (1, 30, Decimal("-0.75")),
        "Germany": (1, 120, Decimal("-2.25")),
    }
    assert [line.kind for line in invoice.lines.exclude(kind=InvoiceLine.Kind.CALLS)] == [
        "fee",
        "payment",
        "refund",
        "adjustment",
    ]
    assert invoice.net == invoice.total == Decimal(8)  # calls and fees, no tax rate
    assert invoice.amount_due == 0  # in credit


def test_issuing_numbers_the_invoice_posts_tax_on_top_and_fixes_it():
    peer = customer()
    issuer = invoices.issuer_for(peer.account)
    Issuer.objects.filter(pk=issuer.pk).update(tax_rate=Decimal(20), tax_name="VAT", invoice_prefix="AC-")
    charge(peer, "10.004", datetime(YEAR, 5, 3, tzinfo=zoneinfo.ZoneInfo("UTC")))
    draft = month(peer, date(YEAR, 5, 1))
    assert draft.tax == Decimal("2")  # 20 % of 10.004, to the cent

    invoice = invoices.issue(draft, actor=SYSTEM, now=datetime(YEAR, 6, 2, tzinfo=zoneinfo.ZoneInfo("UTC")))

    assert (invoice.number, invoice.sequence, invoice.state) == ("AC-000001", 1, Invoice.State.ISSUED)
    assert invoice.due_on == date(YEAR, 6, 16)
    assert (invoice.net, invoice.tax, invoice.total) == (Decimal("10.004"), Decimal(2), Decimal("12.004"))
    (tax_entry,) = LedgerEntry.objects.filter(account=peer.account, kind=Kind.TAX)
    assert tax_entry.amount == Decimal(-2) and tax_entry.occurred_at < invoice.ends_at
    # The tax is the period's: the invoice still equals the ledger.
    assert invoice.tax_posted == Decimal(-2)
    assert invoice.closing_balance == Decimal("-12.004") == ledger_sum(peer)
    assert invoice.amount_due == Decimal("12.004")
    assert list(invoice.lines.values_list("kind", flat=True)) == ["calls", "tax"]
    # Issued is fixed: issuing again changes nothing, saving is refused.
    assert invoices.issue(invoice, actor=SYSTEM).number == "AC-000001"
    assert LedgerEntry.objects.filter(account=peer.account, kind=Kind.TAX).count() == 1
    invoice.total = Decimal(1)
    with pytest.raises(TypeError, match="credit note"):
        invoice.save()


def test_prices_that_include_tax_have_it_taken_out_and_nothing_posted():
    table = make_rate_table("Retail incl. VAT")
    table.prices_include_tax = True
    table.save(update_fields=["prices_include_tax"])
    peer = customer(sell_rate_table_id=table.pk)
    Account.objects.filter(peer=peer).update(tax_rate=Decimal(19))
    charge(peer, "11.90", datetime(YEAR, 7, 9, tzinfo=zoneinfo.ZoneInfo("UTC")))

    invoice = invoices.issue(month(peer, date(YEAR, 7, 1)), actor=SYSTEM)

    assert (invoice.net, invoice.tax, invoice.total) == (Decimal(10), Decimal("1.9"), Decimal("11.9"))
    assert invoice.prices_include_tax and invoice.tax_rate == Decimal(19)
    assert not LedgerEntry.objects.filter(kind=Kind.TAX).exists()


def test_a_credit_note_corrects_an_issued_invoice_through_the_ledger():
    peer = customer()
    charge(peer, "30", datetime(YEAR, 8, 9, tzinfo=zoneinfo.ZoneInfo("UTC")))
    invoice = invoices.issue(month(peer, date(YEAR, 8, 1)), actor=SYSTEM)
    with pytest.raises(DomainError, match="Only an issued invoice"):
        invoices.credit(month(peer, date(YEAR, 9, 1)), actor=SYSTEM, amount=Decimal(1), reason="x")

    note = invoices.credit(invoice, actor=SYSTEM, amount=Decimal("12.5"), reason="Calls to a dead number")

    assert (note.kind, note.number, note.corrects) == (Invoice.Kind.CREDIT_NOTE, "CN-000001", invoice)
    assert note.total == Decimal("12.5")
    adjustment = LedgerEntry.objects.get(account=peer.account, kind=Kind.ADJUSTMENT)
    assert adjustment.amount == Decimal("12.5") and adjustment.reference == f"credit-note:{note.pk}"
    assert peer.account.__class__.objects.get(pk=peer.account.pk).balance == Decimal("-17.5")
    with pytest.raises(DomainError, match="credited already"):
        invoices.credit(invoice, actor=SYSTEM, amount=Decimal("17.51"), reason="too much")
    invoices.credit(invoice, actor=SYSTEM, amount=Decimal("17.5"), reason="the rest")
    assert list(
        Invoice.objects.filter(kind="credit").values_list("number", flat=True).order_by("sequence")
    ) == [
        "CN-000001",
        "CN-000002",
    ]
    # The invoice itself never changed.
    assert Invoice.objects.get(pk=invoice.pk).total == Decimal(30)


def test_a_payment_of_an_invoice_is_a_ledger_entry_referring_to_it():
    peer = customer()
    charge(peer, "40", datetime(YEAR, 10, 9, tzinfo=zoneinfo.ZoneInfo("UTC")))
    invoice = invoices.issue(month(peer, date(YEAR, 10, 1)), actor=SYSTEM)

    paid, entry_ = invoices.record_payment(invoice, actor=SYSTEM)
    _, same = invoices.record_payment(invoice, actor=SYSTEM)

    assert paid.state == Invoice.State.PAID and paid.paid_at is not None
    assert entry_ == same and entry_.amount == Decimal(40) and entry_.reference == f"invoice:{invoice.number}"
    assert ledger_sum(peer) == 0


def test_periods_are_refused_when_unfinished_or_overlapping_and_asked_twice_give_one_invoice():
    peer = customer()
    today = timezone.localdate()
    with pytest.raises(DomainError, match="not ended"):
        invoices.create_invoice(peer.account, actor=SYSTEM, period_start=today, period_end=today)
    with pytest.raises(DomainError, match="ends on or after"):
        invoices.create_invoice(
            peer.account, actor=SYSTEM, period_start=date(YEAR, 2, 2), period_end=date(YEAR, 2, 1)
        )
    first = month(peer, date(YEAR, 2, 1))
    assert month(peer, date(YEAR, 2, 1)) == first
    with pytest.raises(DomainError, match="overlaps"):
        invoices.create_invoice(
            peer.account, actor=SYSTEM, period_start=date(YEAR, 2, 10), period_end=date(YEAR, 3, 5)
        )


def test_the_schedule_issues_each_accounts_last_period_once():
    utc = zoneinfo.ZoneInfo("UTC")
    monthly = customer("Monthly")
    weekly = customer("Weekly", zone="Asia/Tokyo")
    Account.objects.filter(peer=weekly).update(invoice_period=Account.InvoicePeriod.WEEKLY)
    quiet = customer("On demand")
    Account.objects.filter(peer=quiet).update(invoice_period=Account.InvoicePeriod.NONE)
    make_peer("Carrier", role=Peer.Role.SUPPLIER)
    charge(monthly, "1", datetime(YEAR, 4, 30, 12, tzinfo=utc))
    # Wednesday 15 May 2024, 01:00 in Tokyo: its last week is 6-12 May.
    now = datetime(YEAR, 5, 14, 16, tzinfo=utc)

    assert invoices.issue_due(now=now) == {"issued": 2, "sent": 0, "failed": 0}
    assert invoices.issue_due(now=now) == {"issued": 0, "sent": 0, "failed": 0}

    issued = {i.account.peer.name: (i.period_start, i.period_end, i.state) for i in Invoice.objects.all()}
    assert issued == {
        "Monthly": (date(YEAR, 4, 1), date(YEAR, 4, 30), "issued"),
        "Weekly": (date(YEAR, 5, 6), date(YEAR, 5, 12), "issued"),
    }
    assert Invoice.objects.get(account__peer=monthly).total == Decimal(1)


MONEY = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(500), places=6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone=st.sampled_from(["UTC", "Europe/Madrid", "America/Sao_Paulo", "Asia/Kathmandu", "Pacific/Chatham"]),
    movements=st.lists(
        st.tuples(
            st.sampled_from([Kind.CHARGE, Kind.FEE, Kind.PAYMENT, Kind.REFUND, Kind.ADJUSTMENT]),
            MONEY,
            # Seconds into January to April (local), with the instants either side of local
            # midnight on the 1st of a month over-weighted.
            st.one_of(st.integers(0, 121 * 86400 - 1), st.sampled_from([0, 1, 31 * 86400 - 1, 31 * 86400])),
            st.sampled_from(["Germany", "France", "Spain"]),
        ),
        max_size=25,
    ),
    tax_rate=st.sampled_from([Decimal(0), Decimal("7.5"), Decimal(21)]),
    period=st.sampled_from(["monthly", "weekly"]),
)
def test_invoices_equal_the_ledger_to_the_micro_unit_period_after_period(zone, movements, tax_rate, period):
    Invoice.objects.all().delete()
    LedgerEntry.objects.all()._raw_delete(LedgerEntry.objects.db)
    Peer.objects.filter(name="Property").update(name=f"Old {Peer.objects.count()}")
    peer = customer("Property", zone=zone)
    Account.objects.filter(peer=peer).update(tax_rate=tax_rate)
    local = zoneinfo.ZoneInfo(zone)
    origin = datetime(YEAR, 1, 1, tzinfo=local)
    for n, (kind, amount, offset, destination) in enumerate(movements):
        at = origin + timedelta(seconds=offset)
        if kind == Kind.CHARGE:
            charge(peer, str(amount), at, destination)
        else:
            sign = 1 if kind in (Kind.PAYMENT, Kind.ADJUSTMENT) else -1
            entry(peer, kind, str(sign * amount), at, f"m{n}")

    first = (
        date(YEAR, 1, 1) if period == "monthly" else periods.period_containing("weekly", date(YEAR, 1, 1))[0]
    )
    previous = None
    while first < date(YEAR, 5, 1):
        last = periods.period_containing(period, first)[1]
        invoice = invoices.issue(
            invoices.create_invoice(peer.account, actor=SYSTEM, period_start=first, period_end=last),
            actor=SYSTEM,
        )
        window = {"occurred_at__gte": invoice.starts_at, "occurred_at__lt": invoice.ends_at}
        assert invoice.opening_balance == ledger_sum(peer, occurred_at__lt=invoice.starts_at)
        assert invoice.closing_balance == ledger_sum(peer, occurred_at__lt=invoice.ends_at)
        for kind, name in invoices.KIND_FIELDS.items():
            assert getattr(invoice, name) == ledger_sum(peer, kind=kind, **window)
        assert sum((line.amount for line in invoice.lines.all()), Decimal(0)) == (
            invoice.closing_balance - invoice.opening_balance
        )
        assert invoice.net + invoice.tax == invoice.total
        assert invoice.tax_posted == -invoice.tax
        if previous is not None:
            assert invoice.opening_balance == previous.closing_balance
            assert invoice.sequence == previous.sequence + 1
        previous, first = invoice, last + timedelta(days=1)
    assert previous.closing_balance == Account.objects.get(peer=peer).balance


@pytest.mark.django_db(transaction=True)
def test_two_nodes_issuing_at_once_leave_no_gap_in_the_numbers():
    if connection.vendor != "mysql":
        pytest.skip("row locks between real connections: run with DATABASE_URL=mysql://")
    peers = [customer(f"Racer {n}") for n in range(16)]
    drafts = [month(peer, date(YEAR, 3, 1)) for peer in peers]
    go = threading.Barrier(2)
    failures = []

    def node(mine):
        try:
            go.wait()
            for draft in mine:
                invoices.issue(draft, actor=SYSTEM)
        except Exception as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=node, args=(drafts[n::2],)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    assert sorted(Invoice.objects.values_list("sequence", flat=True)) == list(range(1, 17))
    assert Issuer.objects.get(key="operator").next_invoice == 17


def test_an_invoice_is_paid_once_its_payments_cover_what_it_asked():
    peer = customer()
    charge(peer, "40", datetime(YEAR, 11, 9, tzinfo=zoneinfo.ZoneInfo("UTC")))
    invoice = invoices.issue(month(peer, date(YEAR, 11, 1)), actor=SYSTEM)

    part, _ = invoices.record_payment(invoice, actor=SYSTEM, amount=Decimal(15), reference="wire-1")
    assert part.state == Invoice.State.ISSUED and part.paid_at is None
    rest, _ = invoices.record_payment(invoice, actor=SYSTEM, reference="wire-2")  # what is left
    assert rest.state == Invoice.State.PAID
    assert sorted(LedgerEntry.objects.filter(kind=Kind.PAYMENT).values_list("reference", "amount")) == [
        ("wire-1", Decimal(15)),
        ("wire-2", Decimal(25)),
    ]
    with pytest.raises(DomainError, match="paid"):
        invoices.record_payment(rest, actor=SYSTEM, reference="wire-3")
    other = make_reseller("Other")
    staff = tenancy_services.add_reseller_staff(
        other, actor=SYSTEM, username="other", password="x-Pass-1234!"
    )
    with pytest.raises(NotAllowed):
        invoices.record_payment(invoice, actor=Scope.of_user(staff.user), amount=Decimal(1))
