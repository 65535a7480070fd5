"""Invoices for --accounts accounts (default 10,000) over a month of --cdrs CDRs (default 10 M).

Builds a database of its own (default mysql://root@127.0.0.1:3306/bench_invoices): the
accounts' customers (through the services), then with MariaDB's sequence engine the last
complete month's CDRs (bench/controllers.py's generator, about 60 % answered) and a call
charge in the ledger for each answered one, a payment and a monthly fee per account, and
the balances they sum to. Half the accounts pay tax on top (20 %), the rest have prices
that include it.

Then, timed: the scheduled run that issues every account's invoice for that month
(apps.invoicing.services.invoices.issue_due: a draft, calculated from the ledger and the
CDRs, then issued, numbered and its tax posted), with tracemalloc's peak of Python
allocations and the process's peak RSS; then a second run, which must issue nothing; then
every invoice checked against the ledger (closing = opening + the month's entries).

    .venv/bin/python bench/invoices.py                  # 10,000 accounts, 10 M CDRs
    .venv/bin/python bench/invoices.py --accounts 500 --cdrs 200000

The database is dropped at the end unless --keep.
"""

import argparse
import os
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import configure_django, create_database, describe_machine, drop_database  # noqa: E402

DEFAULT_URL = "mysql://root@127.0.0.1:3306/bench_invoices"
NODE = "bench1"
CHUNK = 1_000_000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args, starts_at: datetime, ends_at: datetime) -> dict:
    """Customers with accounts; half with tax-inclusive prices."""
    from apps.billing.models import Account
    from apps.invoicing.models import Issuer
    from apps.nodes import services as node_services
    from apps.peers import services as peer_services
    from apps.peers.models import Peer
    from apps.rates import services as rate_services
    from apps.tenancy.scope import Scope

    system = Scope.system()
    node = node_services.create_node(
        actor=system, name=NODE, management_address="127.0.0.1", sip_address="127.0.0.1"
    )
    inclusive = rate_services.create_rate_table(
        actor=system, name="Retail incl. tax", purpose="sell", currency="USD"
    )
    inclusive.prices_include_tax = True
    inclusive.save(update_fields=["prices_include_tax"])
    exclusive = rate_services.create_rate_table(
        actor=system, name="Wholesale", purpose="sell", currency="USD"
    )
    customers = [
        peer_services.create_peer(
            actor=system,
            name=f"Customer {i:05d}",
            role=Peer.Role.CUSTOMER,
            sell_rate_table_id=(inclusive if i % 2 else exclusive).pk,
        ).pk
        for i in range(args.accounts)
    ]
    Account.objects.update(created_at=starts_at - timedelta(days=30))
    Issuer.objects.create(key="operator", legal_name="Bench Telecom Ltd", tax_rate=20, tax_name="VAT")
    return {"node": node.pk, "customers": customers}


