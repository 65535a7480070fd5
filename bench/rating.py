"""How fast CDRs are rated with their ledger postings, and how fast a period is re-rated.

Builds a wholesale switch in a database of its own: a sell deck and three suppliers' buy
decks of --prefixes prefixes each (default 100,000), loaded through the price import
(apps.rates.services.imports); --customers customers (default 1,000) with accounts, prepaid with a
large balance and one in ten postpaid, one in five prepaid ones with a low-balance
threshold; three suppliers with their (postpaid) accounts. Then three measurements:

1. Backlog: --cdrs unrated CDRs (default 200,000) are bulk inserted — about 30 %
   unanswered, answered ones lasting 1-600 s, callees under the sell deck's prefixes, a
   few % to numbers no list prices (1.5 % no sell rate, 0.5 % a sell rate but no buy
   rate: the error path) and one call in ten holding a live reservation — and --raters
   worker processes (default 2, two workers of one node) run `rating.rate_batch` loops,
   as the billing worker does, until none is left. Prints CDRs/s, charges/s, errors,
   conflict retries (apps.core.db.retry_stats), CPU of the raters and of the database,
   then checks the books: every CDR rated or in error once, two charges per answered
   rated call, no reference twice, each side's charges equal to the CDRs' costs, every
   reservation released, `ledger_differences()` empty.
2. Sustained: a producer process inserts CDRs at --rate per second (default 5,000) for
   --seconds (default 60), each with ended_at = the moment it is written, while the
   raters run the worker's loop (sleep --idle seconds after a short batch, as
   apps.billing.tasks.billing_loop does). Prints the lag from insert to the commit of the
   batch that rated the CDR (p50, p99, max) and to its rated_at, and the same checks.
3. Re-rating: CDRs are added (and rated by the raters) until --rerate-cdrs (default
   1,000,000) CDRs are rated; then a corrected sell list changing --change (20 %) of its
   prices is imported, the index rebuilt, and `apps.billing.services.rerating.run` (the task)
   re-rates the whole period in this process (once per --rerate-batch size). Prints
   CDRs/s, calls examined and changed, adjustments posted, the time spent per kind of
   statement, and checks that each account's charges plus adjustments equal its calls'
   current costs and that `ledger_differences()` is empty.

Every measurement also prints the CPU used meanwhile by other processes of the machine:
figures taken while something else ran are not comparable.

    .venv/bin/python bench/rating.py
    .venv/bin/python bench/rating.py --reuse --phases backlog --raters 1,2 --batch 500,1000
    .venv/bin/python bench/rating.py --reuse --phases sustained --rate 5000 --seconds 60
    .venv/bin/python bench/rating.py --reuse --phases rerate
    .venv/bin/python bench/rating.py --reuse --profile rating --cdrs 100000    # in process, cProfile
    .venv/bin/python bench/rating.py --reuse --phases rerate --profile rerating

The database (default mysql://root@127.0.0.1:3306/smartswitch_bench_rating; a postgres://
URL works too) is created, migrated and dropped at the end. --keep keeps it; --reuse keeps
it too and uses it again next time when it was built with the same --prefixes,
--customers and --seed (the world takes half a minute to build): its CDRs, charges,
reservations and re-rating runs are then emptied first (but for --phases rerate alone,
which goes on from the rated CDRs there). Nothing here changes product code; the raters
run the code as it is.
"""

import argparse
import contextlib
import cProfile
import csv
import json
import os
import pickle
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402 - after the repository is on sys.path
    Code,
    _unit,
    create_database,
    database_exists,
    describe_machine,
    drop_database,
    integers,
    load_codes,
    percentile,
)

DEFAULT_URL = "mysql://root@127.0.0.1:3306/smartswitch_bench_rating"
NODE = "bench1"
SELL_TABLE = "Bench retail"
SUPPLIERS = ("Carrier A", "Carrier B", "Carrier C")
EFFECTIVE_FROM = "2026-01-01T00:00:00Z"  # every deck's rows: the CDRs of the last days are priced
SELL_ONLY = "990"  # a range only the sell deck prices: its answered calls have no buy rate
SELL_MARKUP = 1.3
PREPAID_BALANCE = Decimal("1000000")
POSTPAID_CREDIT = Decimal("100000")
LOW_BALANCE_THRESHOLD = Decimal("10")
RESERVED_AMOUNT = Decimal("1.500000")
TICK = os.sysconf("SC_CLK_TCK")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- the decks ------------------------------------------------------------------------------


def decks(codes: list[Code], prefixes: int, seed: int) -> tuple[list, list[list]]:
    """The sell deck and the buy decks as (prefix, code index) lists.

    Every code, plus number blocks 1-6 digits longer than a leaf code (as carriers price
    NPA-NXX ranges and mobile operators' blocks) from one pool 15 % larger than a deck:
    each supplier prices most of the customers' blocks; a number outside a supplier's
    blocks falls to its code.
    """
    rnd = random.Random(seed)
    ordered = sorted(range(len(codes)), key=lambda i: codes[i].prefix)
    leaves = [
        i
        for n, i in enumerate(ordered)
        if n + 1 == len(ordered) or not codes[ordered[n + 1]].prefix.startswith(codes[i].prefix)
    ]
    taken = {code.prefix for code in codes}
    pool = []
    while len(pool) < max(0, int(prefixes * 1.15) - len(codes)):
        index = rnd.choice(leaves)
        code = codes[index]
        room = max(1, min(6, code.length - len(code.prefix) - 3))
        prefix = code.prefix + str(rnd.randrange(10**room)).zfill(room)[: rnd.randint(1, room)]
        if prefix not in taken:
            taken.add(prefix)
            pool.append((prefix, index))
    codes_only = [(code.prefix, i) for i, code in enumerate(codes)]
    size = max(0, prefixes - len(codes))
    sell = codes_only + pool[:size]
    buys = [codes_only + random.Random(seed + 1 + n).sample(pool, size) for n in range(len(SUPPLIERS))]
    return sell, buys


def write_deck(path: Path, codes: list[Code], entries: list, *, supplier: int | None) -> int:
    """Write a canonical CSV of sell prices, or of supplier number `supplier`'s buy prices."""
    with path.open("w", newline="") as out:
        out.write(
            "prefix,destination,rate,connection_fee,min_seconds,increment_seconds,free_seconds,"
            "effective_from,effective_to\n"
        )
        for prefix, index in entries:
            code = codes[index]
            base = code.reference * (0.8 + 0.4 * _unit(prefix))
            if supplier is None:
                price = base * SELL_MARKUP
            else:
                price = base * (0.8 + 0.6 * _unit(f"{supplier}/{prefix}"))
            out.write(f"{prefix},{code.destination},{price:.6f},0,{code.increments},{EFFECTIVE_FROM},\n")
        if supplier is None:
            out.write(f"{SELL_ONLY},Bench sell-only range,0.050000,0,30,6,0,{EFFECTIVE_FROM},\n")
    return len(entries) + (supplier is None)


# --- the database ---------------------------------------------------------------------------


def marker(args) -> dict:
    """What the database was built for; kept in the sell table's description for --reuse."""
    return {"bench": "rating", "prefixes": args.prefixes, "customers": args.customers, "seed": args.seed}


def reusable(args) -> dict | None:
    """The setup timings of the run that built the database, if it was built for these sizes."""
    if not database_exists(args.database_url):
        return None
    from django.db import DatabaseError

    from apps.rates.models import RateTable

    try:
        description = RateTable.objects.filter(name=SELL_TABLE).values_list("description", flat=True).first()
        recorded = json.loads(description or "{}")
    except (DatabaseError, ValueError):
        return None
    return recorded if {k: recorded.get(k) for k in marker(args)} == marker(args) else None


