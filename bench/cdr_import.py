"""How fast OpenSIPS's accounting rows become CDRs (`apps.cdr.ingest.ingest_batch`).

Builds a database of its own: one node, --customers customer peers (default 20) and
--suppliers supplier peers (default 4) with two gateways each, all through the services
(apps.nodes.services, apps.peers.services). Then bulk inserts, with raw multi-row
INSERTs as OpenSIPS's acc module would have written them one by one, --calls `acc` rows
(default 100,000: about 70 % answered with a ms_duration of 1-600 s, the rest failed
with a 4xx/5xx code) and --attempts `missed_calls` rows (default 20,000: failed supplier
branches of some of those calls, each naming its supplier and gateway). Two measurements:

1. One importer process loops `ingest_batch(node=NODE, limit=--batch)` until both tables
   are empty. Prints rows/s and the CDRs created.
2. The tables are refilled (new ids) and --importers processes (default 2) run the same
   loop at once, each with its own connection and the same node name: two ingesters of
   one node, or of two nodes after one took over the other's rows, claim rows with
   SELECT … FOR UPDATE SKIP LOCKED from the same tables. Prints rows/s, each importer's
   share, conflict retries (apps.core.db.retry_stats), and checks that every row became
   exactly one CDR: one CDR per expected source_ref, none missing, none twice, nothing
   left in acc or missed_calls.

Each phase prints the load average of the machine before and after: figures taken while
something else ran are not comparable.

    .venv/bin/python bench/cdr_import.py
    .venv/bin/python bench/cdr_import.py --calls 20000 --attempts 4000 --importers 2,4

The database (default mysql://root@127.0.0.1:3306/bench_cdr_import) is created, migrated
and dropped at the end (--keep keeps it). Nothing here changes product code.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402 - after the repository is on sys.path
    configure_django,
    create_database,
    describe_machine,
    drop_database,
    integers,
)

DEFAULT_URL = "mysql://root@127.0.0.1:3306/bench_cdr_import"
NODE = "bench1"
TICK = os.sysconf("SC_CLK_TCK")
INSERT_ROWS = 1000  # rows per multi-row INSERT
START = datetime(2026, 11, 26, 0, 0, 0, tzinfo=UTC)
FAILURES = [("486", "Busy Here"), ("487", "Request Terminated"), ("480", "Temporarily Unavailable")]
FAILURES += [("404", "Not Found"), ("503", "Service Unavailable"), ("408", "Request Timeout")]
BRANCH_FAILURES = [*FAILURES[2::2], ("408", "Request Timeout")]
COLUMNS = (
    "id, method, from_tag, to_tag, callid, sip_code, sip_reason, time, setuptime, created, peer_id, node,"
    " reservation_id, supplier_id, gateway_id, source_ip, caller, callee, callee_out, destination"
)


def configure(url: str) -> None:
    configure_django(url, NODE)


# --- the world ------------------------------------------------------------------------------


def build_world(args) -> dict:
    """Create the node, customers and suppliers with gateways through the services."""
    from apps.nodes import services as node_services
    from apps.peers import services as peer_services
    from apps.peers.models import Peer
    from apps.tenancy.scope import Scope

    system = Scope.system()
    node_services.create_node(
        actor=system, name=NODE, management_address="127.0.0.1", sip_address="127.0.0.1"
    )
    customers = [
        peer_services.create_peer(actor=system, name=f"Customer {i:02d}", role=Peer.Role.CUSTOMER).pk
        for i in range(args.customers)
    ]
    gateways = []  # (supplier id, gateway id)
    for i in range(args.suppliers):
        supplier = peer_services.create_peer(actor=system, name=f"Carrier {i}", role=Peer.Role.SUPPLIER)
        for g in range(2):
            gateway = peer_services.add_gateway(
                supplier, actor=system, name=f"gw{g}", host=f"192.0.2.{10 * i + g + 1}"
            )
            gateways.append((supplier.pk, gateway.pk))
    return {"customers": customers, "gateways": gateways}


# --- the accounting rows --------------------------------------------------------------------


def insert_rows(args, world: dict, *, first_id: int, seed: int) -> tuple[int, int]:
    """Bulk insert --calls acc and --attempts missed_calls rows with ids from `first_id`."""
    from django.db import connection

    rnd = random.Random(seed)
    spread = 86_400  # the calls ended during one day
    calls = []
    for n in range(args.calls):
        pk = first_id + n
        callid, peer = f"call-{pk}@pbx", rnd.choice(world["customers"])
        supplier, gateway = rnd.choice(world["gateways"])
        callee = "49" + str(rnd.randrange(10**9, 10**10))
        at = START + timedelta(seconds=rnd.randrange(spread))
        setup = rnd.randint(1, 8)
        answered = rnd.random() < 0.70
        if answered:
            code, reason, ms = "200", "OK", rnd.randint(1_000, 600_000)
            to_tag, sup, gw = f"tt{pk}", supplier, gateway
        else:
            (code, reason), ms = rnd.choice(FAILURES), 0
            to_tag, sup, gw = None, None, None
        created = at - timedelta(seconds=setup)
        ours = (peer, NODE, None, sup, gw, "192.0.2.200", "441234567890", callee, "00" + callee, "Germany")
        head = (pk, "INVITE", f"ft{pk}", to_tag, callid, code, reason, at, setup, created)
        calls.append((*head, *ours, (ms + 999) // 1000, ms))
    attempts = []
    for n in range(args.attempts):
        pk = first_id + n
        call = calls[rnd.randrange(len(calls))]
        supplier, gateway = rnd.choice(world["gateways"])
        code, reason = rnd.choice(BRANCH_FAILURES)
        at = call[7]
        head = (pk, "INVITE", call[2], None, call[4], code, reason, at, 0, call[9])
        ours = (call[10], NODE, None, supplier, gateway, *call[15:20])
        attempts.append((*head, *ours))
    with connection.cursor() as cur:
        for table, rows, extra in (("acc", calls, ", duration, ms_duration"), ("missed_calls", attempts, "")):
            width = len(rows[0]) if rows else 0
            for start in range(0, len(rows), INSERT_ROWS):
                chunk = rows[start : start + INSERT_ROWS]
                marks = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(chunk))
                params = [
                    v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v
                    for row in chunk
                    for v in row
                ]
                cur.execute(f"INSERT INTO {table} ({COLUMNS}{extra}) VALUES {marks}", params)
    return len(calls), len(attempts)


def expected_refs(first_id: int) -> set[str]:
    """The source_refs the rows inserted with these ids must become (read back from the tables)."""
    from apps.cdr.ingest import source_ref
    from apps.opensips.models import Acc, MissedCall

    refs = {source_ref(row) for row in Acc.objects.filter(pk__gte=first_id).only("id", "time")}
    refs |= {source_ref(row) for row in MissedCall.objects.filter(pk__gte=first_id).only("id", "time")}
    return refs


# --- the importers --------------------------------------------------------------------------


def importer(batch: int) -> None:
    """A child process: wait for "go" on stdin, loop ingest_batch until nothing is left, report."""
    from django.db import connection

    from apps.cdr.ingest import IngestResult, ingest_batch
    from apps.core.db import retry_stats

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = os.times()
    started = time.perf_counter()
    total, batches = IngestResult(), 0
    while True:
        result = ingest_batch(node=NODE, limit=batch)
        total.add(result)
        batches += 1
        if result.rows == 0:
            # Nothing claimable: the tables are empty, or the other importers hold the rest.
            break
    took = time.perf_counter() - started
    after = os.times()
    print(
        json.dumps(
            {
                "seconds": took,
                "batches": batches,
                "calls": total.calls,
                "attempts": total.attempts,
                "errors": total.errors,
                "replayed": total.replayed,
                "unrouted": total.unrouted,
                "retries": retry_stats.retries,
                "gave_up": retry_stats.gave_up,
                "cpu": after.user + after.system - cpu.user - cpu.system,
            }
        ),
        flush=True,
    )


def database_cpu() -> float:
    """CPU seconds used so far by the local mariadbd processes (0 when none is visible)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.index("(") + 1 : text.rindex(")")] in ("mariadbd", "mysqld"):
            fields = text[text.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def run_importers(count: int, args) -> dict:
    """Start `count` importers, let them go at once, wait for all; return the figures."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--importer",
                "--database-url",
                args.database_url,
                "--batch",
                str(args.batch),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(count)
    ]
    for process in processes:
        if process.stdout.readline().strip() != "ready":
            raise SystemExit("an importer did not start")
    load = os.getloadavg()[0]
    db_cpu = database_cpu()
    started = time.perf_counter()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    reports = []
    for process in processes:
        reports.append(json.loads(process.stdout.readline()))
        process.wait()
    wall = time.perf_counter() - started
    db_cpu = database_cpu() - db_cpu
    return {
        "db_cpu": db_cpu,
        "wall": wall,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "importers": reports,
    }


def check(first_id: int, refs: set[str], cdr_before: int) -> dict:
    """Every expected row became exactly one CDR; nothing is left in acc or missed_calls."""
    from apps.cdr.models import Cdr
    from apps.opensips.models import Acc, MissedCall

    made = list(Cdr.objects.filter(pk__gt=cdr_before).values_list("source_ref", flat=True))
    return {
        "cdrs": len(made),
        "distinct": len(set(made)),
        "missing": len(refs - set(made)),
        "unexpected": len(set(made) - refs),
        "left": Acc.objects.count() + MissedCall.objects.count(),
    }


def phase(name: str, count: int, args, world: dict, first_id: int, seed: int) -> dict:
    from django.db.models import Max

    from apps.cdr.models import Cdr

    started = time.perf_counter()
    calls, attempts = insert_rows(args, world, first_id=first_id, seed=seed)
    took = time.perf_counter() - started
    rows = calls + attempts
    print(f"{name}: inserted {calls:,} acc + {attempts:,} missed_calls rows in {took:.1f} s", flush=True)
    refs = expected_refs(first_id)
    cdr_before = Cdr.objects.aggregate(m=Max("pk"))["m"] or 0
    result = run_importers(count, args)
    verdict = check(first_id, refs, cdr_before)
    made = sum(r["calls"] + r["attempts"] for r in result["importers"])
    ok = (
        verdict["cdrs"] == verdict["distinct"] == len(refs) == rows == made
        and verdict["missing"] == verdict["unexpected"] == verdict["left"] == 0
    )
    summary = {
        "phase": name,
        "importers": count,
        "rows": rows,
        "seconds": result["wall"],
        "rows_s": rows / result["wall"],
        "cdrs": verdict["cdrs"],
        "errors": sum(r["errors"] for r in result["importers"]),
        "replayed": sum(r["replayed"] for r in result["importers"]),
        "retries": sum(r["retries"] for r in result["importers"]),
        "cpu": sum(r["cpu"] for r in result["importers"]),
        "db_cpu": result["db_cpu"],
        "shares": [r["calls"] + r["attempts"] for r in result["importers"]],
        "batches": [r["batches"] for r in result["importers"]],
        "load": (result["load_before"], result["load_after"]),
        "check": verdict,
        "ok": ok,
    }
    print(
        f"{name}: {count} importer(s), {rows:,} rows in {result['wall']:.1f} s"
        f" = {summary['rows_s']:,.0f} rows/s; CDRs created {verdict['cdrs']:,}"
        f" (distinct source_ref {verdict['distinct']:,}, expected {len(refs):,},"
        f" missing {verdict['missing']}, unexpected {verdict['unexpected']}), left in acc/missed_calls"
        f" {verdict['left']}; per importer rows {summary['shares']} batches {summary['batches']};"
        f" rating errors {summary['errors']}, replayed {summary['replayed']},"
        f" conflict retries {summary['retries']};"
        f" CPU cores: importers {summary['cpu'] / result['wall']:.2f},"
        f" database {summary['db_cpu'] / result['wall']:.2f};"
        f" load average {result['load_before']:.2f} -> {result['load_after']:.2f};"
        f" {'OK: every row became exactly one CDR' if ok else 'FAILED'}",
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--calls", type=int, default=100_000, help="acc rows per phase")
    parser.add_argument("--attempts", type=int, default=20_000, help="missed_calls rows per phase")
    parser.add_argument("--importers", default="2", help="importer processes of phase 2, e.g. 2 or 2,4")
    parser.add_argument("--batch", type=int, default=500, help="ingest_batch(limit=...)")
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--suppliers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--importer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure(args.database_url)
    if args.importer:
        importer(args.batch)
        return

    from django.core.management import call_command

    print(describe_machine(), flush=True)
    started = time.perf_counter()
    create_database(args.database_url)
    try:
        call_command("migrate", verbosity=0)
        world = build_world(args)
        print(f"database created, migrated and built in {time.perf_counter() - started:.1f} s", flush=True)
        results = [phase("single", 1, args, world, first_id=1, seed=args.seed)]
        for n, count in enumerate(integers(args.importers), start=1):
            first_id = 1 + n * max(args.calls, args.attempts)
            results.append(
                phase(f"parallel-{count}", count, args, world, first_id=first_id, seed=args.seed + n)
            )
        print()
        print(
            "| importers | batch | acc rows | missed_calls rows | seconds | rows/s | CDRs | exactly once"
            " | conflict retries | CPU cores: importers / database |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
        for r in results:
            print(
                f"| {r['importers']} | {args.batch} | {args.calls:,} | {args.attempts:,} |"
                f" {r['seconds']:.1f} | {r['rows_s']:,.0f} | {r['cdrs']:,} |"
                f" {'yes' if r['ok'] else 'NO'} | {r['retries']} |"
                f" {r['cpu'] / r['seconds']:.2f} / {r['db_cpu'] / r['seconds']:.2f} |"
            )
        if not all(r["ok"] for r in results):
            raise SystemExit("a check failed")
    finally:
        if not args.keep:
            drop_database(args.database_url)


if __name__ == "__main__":
    main()
