"""insert_rows stores exactly what bulk_create stores, in fewer steps."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection

from apps.billing.models import LedgerEntry
from apps.cdr.models import Cdr
from apps.core.db import insert_rows
from apps.opensips.models import Address
from tests.factories import make_peer

START = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)  # any moment: nothing here reads the clock


def calls(prefix: str, count: int) -> list[Cdr]:
    """Unsaved CDRs of every shape the import writes: answered, failed, priced, unpriced."""
    made = []
    for n in range(count):
        answered = n % 3 != 0
        made.append(
            Cdr(
                call_id=f"{prefix}-{n}",
                from_tag=f"f{n}",
                source_ip="2001:db8::7" if n % 2 else "192.0.2.10",
                caller="441234567890",
                callee=f"49301234{n:04d}",
                destination="Germany" if n % 5 else "",
                created_at=START + timedelta(milliseconds=n),
                answered_at=START + timedelta(seconds=1) if answered else None,
                ended_at=START + timedelta(seconds=61, microseconds=n),
                duration_ms=60_000 + n if answered else 0,
                sip_code=200 if answered else 486,
                sell_cost=Decimal("0.012345") * n if n % 4 else None,
                rating_state=Cdr.RatingState.RATED if n % 7 == 0 else Cdr.RatingState.UNRATED,
                rating_error="",
                source_ref=f"acc:{prefix}-{n}",
            )
        )
    return made


def stored(prefix: str) -> list[tuple]:
    names = [f.attname for f in Cdr._meta.concrete_fields if f.attname not in ("id", "call_id", "source_ref")]
    rows = Cdr.objects.filter(call_id__startswith=f"{prefix}-").order_by("created_at")
    return list(rows.values_list(*names))


def test_a_thousand_and_more_cdrs_are_stored_as_bulk_create_stores_them(db):
    # 1,234 rows: more than one statement on every database (and on SQLite's parameter limit).
    Cdr.objects.bulk_create(calls("orm", 1234))
    fast = calls("fast", 1234)
    insert_rows(fast)

    assert stored("fast") == stored("orm")
    assert len(stored("fast")) == 1234
    assert all(not cdr._state.adding for cdr in fast)


def test_ids_come_back_where_the_database_returns_them_and_a_set_creation_time_is_kept(db):
    account = make_peer("Acme").account
    kept = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)  # long before any run of this test
    entries = [
        LedgerEntry(account=account, kind=LedgerEntry.Kind.PAYMENT, amount=Decimal("10.5"), created_at=kept),
        LedgerEntry(account=account, kind=LedgerEntry.Kind.CHARGE, amount=Decimal("-0.000001")),
    ]
    insert_rows(entries, returning=True)

    if connection.features.can_return_rows_from_bulk_insert:
        assert all(entry.pk is not None for entry in entries)
    written = LedgerEntry.objects.filter(account=account).order_by("amount")
    rows = list(written.values_list("amount", "created_at"))
    assert rows[0][0] == Decimal("-0.000001")
    assert rows[0][1] is not None and rows[0][1] > kept  # auto_now_add filled where left None
    assert rows[1] == (Decimal("10.5"), kept)


def test_a_field_left_to_its_database_default_gets_that_default(db):
    insert_rows([Address(ip="192.0.2.1"), Address(ip="192.0.2.2", grp=Address.CUSTOMER_GROUP, proto="udp")])

    rows = list(Address.objects.order_by("ip").values_list("ip", "grp", "mask", "port", "proto", "pattern"))
    assert rows == [("192.0.2.1", 0, 32, 0, "any", None), ("192.0.2.2", 1, 32, 0, "udp", None)]