@dataclass
class World:
    """Ids of what the CDRs refer to, and the sell deck their callees are drawn from."""

    node_id: int
    sell_table_id: int
    customers: list[int]  # peer ids
    accounts: dict[int, int]  # customer peer id -> account id
    suppliers: list[int]


def build_world(args, codes: list[Code], workdir: Path) -> dict:
    """Create the node, price lists, suppliers and customers with accounts; return timings."""
    from django.db import connection

    from apps.billing import services as billing
    from apps.billing.models import Account, LedgerEntry
    from apps.nodes import services as node_services
    from apps.peers import services as peer_services
    from apps.peers.models import Peer
    from apps.rates import services as rate_services
    from apps.rates.services import activation
    from apps.tenancy.scope import Scope

    system = Scope.system()
    timings: dict = {"imports": []}
    node_services.create_node(
        actor=system, name=NODE, management_address="127.0.0.1", sip_address="127.0.0.1"
    )
    sell, buys = decks(codes, args.prefixes, args.seed)
    tables = []
    for n, (name, entries) in enumerate(
        [(SELL_TABLE, sell), *((f"{s} buy", b) for s, b in zip(SUPPLIERS, buys, strict=True))]
    ):
        path = workdir / f"deck-{n}.csv"
        rows = write_deck(path, codes, entries, supplier=None if n == 0 else n)
        table = rate_services.create_rate_table(
            actor=system, name=name, purpose="sell" if n == 0 else "buy", currency="USD"
        )
        started = time.perf_counter()
        report = activation.import_price_file(
            table, path.read_bytes(), actor=system, filename=path.name, mode="full"
        )
        took = time.perf_counter() - started
        if not report.ok:
            raise SystemExit(f"import of {name} failed: {report.lines()[:10]}")
        path.unlink()
        timings["imports"].append({"table": name, "rows": rows, "seconds": round(took, 1)})
        print(f"imported {name}: {rows:,} rows in {took:.1f} s ({rows / took:,.0f} rows/s)", flush=True)
        tables.append(table)

    started = time.perf_counter()
    for n, name in enumerate(SUPPLIERS):
        peer_services.create_peer(
            actor=system, name=name, role=Peer.Role.SUPPLIER, buy_rate_table_id=tables[n + 1].pk
        )
    # The first customer through the services, as the admin and the API make one; the others
    # copy its rows with bulk_create (create_peer and post_payment write the same Peer,
    # Account and LedgerEntry rows, plus an audit row each, left out here).
    first = peer_services.create_peer(
        actor=system, name="Customer 0000", role=Peer.Role.CUSTOMER, sell_rate_table_id=tables[0].pk
    )
    billing.post_payment(first.account, actor=system, amount=PREPAID_BALANCE, reference="bench-topup-0")
    numbers = range(1, args.customers)
    Peer.objects.bulk_create(
        [
            Peer(name=f"Customer {i:04d}", role=Peer.Role.CUSTOMER, sell_rate_table_id=tables[0].pk)
            for i in numbers
        ],
        batch_size=2000,
    )
    ids = dict(Peer.objects.filter(name__startswith="Customer ").values_list("name", "pk"))
    ids = [ids[f"Customer {i:04d}"] for i in range(args.customers)]
    postpaid = {i for i in numbers if i % 10 == 9}
    Account.objects.bulk_create(
        [
            Account(
                peer_id=ids[i],
                currency="USD",
                mode=Account.Mode.POSTPAID if i in postpaid else Account.Mode.PREPAID,
                credit_limit=POSTPAID_CREDIT if i in postpaid else 0,
                balance=0 if i in postpaid else PREPAID_BALANCE,
                low_balance_threshold=LOW_BALANCE_THRESHOLD if i % 5 == 1 else None,
            )
            for i in numbers
        ],
        batch_size=2000,
    )
    accounts = dict(Account.objects.filter(peer_id__in=ids).values_list("peer_id", "pk"))
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                account_id=accounts[ids[i]],
                kind=LedgerEntry.Kind.PAYMENT,
                amount=PREPAID_BALANCE,
                reference=f"bench-topup-{i}",
                description="Payment",
            )
            for i in numbers
            if i not in postpaid
        ],
        batch_size=2000,
    )
    timings["peers"] = round(time.perf_counter() - started, 1)
    print(f"{args.customers:,} customers and {len(SUPPLIERS)} suppliers in {timings['peers']:.1f} s")
    rate_services.update_rate_table(
        tables[0], actor=system, changes={"description": json.dumps({**marker(args), **timings})}
    )
    connection.close()
    return timings


def load_world() -> World:
    from apps.billing.models import Account
    from apps.nodes.models import Node
    from apps.peers.models import Peer
    from apps.rates.models import RateTable

    customers = list(
        Peer.objects.filter(role=Peer.Role.CUSTOMER, name__startswith="Customer ")
        .order_by("name")
        .values_list("pk", flat=True)
    )
    return World(
        node_id=Node.objects.get(name=NODE).pk,
        sell_table_id=RateTable.objects.get(name=SELL_TABLE).pk,
        customers=customers,
        accounts=dict(Account.objects.filter(peer_id__in=customers).values_list("peer_id", "pk")),
        suppliers=[Peer.objects.get(name=name).pk for name in SUPPLIERS],
    )


def empty_books() -> None:
    """Forget the CDRs, charges, reservations and re-rating runs of an earlier run (--reuse).

    Benchmark housekeeping on the bench's own database, not a product path: the payments
    stay and each balance is set back to their sum.
    """
    from django.db import connection

    from apps.billing.models import Account, LedgerEntry, RerateLine, RerateRun, Reservation
    from apps.cdr.models import Cdr

    ledger, account = LedgerEntry._meta.db_table, Account._meta.db_table
    emptied = [RerateLine, RerateRun, Reservation, Cdr]
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                f"CREATE TEMPORARY TABLE bench_payments AS SELECT * FROM {ledger} WHERE kind = 'payment'"
            )
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for model in [LedgerEntry, *emptied]:
                cursor.execute(f"TRUNCATE TABLE {model._meta.db_table}")
            cursor.execute(f"INSERT INTO {ledger} SELECT * FROM bench_payments")
            cursor.execute("DROP TEMPORARY TABLE bench_payments")
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        else:
            cursor.execute(f"DELETE FROM {ledger} WHERE kind <> 'payment'")
            tables = ", ".join(model._meta.db_table for model in emptied)
            cursor.execute(f"TRUNCATE TABLE {tables} RESTART IDENTITY CASCADE")
        cursor.execute(
            f"UPDATE {account} SET reserved = 0, low_balance_warned = FALSE, balance = COALESCE("
            f"(SELECT SUM(amount) FROM {ledger} l WHERE l.account_id = {account}.id), 0)"
        )


# --- the CDRs -------------------------------------------------------------------------------

CDR_COLUMNS = (
    "call_id", "from_tag", "to_tag", "node_id", "customer_id", "supplier_id", "source_ip", "caller",
    "callee", "callee_out", "destination", "created_at", "answered_at", "ended_at", "duration_ms",
    "billable_seconds", "supplier_billable_seconds", "sip_code", "sip_reason", "rating_state",
    "rating_error",
)  # fmt: skip
RESERVATION_COLUMNS = (
    "account_id", "customer_id", "node_id", "call_id", "amount", "max_duration", "prefix",
    "destination", "supplier_id", "created_at", "expires_at", "outcome", "cut_result",
)  # fmt: skip


