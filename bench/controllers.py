"""One round of the fraud and quality controllers (issue 16) over a CDR table of --cdrs rows.

Builds a MariaDB database of its own (default mysql://root@127.0.0.1:3306/bench_controllers):
--customers customer peers (default 200) and --suppliers supplier peers (default 20), made
through the services, then --cdrs CDRs (default 10,000,000) spread evenly over the last
--days days (default 8) up to now, written by MariaDB itself: INSERT … SELECT from its
sequence engine (seq_1_to_N), one million rows per statement. About 60 % are answered
(1 s to 5 min), across 60 destinations, every customer and supplier; --released
reservations of ended calls (default 1,000,000) lie beside 500 calls up now. On top of
that traffic, three offenders are planted in the last minutes: a supplier answering 5 %
of 200 attempts, a customer sending 15 times its usual hour's calls in the last 50
minutes, and a customer calling a 5.00/min destination it never called.

Then the controllers of one round are created (termination ASR per supplier and
destination over 15 minutes; burst of calls over 60 minutes against the same hour of 7
days; new high-cost destination over 60 minutes; sequential numbers over 10 minutes) and
`apps.fraud.controllers.run_all` is timed --rounds times (default 3; the first on a cold
buffer pool only if the server was restarted). Each controller is also timed alone, and
every query of the round is printed with MariaDB's EXPLAIN (index used, rows examined).

    .venv/bin/python bench/controllers.py                 # 10 M CDRs
    .venv/bin/python bench/controllers.py --cdrs 1000000

The database is dropped at the end unless --keep; --reuse runs the rounds on a database
kept from an earlier run (no new CDRs). Nothing here changes product code.
"""

import argparse
import csv
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import configure_django, create_database, describe_machine, drop_database  # noqa: E402

DEFAULT_URL = "mysql://root@127.0.0.1:3306/bench_controllers"
NODE = "bench1"
CHUNK = 1_000_000  # rows per INSERT … SELECT
PREMIUM = "Satellite (premium)"


def configure(url: str) -> None:
    configure_django(url, NODE)


def destinations(count: int) -> list[str]:
    with (ROOT / "fixtures" / "destinations.csv").open(newline="") as handle:
        names = list(dict.fromkeys(row["country"] for row in csv.DictReader(handle)))
    return names[:count]


def quoted(values) -> str:
    return ", ".join("'" + str(value).replace("'", "''") + "'" for value in values)


def build_world(args) -> dict:
    from apps.nodes import services as node_services
    from apps.peers import services as peer_services
    from apps.peers.models import Peer
    from apps.tenancy.scope import Scope

    system = Scope.system()
    node = node_services.create_node(
        actor=system, name=NODE, management_address="127.0.0.1", sip_address="127.0.0.1"
    )
    customers = [
        peer_services.create_peer(actor=system, name=f"Customer {i:03d}", role=Peer.Role.CUSTOMER).pk
        for i in range(args.customers)
    ]
    suppliers = [
        peer_services.create_peer(actor=system, name=f"Carrier {i:02d}", role=Peer.Role.SUPPLIER).pk
        for i in range(args.suppliers)
    ]
    return {"node": node.pk, "customers": customers, "suppliers": suppliers}