def fill(args, world: dict, starts_at: datetime, ends_at: datetime) -> None:
    """The month's CDRs and their charges, a payment and a fee per account, the balances."""
    from django.db import connection

    from bench.controllers import destinations, quoted

    span_us = int((ends_at - starts_at).total_seconds() * 1_000_000)
    step_us = span_us // args.cdrs
    start = starts_at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    customers = world["customers"]
    names = destinations(60)
    draw = "CRC32(CONCAT(n, '{}'))"
    answered = f"(MOD({draw.format('a')}, 100) < 60)"
    duration = f"IF({answered}, 1000 + MOD({draw.format('d')}, 300000), 0)"
    select = f"""
        SELECT CONCAT('i', n, '@bench'), '', '', {world["node"]},
            {customers[0]} + MOD({draw.format("c")}, {len(customers)}), NULL,
            '192.0.2.200', '441234567890',
            CONCAT('4420', LPAD(MOD({draw.format("n")}, 100000000), 8, '0')), '',
            ELT(1 + MOD({draw.format("x")}, {len(names)}), {quoted(names)}),
            TIMESTAMPADD(MICROSECOND, n * {step_us}, '{start}'),
            IF({answered}, TIMESTAMPADD(MICROSECOND, n * {step_us} + 2000000, '{start}'), NULL),
            TIMESTAMPADD(MICROSECOND, n * {step_us} + 2000000, '{start}'),
            {duration}, CEIL({duration} / 1000), CEIL({duration} / 1000),
            IF({answered}, 200, 503), IF({answered}, 'OK', 'Service Unavailable'),
            IF({answered}, CEIL({duration} / 1000) * 0.0002, NULL), NULL, 'rated', '', 0
        FROM (SELECT seq + %s AS n FROM seq_1_to_{min(CHUNK, args.cdrs)}) numbers WHERE n <= %s
    """
    columns = (
        "call_id, from_tag, to_tag, node_id, customer_id, supplier_id, source_ip, caller, callee, callee_out,"
        " destination, created_at, answered_at, ended_at, duration_ms, billable_seconds,"
        " supplier_billable_seconds, sip_code, sip_reason, sell_cost, buy_cost, rating_state, rating_error,"
        " estimated"
    )
    assert customers == list(range(customers[0], customers[0] + len(customers))), (
        "customer ids not contiguous"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for offset in range(0, args.cdrs, CHUNK):
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM cdr_cdr")
            after = cursor.fetchone()[0]
            cursor.execute(f"INSERT INTO cdr_cdr ({columns}) {select}", [offset - 1, args.cdrs - 1])
            cursor.execute(
                "INSERT INTO billing_ledgerentry (account_id, kind, amount, reference, cdr_id, description,"
                " actor_label, occurred_at, created_at)"
                " SELECT a.id, 'charge', -c.sell_cost, CONCAT('cdr:', c.id), c.id, '', 'system', c.ended_at,"
                " c.ended_at FROM cdr_cdr c JOIN billing_account a ON a.peer_id = c.customer_id"
                " WHERE c.id > %s AND c.sell_cost IS NOT NULL",
                [after],
            )
            done = min(offset + CHUNK, args.cdrs)
            print(f"  {done:,} CDRs and their charges in {time.perf_counter() - started:.0f} s", flush=True)
        first = starts_at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        cursor.execute(
            "INSERT INTO billing_ledgerentry (account_id, kind, amount, reference, description, actor_label,"
            " occurred_at, created_at) SELECT id, 'payment', 500, CONCAT('bench-pay-', id), 'Payment',"
            " 'system', TIMESTAMPADD(DAY, 3, %s), NOW() FROM billing_account",
            [first],
        )
        cursor.execute(
            "INSERT INTO billing_ledgerentry (account_id, kind, amount, reference, description, actor_label,"
            " occurred_at, created_at) SELECT id, 'fee', -15, CONCAT('bench-fee-', id), 'Port fee', 'system',"
            " %s, NOW() FROM billing_account",
            [first],
        )
        cursor.execute(
            "UPDATE billing_account a JOIN (SELECT account_id, SUM(amount) AS total FROM billing_ledgerentry"
            " GROUP BY account_id) t ON t.account_id = a.id SET a.balance = t.total"
        )
        cursor.execute("ANALYZE TABLE cdr_cdr, billing_ledgerentry")
    print(f"month written in {time.perf_counter() - started:.0f} s", flush=True)


def run(now: datetime) -> None:
    from django.db import connection

    from apps.invoicing.models import Invoice
    from apps.invoicing.services.invoices import issue_due

    tracemalloc.start()
    before = rss_mib()
    started = time.perf_counter()
    done = issue_due(now=now)
    took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"issue_due: {done} in {took:.1f} s ({done['issued'] / took:.1f} invoices/s); "
        f"Python allocations peak {peak / 2**20:.1f} MiB; RSS peak {before:.0f} -> {rss_mib():.0f} MiB",
        flush=True,
    )
    started = time.perf_counter()
    again = issue_due(now=now)
    print(f"second run: {again} in {time.perf_counter() - started:.1f} s", flush=True)
    assert again["issued"] == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM invoicing_invoice i WHERE i.closing_balance <> ("
            " SELECT COALESCE(SUM(amount), 0) FROM billing_ledgerentry e"
            " WHERE e.account_id = i.account_id AND e.occurred_at < i.ends_at)"
        )
        wrong = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COUNT(*), SUM(total), SUM(tax), MIN(sequence), MAX(sequence) FROM invoicing_invoice"
        )
        count, total, tax, low, high = cursor.fetchone()
    print(
        f"{count:,} invoices, numbers {low}..{high}, total {total}, tax {tax}; {wrong} differ from the ledger"
    )
    assert wrong == 0 and high - low + 1 == count == Invoice.objects.count()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--cdrs", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if not args.database_url.startswith("mysql"):
        raise SystemExit("the CDRs are written by MariaDB's sequence engine: --database-url mysql://…")
    configure_django(args.database_url, NODE)
    from django.core.management import call_command

    from apps.invoicing import periods

    print(describe_machine(), flush=True)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f}", flush=True)
    now = datetime.now(UTC).replace(microsecond=0)
    first, last = periods.last_complete_period("monthly", now.date())
    starts_at, ends_at = periods.instants(first, last, UTC)
    started = time.perf_counter()
    create_database(args.database_url)
    try:
        call_command("migrate", verbosity=0)
        world = build(args, starts_at, ends_at)
        print(
            f"database and {args.accounts:,} customers in {time.perf_counter() - started:.0f} s", flush=True
        )
        fill(args, world, starts_at, ends_at)
        run(now)
    finally:
        if not args.keep:
            drop_database(args.database_url)


if __name__ == "__main__":
    main()