@dataclass(slots=True)
class Call:
    """One generated call: what its CDR says, less the times (set when it is written)."""

    call_id: str
    customer: int
    supplier: int
    callee: str
    duration_ms: int
    sip_code: int
    reserved: bool
    priced: str  # "yes", "no sell" or "no buy": what rating should make of it


def make_calls(world: World, sell: list, codes: list[Code], count: int, *, tag: str, seed: int, args) -> list:
    """`count` calls: ~30 % unanswered, 1-600 s otherwise, a few % to numbers without a price."""
    rnd = random.Random(seed)
    calls = []
    customers, suppliers = world.customers, world.suppliers
    for n in range(count):
        answered = rnd.random() >= args.unanswered
        roll = rnd.random()
        if roll < args.miss * 0.75:
            callee, priced = "0" + str(rnd.randrange(10**11)).zfill(11), "no sell"
        elif roll < args.miss:
            callee, priced = SELL_ONLY + str(rnd.randrange(10**8)).zfill(8), "no buy"
        else:
            prefix, index = sell[rnd.randrange(len(sell))]
            extra = max(1, codes[index].length - len(prefix))
            callee, priced = prefix + str(rnd.randrange(10**extra)).zfill(extra), "yes"
        if answered:
            # Most calls are short, a few last the whole ten minutes.
            seconds = min(600.0, 1 + rnd.expovariate(1 / 100))
            duration_ms, sip_code = int(seconds * 1000), 200
        else:
            duration_ms, sip_code, priced = 0, rnd.choice((486, 487, 480, 503)), "yes"
        calls.append(
            Call(
                f"{tag}-{n}@bench",
                customers[rnd.randrange(len(customers))],
                suppliers[rnd.randrange(len(suppliers))],
                callee,
                duration_ms,
                sip_code,
                rnd.random() < args.reserved,
                priced,
            )
        )
    return calls


def cdr_row(call: Call, world: World, ended_at: datetime, adapt) -> tuple:
    """The CDR of `call` as OpenSIPS writes it when the call ends at `ended_at`."""
    answered_at = ended_at - timedelta(milliseconds=call.duration_ms) if call.duration_ms else None
    created_at = (answered_at or ended_at) - timedelta(seconds=4)
    return (
        call.call_id, "ft", "tt", world.node_id, call.customer,
        call.supplier if call.sip_code == 200 else None, "198.18.0.1", "15550000000", call.callee,
        call.callee, "", adapt(created_at),
        adapt(answered_at) if answered_at else None, adapt(ended_at), call.duration_ms, 0, 0, call.sip_code,
        "", "unrated", "",
    )  # fmt: skip


def insert_cdrs(rows: list[tuple], *, chunk: int = 2000) -> None:
    from django.db import connection, transaction

    from apps.cdr.models import Cdr

    sql = (
        f"INSERT INTO {Cdr._meta.db_table} ({', '.join(CDR_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(CDR_COLUMNS))})"
    )
    for start in range(0, len(rows), chunk):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows[start : start + chunk])


def hold_money(calls: list[Call], world: World, now: datetime) -> int:
    """Reserve money for the calls that hold some, as call control did when it set them up."""
    from django.db import connection, transaction

    from apps.billing.models import Account, Reservation

    adapt = connection.ops.adapt_datetimefield_value
    held = [call for call in calls if call.reserved]
    rows = [
        (
            world.accounts[call.customer],
            call.customer,
            world.node_id,
            call.call_id,
            RESERVED_AMOUNT,
            600,
            "",
            "",
            call.supplier,
            adapt(now - timedelta(minutes=15)),
            adapt(now + timedelta(hours=6)),
            "",
            "",
        )
        for call in held
    ]
    totals: Counter = Counter()
    for call in held:
        totals[world.accounts[call.customer]] += RESERVED_AMOUNT
    sql = (
        f"INSERT INTO {Reservation._meta.db_table} ({', '.join(RESERVATION_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(RESERVATION_COLUMNS))})"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), 2000):
            cursor.executemany(sql, rows[start : start + 2000])
        cursor.executemany(
            f"UPDATE {Account._meta.db_table} SET reserved = reserved + %s WHERE id = %s",
            [(amount, account) for account, amount in sorted(totals.items())],
        )
    return len(rows)


def add_backlog(calls: list[Call], world: World, *, first: datetime, last: datetime) -> None:
    """Write `calls` as unrated CDRs that ended between `first` and `last`, oldest first."""
    from django.db import connection

    adapt = connection.ops.adapt_datetimefield_value
    step = (last - first) / max(1, len(calls))
    rows = [cdr_row(call, world, first + step * n, adapt) for n, call in enumerate(calls)]
    for start in range(0, len(calls), 100_000):
        hold_money(calls[start : start + 100_000], world, first)
    insert_cdrs(rows)


# --- CPU ------------------------------------------------------------------------------------


DATABASE_PID: list[int] = []  # the MariaDB server's process, once known (see database_pid)


def database_pid() -> None:
    """Note which process is the MariaDB server of DATABASE_URL: a second one may be running."""
    from django.db import connection

    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@pid_file")
            with contextlib.suppress(OSError, ValueError):
                DATABASE_PID.append(int(Path(cursor.fetchone()[0]).read_text().split()[0]))