def fill_cdrs(args, world: dict, now: datetime) -> float:
    """Insert --cdrs CDRs over [now - days, now) with MariaDB's sequence engine; seconds taken."""
    from django.db import connection

    span_us = args.days * 86_400 * 1_000_000
    step_us = span_us // args.cdrs
    start = (now - timedelta(microseconds=span_us)).replace(tzinfo=None).isoformat(sep=" ")
    customers, suppliers = world["customers"], world["suppliers"]
    names = destinations(60)
    # A pseudo-random but repeatable draw per row: CRC32 of its number and a salt.
    draw = "CRC32(CONCAT(n, '{}'))"
    answered = f"(MOD({draw.format('a')}, 100) < 60)"
    duration = f"IF({answered}, 1000 + MOD({draw.format('d')}, 300000), 0)"
    select = f"""
        SELECT
            CONCAT('b', n, '@bench'), '', '', {world["node"]},
            ELT(1 + MOD({draw.format("c")}, {len(customers)}), {", ".join(map(str, customers))}),
            ELT(1 + MOD({draw.format("s")}, {len(suppliers)}), {", ".join(map(str, suppliers))}),
            '192.0.2.200', '441234567890',
            CONCAT('4420', LPAD(MOD({draw.format("n")}, 100000000), 8, '0')), '',
            ELT(1 + MOD({draw.format("x")}, {len(names)}), {quoted(names)}),
            TIMESTAMPADD(MICROSECOND, n * {step_us}, '{start}'),
            IF({answered}, TIMESTAMPADD(MICROSECOND, n * {step_us} + 2000000, '{start}'), NULL),
            TIMESTAMPADD(MICROSECOND, n * {step_us} + 2000000 + {duration} * 1000, '{start}'),
            {duration}, CEIL({duration} / 1000), CEIL({duration} / 1000),
            IF({answered}, 200, 503), IF({answered}, 'OK', 'Service Unavailable'),
            IF({answered}, CEIL({duration} / 1000) * 0.0002, NULL),
            IF({answered}, CEIL({duration} / 1000) * 0.00015, NULL),
            'rated', '', 0
        FROM (SELECT seq + %s AS n FROM seq_1_to_{min(CHUNK, args.cdrs)}) numbers
        WHERE n <= %s
    """
    columns = (
        "call_id, from_tag, to_tag, node_id, customer_id, supplier_id, source_ip, caller, callee, callee_out,"
        " destination, created_at, answered_at, ended_at, duration_ms, billable_seconds,"
        " supplier_billable_seconds, sip_code, sip_reason, sell_cost, buy_cost, rating_state, rating_error,"
        " estimated"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for offset in range(0, args.cdrs, CHUNK):
            cursor.execute(f"INSERT INTO cdr_cdr ({columns}) {select}", [offset - 1, args.cdrs - 1])
            print(
                f"  {min(offset + CHUNK, args.cdrs):,} CDRs in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        cursor.execute("ANALYZE TABLE cdr_cdr")
    return time.perf_counter() - started


def fill_released(args, world: dict, now: datetime) -> float:
    """Insert --released reservations of ended calls (the table is never purged): the live
    calls are found through the released_at index among them, as in production."""
    from django.db import connection

    from apps.billing.models import Account

    if not args.released:
        return 0.0
    accounts = dict(Account.objects.filter(peer_id__in=world["customers"]).values_list("peer_id", "pk"))
    customers = world["customers"]
    step_us = args.days * 86_400 * 1_000_000 // args.released
    start = (now - timedelta(days=args.days)).replace(tzinfo=None).isoformat(sep=" ")
    pick = f"1 + MOD(CRC32(CONCAT(n, 'c')), {len(customers)})"
    at = f"TIMESTAMPADD(MICROSECOND, n * {step_us}, '{start}')"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for offset in range(0, args.released, CHUNK):
            cursor.execute(
                "INSERT INTO billing_reservation (account_id, customer_id, node_id, call_id, amount,"
                " max_duration, prefix, destination, created_at, expires_at, released_at, outcome,"
                " cut_result)"
                f" SELECT ELT({pick}, {', '.join(str(accounts[c]) for c in customers)}),"
                f" ELT({pick}, {', '.join(map(str, customers))}), {world['node']}, CONCAT('r', n, '@bench'),"
                f" 0.60, 3600, '44', 'United Kingdom', {at}, TIMESTAMPADD(HOUR, 1, {at}),"
                f" TIMESTAMPADD(SECOND, 60, {at}), 'rated', ''"
                f" FROM (SELECT seq + %s AS n FROM seq_1_to_{min(CHUNK, args.released)}) numbers"
                " WHERE n <= %s",
                [offset - 1, args.released - 1],
            )
        cursor.execute("ANALYZE TABLE billing_reservation")
    return time.perf_counter() - started


def plant(args, world: dict, now: datetime) -> None:
    """The offenders the round must find, and 500 calls up now."""
    from apps.billing.models import Account, Reservation
    from apps.cdr.models import Cdr

    bad_supplier, customers = world["suppliers"][0], world["customers"]
    burst, premium = customers[1], customers[2]
    rows = []

    def cdr(
        customer, supplier, at, *, answered=True, destination="United Kingdom", cost="0.0120", callee=None
    ):
        rows.append(
            Cdr(
                call_id=f"p{len(rows)}@bench",
                customer_id=customer,
                supplier_id=supplier,
                node_id=world["node"],
                destination=destination,
                callee=callee or "442071234567",
                created_at=at,
                answered_at=at if answered else None,
                ended_at=at + timedelta(seconds=60 if answered else 0),
                duration_ms=60_000 if answered else 0,
                billable_seconds=60 if answered else 0,
                sip_code=200 if answered else 503,
                sell_cost=Decimal(cost) if answered else None,
                rating_state=Cdr.RatingState.RATED,
            )
        )

    for n in range(200):
        cdr(
            customers[3],
            bad_supplier,
            now - timedelta(seconds=600 - 2 * n),
            answered=n % 20 == 0,
            destination="Germany",
        )
    # Fifteen times the customer's usual hour (at least 400 calls), in the last 50 minutes.
    usual = args.cdrs / (args.days * 24) / len(customers)
    calls = max(400, int(15 * usual))
    for n in range(calls):
        cdr(burst, world["suppliers"][1], now - timedelta(seconds=3000 - n * 2800 / calls))
    for n in range(5):
        cdr(premium, world["suppliers"][2], now - timedelta(minutes=30 - n), destination=PREMIUM, cost="5.00")
    Cdr.objects.bulk_create(rows, batch_size=1000)
    accounts = dict(Account.objects.filter(peer_id__in=customers).values_list("peer_id", "pk"))
    Reservation.objects.bulk_create(
        [
            Reservation(
                account_id=accounts[customers[n % len(customers)]],
                customer_id=customers[n % len(customers)],
                node_id=world["node"],
                call_id=f"live{n}@bench",
                amount=Decimal("0.60"),
                max_duration=3600,
                destination="United Kingdom",
                sell_tariff={"prefix": "44", "price": "0.01", "fee": "0", "min": 1, "inc": 1, "free": 0},
                created_at=now - timedelta(seconds=n % 600),
                expires_at=now + timedelta(hours=1),
            )
            for n in range(500)
        ],
        batch_size=500,
    )


def make_controllers() -> list:
    from apps.fraud.models import Action, Controller, Kind, Metric

    common = {"action": Action.WARN, "notify": False}
    return [
        Controller.objects.create(
            name="ASR",
            kind=Kind.TERMINATION,
            metric=Metric.ASR,
            threshold=30,
            min_count=50,
            window_minutes=15,
            **common,
        ),
        Controller.objects.create(
            name="Burst",
            kind=Kind.BURST,
            metric=Metric.CALLS,
            threshold=10,
            floor=100,
            window_minutes=60,
            baseline_days=7,
            **common,
        ),
        Controller.objects.create(
            name="New destination",
            kind=Kind.NEW_DESTINATION,
            threshold=Decimal("1.00"),
            min_count=3,
            window_minutes=60,
            baseline_days=7,
            **common,
        ),
        Controller.objects.create(
            name="Sequential",
            kind=Kind.SEQUENTIAL,
            min_count=10,
            short_seconds=6,
            window_minutes=10,
            **common,
        ),
    ]


def explain(queries: list[dict]) -> None:
    from django.db import connection

    for query in queries:
        sql = query["sql"]
        if not sql.lstrip().upper().startswith("SELECT") or (
            "cdr_cdr" not in sql and "billing_reservation" not in sql
        ):
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql)
            plan = cursor.fetchall()
        print(f"\n  {query['time']} s  {sql[:300]}{' …' if len(sql) > 300 else ''}")
        for row in plan:
            # id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
            print(f"    {row[2]}: type={row[3]} key={row[5]} rows={row[8]} {row[9] or ''}")


def run_rounds(args, now: datetime) -> None:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from apps.fraud.controllers import RUNNERS, run_all
    from apps.fraud.models import Alert, Controller

    Alert.objects.all().delete()
    if not Controller.objects.exists():
        make_controllers()
    controllers = list(Controller.objects.order_by("pk"))
    for n in range(1, args.rounds + 1):
        Alert.objects.all().delete()
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            result = run_all(now=now)
            took = time.perf_counter() - started
        print(
            f"round {n}: {took:.2f} s, {len(captured.captured_queries)} queries, judged {result['judged']},"
            f" raised {len(result['raised'])}, failed {result['failed']}",
            flush=True,
        )
    for alert in Alert.objects.order_by("pk"):
        print(
            f"  alert: {alert.get_kind_display()}: {alert.subject}: {alert.measured} ({alert.detail[:120]})"
        )
    print("\nEach controller alone (alerts cleared before each):")
    for controller in controllers:
        Alert.objects.all().delete()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            RUNNERS[controller.kind](controller, now=now)
            took = time.perf_counter() - started
        print(
            f"\n{controller.name} ({controller.kind}): {took:.3f} s, {len(captured.captured_queries)} queries"
        )
        explain(captured.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--cdrs", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--released", type=int, default=1_000_000, help="reservations of ended calls")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--suppliers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--reuse", action="store_true", help="run the rounds on a kept database")
    args = parser.parse_args()
    if not args.database_url.startswith("mysql"):
        raise SystemExit("the CDRs are written by MariaDB's sequence engine: --database-url mysql://…")
    configure(args.database_url)
    from django.core.management import call_command
    from django.db import connection

    print(describe_machine(), flush=True)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.reuse:
        with connection.cursor() as cursor:
            cursor.execute("SELECT MAX(created_at) FROM cdr_cdr")
            now = cursor.fetchone()[0].replace(tzinfo=UTC) + timedelta(seconds=1)
            cursor.execute("SELECT COUNT(*) FROM cdr_cdr")
            print(f"reusing {cursor.fetchone()[0]:,} CDRs up to {now:%Y-%m-%d %H:%M:%S}", flush=True)
    else:
        now = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        create_database(args.database_url)
        call_command("migrate", verbosity=0)
        world = build_world(args)
        print(f"database created, migrated and built in {time.perf_counter() - started:.1f} s", flush=True)
        took = fill_cdrs(args, world, now)
        print(f"{args.cdrs:,} CDRs written in {took:.0f} s ({args.cdrs / took:,.0f}/s)", flush=True)
        took = fill_released(args, world, now)
        print(f"{args.released:,} released reservations written in {took:.0f} s", flush=True)
        plant(args, world, now)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data_length + index_length FROM information_schema.TABLES"
            " WHERE table_schema = DATABASE() AND table_name = 'cdr_cdr'"
        )
        print(f"cdr_cdr: {cursor.fetchone()[0] / 2**30:.2f} GiB with its indexes", flush=True)
    try:
        run_rounds(args, now)
    finally:
        if not args.keep and not args.reuse:
            drop_database(args.database_url)


if __name__ == "__main__":
    main()