def with_others(cpu: dict[str, float]) -> dict[str, float]:
    """Add the cores used meanwhile by processes other than the measured ones (others' work)."""
    return {**cpu, "others": max(0.0, cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine"))}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the database server and of the whole machine.

    PostgreSQL's server is every process named postgres, one per connection: a backend
    that exits between two samples takes its CPU time with it, so on PostgreSQL the
    database's share reads low and the other processes' high.
    """
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICK)
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return {
        "database": sum(table[pid][2] for pid in DATABASE_PID if pid in table)
        if DATABASE_PID
        else sum(cpu for _parent, name, cpu in table.values() if name == "postgres"),
        "machine": (sum(values) - values[3] - values[4]) / TICK,  # all but idle and iowait
    }


# --- the raters and the producer (separate processes) ---------------------------------------


def run_rater(cfg: dict) -> None:
    """A rater process: the worker's rating loop until the backlog is empty (or told to stop)."""
    from django.conf import settings
    from django.utils import timezone

    from apps.billing.services import rating
    from apps.billing.services.online import cut_overruns
    from apps.core.db import retry_stats
    from apps.nodes.models import Node
    from apps.rates.lookup import get_index
    from apps.rates.models import RateTable

    node_id = Node.objects.filter(name=settings.NODE_NAME).values_list("pk", flat=True).first()
    for table_id in RateTable.objects.values_list("pk", flat=True):
        get_index(table_id)  # mapped before the clock starts, as in a worker that has run a while
    stop = Path(cfg["stop"]) if cfg.get("stop") else None
    total = rating.BatchResult()
    batches = []  # (rated_at in µs, seconds until committed, selected)
    wait_for_go(cfg)
    next_cut = time.monotonic()
    began_at, cpu = time.time(), time.process_time()
    while True:
        if stop is not None and time.monotonic() >= next_cut:
            cut_overruns()  # online billing, as billing_loop runs it between batches
            next_cut = time.monotonic() + settings.ONLINE_BILLING_INTERVAL
        now = timezone.now()
        began = time.perf_counter()
        result = rating.rate_batch(limit=cfg["batch"], node_id=node_id, now=now)
        took = time.perf_counter() - began
        total.add(result)
        if result.selected:
            batches.append(((now - EPOCH) // timedelta(microseconds=1), took, result.selected))
        if stop is None:
            if result.selected == 0:
                break
        elif result.selected < cfg["batch"]:
            if result.selected == 0 and stop.exists():
                break
            time.sleep(cfg["idle"])
    print(
        json.dumps(
            {
                "result": total.__dict__,
                "began": began_at,
                "ended": time.time(),
                "cpu": time.process_time() - cpu,
                "retries": retry_stats.retries,
                "gave_up": retry_stats.gave_up,
                "batches": batches,
            }
        ),
        flush=True,
    )


def run_producer(cfg: dict) -> None:
    """The producer process: write the calls' CDRs at a fixed rate, each as it ends."""
    from django.db import connection
    from django.utils import timezone

    world = World(**cfg["world"])
    calls = pickle.loads(Path(cfg["calls"]).read_bytes())
    adapt = connection.ops.adapt_datetimefield_value
    rate, written, behind = cfg["rate"], 0, 0.0
    wait_for_go(cfg)
    began_at, cpu = time.time(), time.process_time()
    started = time.perf_counter()
    while written < len(calls):
        due = min(len(calls), int((time.perf_counter() - started) * rate) + 1)
        if due > written:
            now = timezone.now()
            insert_cdrs([cdr_row(call, world, now, adapt) for call in calls[written:due]])
            behind = max(behind, due / rate - (time.perf_counter() - started))
            written = due
        time.sleep(cfg["tick"])
    print(
        json.dumps(
            {
                "written": written,
                "began": began_at,
                "ended": time.time(),
                "cpu": time.process_time() - cpu,
                "behind": -behind,
            }
        ),
        flush=True,
    )


def wait_for_go(cfg: dict) -> None:
    """Say this process is ready, then wait until every process of the measurement is."""
    print("ready", flush=True)
    go = Path(cfg["go"])
    while not go.exists():
        time.sleep(0.005)


def start(role: str, cfg: dict, workdir: Path) -> subprocess.Popen:
    path = workdir / f"{role}-{random.randrange(16**8):08x}.json"
    path.write_text(json.dumps(cfg))
    return subprocess.Popen(
        [sys.executable, __file__, f"--{role}", str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def go(processes: list[subprocess.Popen], cfg: dict) -> dict[str, float]:
    """Wait until `processes` are set up, start them together; the CPU counters at that moment."""
    for process in processes:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"a {process.args[2][2:]} process failed to start: {line!r}")
    before = cpu_seconds()
    Path(cfg["go"]).touch()
    return before


def collect(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a {process.args[2][2:]} process failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


# --- checks ---------------------------------------------------------------------------------


def check_books(first_id: int, last_id: int, calls: list[Call], results: list[dict]) -> list[str]:
    """Verify the rating of CDRs first_id..last_id; return one line per check, failures first."""
    from django.db.models import Count, Q, Sum

    from apps.billing.models import Account, LedgerEntry, Reservation
    from apps.billing.services import ledger_differences
    from apps.cdr.models import Cdr

    cdrs = Cdr.objects.filter(pk__gte=first_id, pk__lte=last_id)
    states = dict(cdrs.values_list("rating_state").annotate(n=Count("id")).order_by())
    counted = Counter()
    for result in results:
        counted.update(result["result"])
    rated, errors = states.get("rated", 0), states.get("error", 0)
    expected_errors = sum(call.priced != "yes" for call in calls)
    answered = cdrs.filter(rating_state="rated", duration_ms__gt=0)
    charges = LedgerEntry.objects.filter(
        kind=LedgerEntry.Kind.CHARGE, cdr_id__gte=first_id, cdr_id__lte=last_id
    )
    twice = charges.values("account_id", "kind", "reference").annotate(n=Count("id")).filter(n__gt=1).count()
    customer_ids = set(Account.objects.filter(peer__role="customer").values_list("pk", flat=True))
    sums = defaultdict(Decimal)
    for account_id, amount in (
        charges.values("account_id").annotate(s=Sum("amount")).values_list("account_id", "s")
    ):
        sums["sell" if account_id in customer_ids else "buy"] += amount
    costs = answered.aggregate(sell=Sum("sell_cost"), buy=Sum("buy_cost"))
    zero = answered.filter(Q(sell_cost=0) | Q(buy_cost=0)).count()
    call_ids = [call.call_id for call in calls if call.reserved]
    # A call that cannot be rated keeps its money held until it is fixed, or until the
    # reservation expires.
    unpriced = sum(call.reserved and call.priced != "yes" for call in calls)
    still_held = sum(
        Reservation.objects.filter(call_id__in=call_ids[i : i + 5000], released_at__isnull=True).count()
        for i in range(0, len(call_ids), 5000)
    )
    live = Reservation.objects.active().aggregate(s=Sum("amount"))["s"] or Decimal(0)
    reserved = Account.objects.aggregate(s=Sum("reserved"))["s"] or Decimal(0)
    differences = ledger_differences()
    checks = [
        (
            states.get("unrated", 0) == 0 and rated + errors == len(calls),
            f"{len(calls):,} CDRs: {rated:,} rated, {errors:,} cannot be rated, "
            f"{states.get('unrated', 0)} left unrated",
        ),
        (
            counted["rated"] == rated and counted["errors"] == errors,
            f"the raters counted {counted['rated']:,} rated and {counted['errors']:,} errors (each CDR once)",
        ),
        (
            errors == expected_errors,
            f"errors: {errors:,}, calls generated without a price: {expected_errors:,}",
        ),
        (
            charges.count() == 2 * answered.count() == counted["charges"] and zero == 0,
            f"{charges.count():,} charges for {answered.count():,} answered rated calls (2 each; the "
            f"raters posted {counted['charges']:,})",
        ),
        (twice == 0, f"references posted twice: {twice}"),
        (
            sums["sell"] == -(costs["sell"] or 0) and sums["buy"] == -(costs["buy"] or 0),
            f"customers' charges {sums['sell']} = -sell costs {costs['sell']}; "
            f"suppliers' {sums['buy']} = -buy costs {costs['buy']}",
        ),
        (
            still_held == unpriced and counted["released"] == len(call_ids) - unpriced and live == reserved,
            f"{counted['released']:,} of {len(call_ids):,} reservations released, {still_held} still held "
            f"(calls without a price: {unpriced}); "
            f"accounts' reserved {reserved} = live reservations {live}",
        ),
        (not differences, f"ledger_differences(): {len(differences)} account(s) differ"),
    ]
    return [("ok   " if good else "FAIL ") + text for good, text in sorted(checks, key=lambda c: c[0])]


# --- the phases -----------------------------------------------------------------------------


def last_cdr_id() -> int:
    from apps.cdr.models import Cdr

    return Cdr.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def rate_backlog(cfg: dict, workdir: Path, raters: int, batch: int) -> tuple[list[dict], dict, float]:
    """Run `raters` rater processes until the backlog is empty; (their results, CPU, seconds)."""
    from django.db import connections

    connections.close_all()
    cfg = {**cfg, "batch": batch, "go": str(workdir / f"go-{random.randrange(16**8):08x}")}
    processes = [start("rater", cfg, workdir) for _ in range(raters)]
    before = go(processes, cfg)
    results = [collect(process) for process in processes]
    after = cpu_seconds()
    seconds = max(r["ended"] for r in results) - min(r["began"] for r in results)
    cpu = with_others(
        {
            "raters": sum(r["cpu"] for r in results) / seconds,
            "database": (after["database"] - before["database"]) / seconds,
            "machine": (after["machine"] - before["machine"]) / seconds,
        }
    )
    return results, cpu, seconds


def summarize(results: list[dict]) -> dict:
    total = Counter()
    for result in results:
        total.update(result["result"])
    total["retries"] = sum(r["retries"] for r in results)
    total["gave_up"] = sum(r["gave_up"] for r in results)
    batch_seconds = [took for r in results for _at, took, _n in r["batches"]]
    total["batch_p50_ms"] = percentile(batch_seconds, 0.5) * 1000
    total["batch_p99_ms"] = percentile(batch_seconds, 0.99) * 1000
    return total


def backlog_phase(args, world: World, sell: list, codes: list[Code], cfg: dict, workdir: Path) -> list[dict]:
    from django.utils import timezone

    rows = []
    for raters in args.raters:
        for batch in args.batch:
            tag = f"b{random.randrange(16**6):06x}"
            calls = make_calls(world, sell, codes, args.cdrs, tag=tag, seed=args.seed + len(rows), args=args)
            now = timezone.now()
            first_id = last_cdr_id() + 1
            started = time.perf_counter()
            add_backlog(calls, world, first=now - timedelta(hours=1), last=now - timedelta(minutes=5))
            print(
                f"\n{len(calls):,} unrated CDRs written in {time.perf_counter() - started:.1f} s "
                f"({sum(c.reserved for c in calls):,} holding a reservation)",
                flush=True,
            )
            results, cpu, seconds = rate_backlog(cfg, workdir, raters, batch)
            total = summarize(results)
            row = {
                "phase": "backlog",
                "raters": raters,
                "batch": batch,
                "cdrs": len(calls),
                "seconds": seconds,
                "cdr_s": (total["rated"] + total["errors"]) / seconds,
                "charges_s": total["charges"] / seconds,
                "cpu": cpu,
                **{k: total[k] for k in ("errors", "retries", "gave_up", "released")},
                "batch_p50_ms": total["batch_p50_ms"],
                "batch_p99_ms": total["batch_p99_ms"],
            }
            print(
                f"backlog, {raters} rater(s), batches of {batch}: {len(calls):,} CDRs in {seconds:.1f} s = "
                f"{row['cdr_s']:,.0f} CDRs/s, {row['charges_s']:,.0f} charges/s; errors {total['errors']:,}, "
                f"conflict retries {total['retries']} "
                f"(gave up {total['gave_up']}); "
                f"batch p50 {total['batch_p50_ms']:.0f} ms, p99 {total['batch_p99_ms']:.0f} ms"
            )
            print(
                f"  CPU, cores: raters {cpu['raters']:.2f}, database {cpu['database']:.2f}, "
                f"other processes {cpu['others']:.2f}, whole machine {cpu['machine']:.2f} of {os.cpu_count()}"
            )
            row["checks"] = check_books(first_id, last_cdr_id(), calls, results)
            print("  " + "\n  ".join(row["checks"]), flush=True)
            rows.append(row)
    return rows


def sustained_phase(
    args, world: World, sell: list, codes: list[Code], cfg: dict, workdir: Path
) -> list[dict]:
    from django.db import connections
    from django.utils import timezone

    from apps.cdr.models import Cdr

    rows = []
    for rate in args.rate:
        count = int(rate * args.seconds)
        tag = f"s{random.randrange(16**6):06x}"
        calls = make_calls(world, sell, codes, count, tag=tag, seed=args.seed + 1000, args=args)
        hold_money(calls, world, timezone.now())
        path = workdir / f"calls-{tag}.pickle"
        path.write_bytes(pickle.dumps(calls))
        first_id = last_cdr_id() + 1
        stop = workdir / f"stop-{tag}"
        connections.close_all()
        cfg = {**cfg, "go": str(workdir / f"go-{tag}")}
        raters = [
            start("rater", {**cfg, "batch": args.batch[0], "stop": str(stop), "idle": args.idle}, workdir)
            for _ in range(args.raters[-1])
        ]
        producer = start(
            "producer",
            {**cfg, "world": world.__dict__, "calls": str(path), "rate": rate, "tick": 0.02},
            workdir,
        )
        before = go([*raters, producer], cfg)
        produced = collect(producer)
        stop.touch()
        results = [collect(rater) for rater in raters]
        after = cpu_seconds()
        seconds = max(r["ended"] for r in results) - produced["began"]
        drained = max(r["ended"] for r in results) - produced["ended"]
        total = summarize(results)
        committed = {}
        for result in results:
            for at, took, _n in result["batches"]:
                committed[at] = at + int(took * 1e6)
        # From the moment the CDR was written (its ended_at) to the commit of the batch that
        # rated it, and to its rated_at (when that batch began).
        lags, stamped = [], []
        for ended_at, rated_at in Cdr.objects.filter(pk__gte=first_id).values_list("ended_at", "rated_at"):
            at = (rated_at - EPOCH) // timedelta(microseconds=1)
            lags.append((committed[at] - (ended_at - EPOCH) // timedelta(microseconds=1)) / 1e6)
            stamped.append((rated_at - ended_at).total_seconds())
        cpu = with_others(
            {
                "raters": sum(r["cpu"] for r in results) / seconds,
                "producer": produced["cpu"] / seconds,
                "database": (after["database"] - before["database"]) / seconds,
                "machine": (after["machine"] - before["machine"]) / seconds,
            }
        )
        row = {
            "phase": "sustained",
            "raters": len(raters),
            "batch": args.batch[0],
            "rate": rate,
            "cdrs": produced["written"],
            "inserted_s": produced["written"] / (produced["ended"] - produced["began"]),
            "seconds": seconds,
            "drained": drained,
            "cdr_s": (total["rated"] + total["errors"]) / seconds,
            "charges_s": total["charges"] / seconds,
            "lag_p50": percentile(lags, 0.5),
            "lag_p99": percentile(lags, 0.99),
            "lag_max": max(lags),
            "rated_at_p99": percentile(stamped, 0.99),
            "rated_at_max": max(stamped),
            "cpu": cpu,
            **{k: total[k] for k in ("errors", "retries", "gave_up", "released")},
            "batch_p50_ms": total["batch_p50_ms"],
            "batch_p99_ms": total["batch_p99_ms"],
        }
        print(
            f"\nsustained, {len(raters)} rater(s), batches of {args.batch[0]}, idle {args.idle:g} s: "
            f"{produced['written']:,} CDRs offered at {rate:,}/s for {args.seconds:g} s "
            f"(written at {row['inserted_s']:,.0f}/s); all rated {drained:.1f} s after the last was written"
        )
        print(
            f"  lag from insert to rated (committed): p50 {row['lag_p50']:.2f} s, "
            f"p99 {row['lag_p99']:.2f} s, "
            f"max {row['lag_max']:.2f} s (to rated_at: p99 {row['rated_at_p99']:.2f} s, "
            f"max {row['rated_at_max']:.2f} s); errors {total['errors']:,}, "
            f"conflict retries {total['retries']} (gave up {total['gave_up']}); "
            f"batch p50 {total['batch_p50_ms']:.0f} ms, p99 {total['batch_p99_ms']:.0f} ms"
        )
        print(
            f"  CPU, cores: raters {cpu['raters']:.2f}, producer {cpu['producer']:.2f}, "
            f"database {cpu['database']:.2f}, other processes {cpu['others']:.2f}, "
            f"whole machine {cpu['machine']:.2f} of {os.cpu_count()}"
        )
        row["checks"] = check_books(first_id, last_cdr_id(), calls, results)
        print("  " + "\n  ".join(row["checks"]), flush=True)
        rows.append(row)
    return rows


def corrected_deck(path: Path, table_id: int, share: float) -> tuple[int, int]:
    """Write the sell list as it is live with `share` of its prices corrected; (rows, changed)."""
    from apps.rates.models import Rate, RateTable

    version = RateTable.objects.get(pk=table_id).live_version
    rows = changed = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["prefix", "destination", "rate", "connection_fee", "min_seconds", "increment_seconds",
             "free_seconds", "effective_from", "effective_to"]
        )  # fmt: skip
        live = Rate.objects.live().filter(table_id=table_id).order_by("prefix")
        for prefix, name, price, fee, minimum, increment, free, since in live.values_list(
            "prefix", "destination", "price", "connection_fee", "min_seconds", "increment_seconds",
            "free_seconds", "effective_from",
        ):  # fmt: skip
            roll = _unit(f"correction {version}/{prefix}")
            if roll < share:
                price = (price * (Decimal("1.1") if roll < share / 2 else Decimal("0.92"))).quantize(
                    Decimal("0.000001")
                )
                changed += 1
            writer.writerow([prefix, name, price, fee, minimum, increment, free, since.isoformat(), ""])
            rows += 1
    return rows, changed


def check_rerating(run_id: int) -> list[str]:
    """Each account's charges plus adjustments equal its calls' current costs; the ledger adds up."""
    from django.db.models import F, Sum

    from apps.billing.models import Account, LedgerEntry, RerateLine, RerateRun
    from apps.billing.services import ledger_differences
    from apps.cdr.models import Cdr

    run = RerateRun.objects.get(pk=run_id)
    accounts = dict(Account.objects.values_list("peer_id", "pk"))
    expected = defaultdict(Decimal)
    # Grouped by "column + 0", which no index covers: MariaDB then reads the table in order
    # instead of in the index's order, one random page read per row with a small buffer pool.
    rated = Cdr.objects.filter(rating_state="rated")
    for peer, cost in (
        rated.values(peer=F("customer_id") + 0).annotate(s=Sum("sell_cost")).values_list("peer", "s")
    ):
        expected[accounts[peer]] -= cost or 0
    for peer, cost in (
        rated.values(peer=F("supplier_id") + 0).annotate(s=Sum("buy_cost")).values_list("peer", "s")
    ):
        if peer is not None:
            expected[accounts[peer]] -= cost or 0
    booked = defaultdict(Decimal)
    for account_id, amount in (
        LedgerEntry.objects.filter(kind__in=["charge", "adjustment"])
        .values(owner=F("account_id") + 0)
        .annotate(s=Sum("amount"))
        .values_list("owner", "s")
    ):
        booked[account_id] = amount
    wrong = [pk for pk in set(expected) | set(booked) if expected[pk] != booked[pk]]
    lines = RerateLine.objects.filter(run_id=run_id).aggregate(
        calls=Sum("calls"), before=Sum("before"), after=Sum("after")
    )
    adjusted = LedgerEntry.objects.filter(
        kind=LedgerEntry.Kind.ADJUSTMENT, reference__startswith=f"rerate:{run_id}:"
    ).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    differences = ledger_differences()
    checks = [
        (
            run.state == "done",
            f"run {run_id}: {run.state}, {run.examined:,} examined, {run.changed:,} changed",
        ),
        (not wrong, f"accounts whose charges + adjustments differ from their calls' costs: {len(wrong)}"),
        (
            adjusted == (lines["before"] or 0) - (lines["after"] or 0),
            f"adjustments {adjusted} = lines' before {lines['before']} - after {lines['after']}",
        ),
        (not differences, f"ledger_differences(): {len(differences)} account(s) differ"),
    ]
    return [("ok   " if good else "FAIL ") + text for good, text in sorted(checks, key=lambda c: c[0])]


def rerate_phase(args, world: World, sell: list, codes: list[Code], cfg: dict, workdir: Path) -> list[dict]:
    from django.db.models import Count, Max, Min
    from django.utils import timezone

    from apps.cdr.models import Cdr

    row: dict = {"phase": "rerate"}
    have = Cdr.objects.count()
    if have < args.rerate_cdrs:
        missing = args.rerate_cdrs - have
        now = timezone.now()
        started = time.perf_counter()
        for part in range(0, missing, 250_000):
            count = min(250_000, missing - part)
            calls = make_calls(
                world, sell, codes, count, tag=f"r{part}", seed=args.seed + 2000 + part, args=args
            )
            # Spread over the three days before: re-rating reads the period in id order.
            width = timedelta(days=3) * count / missing
            add_backlog(
                calls,
                world,
                first=now - timedelta(days=3) + width * part / count,
                last=now - timedelta(days=3) + width * (part / count + 1),
            )
        print(f"\n{missing:,} more unrated CDRs written in {time.perf_counter() - started:.1f} s", flush=True)
        results, cpu, seconds = rate_backlog(cfg, workdir, args.raters[-1], args.batch[0])
        total = summarize(results)
        print(
            f"rated by {args.raters[-1]} rater(s) in {seconds:.1f} s = {missing / seconds:,.0f} CDRs/s "
            f"(CPU raters {cpu['raters']:.2f}, database {cpu['database']:.2f}; retries {total['retries']})",
            flush=True,
        )
        row["prepared"] = {"cdrs": missing, "seconds": seconds, "cdr_s": missing / seconds, "cpu": cpu}
        del calls
    span = Cdr.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    states = dict(Cdr.objects.values_list("rating_state").annotate(n=Count("id")).order_by())
    answered = Cdr.objects.filter(rating_state="rated", duration_ms__gt=0).count()
    print(
        f"\n{sum(states.values()):,} CDRs from {span['first']:%Y-%m-%d %H:%M} "
        f"to {span['last']:%Y-%m-%d %H:%M}: "
        f"{states.get('rated', 0):,} rated ({answered:,} answered), {states.get('error', 0):,} in error"
    )
    rows = []
    for batch in args.rerate_batch:
        rows.append(
            rerate_once(args, world, workdir, batch, states, span, prepared=row.pop("prepared", None))
        )
    return rows


def rerate_once(args, world: World, workdir: Path, batch: int, states: dict, span: dict, prepared) -> dict:
    """Correct the sell list, rebuild its index and re-rate the whole period once."""
    from django.db import connection, connections
    from django.utils import timezone

    from apps.billing.models import LedgerEntry, RerateLine
    from apps.billing.services import rerating
    from apps.rates.lookup import rebuild_index
    from apps.rates.models import RateTable
    from apps.rates.services import activation
    from apps.tenancy.scope import Scope

    row: dict = {"phase": "rerate", "prepared": prepared}
    table = RateTable.objects.get(pk=world.sell_table_id)
    path = workdir / "corrected.csv"
    started = time.perf_counter()
    rows, changed = corrected_deck(path, table.pk, args.change)
    report = activation.import_price_file(
        table, path.read_bytes(), actor=Scope.system(), filename=path.name, mode="full"
    )
    if not report.ok:
        raise SystemExit(f"the corrected import failed: {report.lines()[:10]}")
    imported = time.perf_counter() - started
    started = time.perf_counter()
    rebuild_index(table.pk)
    indexed = time.perf_counter() - started
    print(
        f"corrected sell list: {changed:,} of {rows:,} prices changed, imported in {imported:.1f} s, "
        f"index rebuilt in {indexed:.1f} s"
    )

    run = rerating.request_rerate(
        actor=Scope.system(),
        period_start=span["first"],
        period_end=timezone.now() + timedelta(seconds=1),
    )
    connections.close_all()
    before, cpu_before, started = cpu_seconds(), time.process_time(), time.perf_counter()
    profiler = cProfile.Profile() if args.profile == "rerating" else None
    clock = StatementClock()
    with clock.timing(connection):
        if profiler:
            profiler.enable()
        run = rerating.run(run.pk, batch_size=batch)
        if profiler:
            profiler.disable()
    seconds = time.perf_counter() - started
    cpu_mine = time.process_time() - cpu_before
    after = cpu_seconds()
    adjustments = LedgerEntry.objects.filter(
        kind=LedgerEntry.Kind.ADJUSTMENT, reference__startswith=f"rerate:{run.pk}:"
    ).count()
    lines = RerateLine.objects.filter(run_id=run.pk).count()
    total = sum(states.values())
    row.update(
        cdrs=total,
        examined=run.examined,
        changed=run.changed,
        adjustments=adjustments,
        lines=lines,
        seconds=seconds,
        cdr_s=total / seconds,
        examined_s=run.examined / seconds,
        batch=batch,
        cpu=with_others(
            {
                "rerater": cpu_mine / seconds,
                "database": (after["database"] - before["database"]) / seconds,
                "machine": (after["machine"] - before["machine"]) / seconds,
            }
        ),
        import_seconds=imported,
        index_seconds=indexed,
        prices_changed=changed,
    )
    print(
        f"re-rating run {run.pk}, batches of {batch:,}: {total:,} CDRs in the period in {seconds:.1f} s "
        f"= {row['cdr_s']:,.0f} CDRs/s ({run.examined:,} answered calls examined "
        f"= {row['examined_s']:,.0f}/s); "
        f"{run.changed:,} changed, {adjustments:,} adjustments posted, {lines:,} lines"
    )
    print(
        f"  CPU, cores: re-rater {row['cpu']['rerater']:.2f}, database {row['cpu']['database']:.2f}, "
        f"other processes {row['cpu']['others']:.2f}, "
        f"whole machine {row['cpu']['machine']:.2f} of {os.cpu_count()}"
    )
    row["statements"] = sum(clock.seconds.values())
    print(
        f"  of the {seconds:.1f} s: {row['statements']:.1f} s waiting for statements and commits "
        f"(the rest is Python in this process){' under cProfile' if profiler else ''}"
    )
    clock.print(total, top=12)
    row["checks"] = check_rerating(run.pk)
    print("  " + "\n  ".join(row["checks"]), flush=True)
    if profiler:
        print_profile(profiler, run.examined, "examined call")
    return row


# --- in-process profile ---------------------------------------------------------------------


def _owner(filename: str, function: str) -> str:
    """Who a profiled function belongs to: a product module, a library, or the socket."""
    if "recv_into" in function or "sendall" in function or "'read' of '_io" in function:
        return "socket send/receive (mostly waiting for the database)"
    if "/apps/" in filename:
        return "apps/" + filename.split("/apps/", 1)[1]
    for library in ("pymysql", "psycopg", "django", "marisa"):
        if f"/{library}/" in filename:
            return library
    if filename.startswith("~"):
        return "built-in functions (isinstance, getattr, dict and str methods…)"
    if "/lib/python3" in filename:
        return f"stdlib {Path(filename).stem}"
    return "other"


def print_profile(profiler: cProfile.Profile, count: int, unit: str) -> None:
    for order in ("cumulative", "tottime"):
        print(f"\n--- under cProfile, top 30 by {order} time ---")
        pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats(order).print_stats(30)
    owners: Counter = Counter()
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in pstats.Stats(profiler).stats.items():
        owners[_owner(filename, function)] += own
    total = sum(owners.values())
    print(f"\n--- own time by owner, per {unit} under cProfile (total {total / count * 1e6:,.1f} µs) ---")
    for owner, seconds in owners.most_common(25):
        print(f"{seconds / count * 1e6:8,.1f} µs  {seconds / total:5.1%}  {owner}")


class StatementClock:
    """Time spent per kind of statement (verb and table), through Django's execute wrapper.

    Wall time from sending a statement to having its result decoded: the server's work,
    the round trip and the driver's parsing.
    """

    def __init__(self) -> None:
        self.count: Counter = Counter()
        self.seconds: Counter = Counter()

    @contextlib.contextmanager
    def timing(self, connection):
        """Time the statements of `connection`, and its commits (which no wrapper sees)."""
        commit = connection._commit

        def timed_commit():
            started = time.perf_counter()
            try:
                return commit()
            finally:
                self.seconds["COMMIT"] += time.perf_counter() - started
                self.count["COMMIT"] += 1

        connection._commit = timed_commit
        try:
            with connection.execute_wrapper(self):
                yield self
        finally:
            del connection._commit

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = self.kind(sql)
            self.seconds[kind] += time.perf_counter() - started
            self.count[kind] += 1

    @staticmethod
    def kind(sql: str) -> str:
        words = sql.replace("`", "").replace('"', "").split()
        verb = words[0].upper()
        table = next(
            (words[n + 1] for n, word in enumerate(words[:-1]) if word.upper() in ("FROM", "INTO", "UPDATE")),
            "",
        )
        if verb == "UPDATE":
            table = words[1]
        suffix = " FOR UPDATE" if "FOR UPDATE" in sql else ""
        return f"{verb} {table}{suffix}"

    def print(self, count: int, unit: str = "CDR", top: int = 20) -> None:
        total = sum(self.seconds.values())
        print(f"  statements and commits, per {unit}: {total / count * 1e6:,.1f} µs in all")
        for kind, seconds in self.seconds.most_common(top):
            print(f"  {seconds / count * 1e6:8,.1f} µs  {self.count[kind] / count:7.4f}/{unit}  {kind}")


def profile_rating(args, world: World, sell: list, codes: list[Code]) -> None:
    """Rate --cdrs CDRs in this process, one rater: half timed per statement, half under cProfile."""
    from django.db import connection
    from django.utils import timezone

    from apps.billing.services import rating
    from apps.rates.lookup import get_index
    from apps.rates.models import RateTable

    calls = make_calls(
        world, sell, codes, args.cdrs, tag=f"p{random.randrange(16**6):06x}", seed=7, args=args
    )
    now = timezone.now()
    add_backlog(calls, world, first=now - timedelta(hours=1), last=now - timedelta(minutes=5))
    for table_id in RateTable.objects.values_list("pk", flat=True):
        get_index(table_id)
    rating.rate_batch(limit=10, node_id=world.node_id)  # warm the caches

    clock = StatementClock()
    rated = 0
    started, cpu = time.perf_counter(), time.process_time()
    with clock.timing(connection):
        while rated < args.cdrs // 2:
            result = rating.rate_batch(limit=args.batch[0], node_id=world.node_id)
            rated += result.selected
            if not result.selected:
                break
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"\n{rated:,} CDRs, one rater in this process, batches of {args.batch[0]}: "
        f"{rated / seconds:,.0f} CDRs/s, "
        f"{seconds / rated * 1e6:,.0f} µs each, of which {cpu / rated * 1e6:,.0f} µs CPU in this process"
    )
    clock.print(rated)

    profiler = cProfile.Profile()
    total = rating.BatchResult()
    profiler.enable()
    while (result := rating.rate_batch(limit=args.batch[0], node_id=world.node_id)).selected:
        total.add(result)
    profiler.disable()
    print_profile(profiler, total.selected, "CDR")


# --- the report -----------------------------------------------------------------------------


def print_table(rows: list[dict]) -> None:
    print(
        "\n| phase | raters | batch | CDRs | seconds | CDRs/s | charges/s | lag p99 / max s | errors "
        "| retries | CPU cores: raters / database / others |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for row in rows:
        cpu = row["cpu"]
        if row["phase"] == "rerate":
            print(
                f"| re-rate | 1 | {row['batch']:,} | {row['cdrs']:,} | {row['seconds']:.1f} | "
                f"{row['cdr_s']:,.0f} "
                f"({row['examined_s']:,.0f} examined/s) | — | — | — | — | "
                f"{cpu['rerater']:.2f} / {cpu['database']:.2f} / {cpu['others']:.2f} |"
            )
            continue
        lag = f"{row['lag_p99']:.2f} / {row['lag_max']:.2f}" if row["phase"] == "sustained" else "—"
        name = f"sustained {row['rate']:,}/s" if row["phase"] == "sustained" else "backlog"
        print(
            f"| {name} | {row['raters']} | {row['batch']} | {row['cdrs']:,} | {row['seconds']:.1f} | "
            f"{row['cdr_s']:,.0f} | {row['charges_s']:,.0f} | {lag} | {row['errors']:,} | {row['retries']} | "
            f"{cpu['raters']:.2f} / {cpu['database']:.2f} / {cpu['others']:.2f} |"
        )


# --- main -----------------------------------------------------------------------------------


def configure(url: str, index_dir: Path, var_dir: Path) -> None:
    os.environ.update(
        {
            "DATABASE_URL": url,
            "PREFIX_INDEX_DIR": str(index_dir),
            "SMARTSWITCH_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
            "DEBUG": "0",
            "NODE_NAME": NODE,
        }
    )
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--prefixes", type=int, default=100_000, help="per deck (default 100000)")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a database built with the same sizes; keep it"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and index files afterwards")
    parser.add_argument("--phases", default="backlog,sustained,rerate", help="which to run, in this order")
    parser.add_argument("--cdrs", type=int, default=200_000, help="unrated CDRs of the backlog")
    parser.add_argument("--raters", type=integers, default=[2], help="rater processes, e.g. 1,2")
    parser.add_argument(
        "--batch", type=integers, help="CDRs per rate_batch, e.g. 500,1000 (default: the product's)"
    )
    parser.add_argument("--rate", type=integers, default=[5000], help="sustained: CDRs inserted per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained: how long the producer runs")
    parser.add_argument(
        "--idle", type=float, help="sustained: sleep after a short batch, s (default: the billing loop's)"
    )
    parser.add_argument(
        "--rerate-cdrs", type=int, default=1_000_000, help="rated CDRs in the re-rated period"
    )
    parser.add_argument(
        "--rerate-batch",
        type=integers,
        help="re-rating batch sizes, e.g. 2000,5000, one run each (default: the product's)",
    )
    parser.add_argument(
        "--change", type=float, default=0.2, help="share of sell prices the correction changes"
    )
    parser.add_argument("--unanswered", type=float, default=0.3)
    parser.add_argument("--miss", type=float, default=0.02, help="share of numbers without a price")
    parser.add_argument("--reserved", type=float, default=0.1, help="share of calls holding a reservation")
    parser.add_argument("--profile", choices=("rating", "rerating"), help="cProfile one of them in process")
    parser.add_argument("--rater", help=argparse.SUPPRESS)
    parser.add_argument("--producer", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.rater or args.producer:
        cfg = json.loads(Path(args.rater or args.producer).read_text())
        configure(cfg["url"], Path(cfg["index_dir"]), Path(cfg["var_dir"]))
        (run_rater if args.rater else run_producer)(cfg)
        return

    name = urlparse(args.database_url).path.lstrip("/")
    keep = args.keep or args.reuse
    vendor = urlparse(args.database_url).scheme.split("+")[0]
    var_dir = ROOT / "var" / f"bench-{vendor}-{urlparse(args.database_url).port or 'default'}-{name}"
    index_dir = var_dir / "prefix-index"
    workdir = Path(tempfile.mkdtemp(prefix="smartswitch-bench-rating-"))
    (workdir / "static").mkdir()
    configure(args.database_url, index_dir, workdir)
    from django.core.management import call_command
    from django.db import connection

    from apps.billing import tasks
    from apps.billing.services import rating, rerating
    from apps.rates.lookup import index_path, rebuild_index
    from apps.rates.models import RateTable

    args.batch = args.batch or [rating.BATCH_SIZE]
    args.rerate_batch = args.rerate_batch or [rerating.BATCH_SIZE]
    args.idle = tasks.IDLE_SLEEP if args.idle is None else args.idle
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {describe_machine()} · load {os.getloadavg()[0]:.2f}")
    codes = load_codes()
    recorded = reusable(args) if args.reuse else None
    if recorded is None:
        started = time.perf_counter()
        create_database(args.database_url)
        shutil.rmtree(index_dir, ignore_errors=True)  # files of a dropped database's tables
        call_command("migrate", verbosity=0)
        print(f"database {name} created and migrated in {time.perf_counter() - started:.1f} s", flush=True)
        build_world(args, codes, workdir)
    elif args.phases == "rerate":
        # Re-rating alone goes on from the rated CDRs of earlier runs (their books agree).
        print(f"reusing database {name} with the CDRs of earlier runs")
    else:
        started = time.perf_counter()
        empty_books()
        print(
            f"reusing database {name}; earlier CDRs and charges emptied "
            f"in {time.perf_counter() - started:.1f} s"
        )
    database_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        print(f"database: {connection.vendor} {cursor.fetchone()[0]} ({args.database_url.split('@')[-1]})")
    for table_id, table_name, version in RateTable.objects.order_by("pk").values_list(
        "pk", "name", "live_version"
    ):
        existed = index_path(table_id, version).exists()
        started = time.perf_counter()
        path = rebuild_index(table_id)
        what = "kept from an earlier run" if existed else f"built in {time.perf_counter() - started:.1f} s"
        print(f"  index {table_name}: {path.stat().st_size / 1e6:.1f} MB, {what}")

    world = load_world()
    sell, _buys = decks(codes, args.prefixes, args.seed)
    del _buys
    cfg = {"url": args.database_url, "index_dir": str(index_dir), "var_dir": str(workdir)}
    rows = []
    try:
        if args.profile == "rating":
            profile_rating(args, world, sell, codes)
            return
        for phase in args.phases.split(","):
            if phase == "backlog":
                rows += backlog_phase(args, world, sell, codes, cfg, workdir)
            elif phase == "sustained":
                rows += sustained_phase(args, world, sell, codes, cfg, workdir)
            elif phase == "rerate":
                rows += rerate_phase(args, world, sell, codes, cfg, workdir)
            else:
                raise SystemExit(f"unknown phase {phase!r}")
        print_table(rows)
        failed = [check for row in rows for check in row.get("checks", []) if check.startswith("FAIL")]
        print(f"\nchecks: {'all passed' if not failed else f'{len(failed)} FAILED'}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not keep:
            drop_database(args.database_url)
            shutil.rmtree(var_dir, ignore_errors=True)
            print(f"\ndropped database {name}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
