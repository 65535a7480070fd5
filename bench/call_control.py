"""How many calls call control authorizes per second, through a real server, and how fast.

Builds a busy wholesale switch in a database of its own: a sell deck of 1,000,000 prefixes
shared by 10,000 customers, three suppliers' buy decks of 1,000,000 prefixes each, all
loaded through the price import (apps.rates.services.imports); each customer with an account
(prepaid with a large balance, one in ten postpaid) and one /32 address, half of them
assigned to the benchmark node and half to no node; the suppliers with gateways; a
default routing plan with a least-cost rule over the three suppliers and a few more
specific ones (priority, weights, quality, a blocked range). Builds the rate indexes,
starts uvicorn on smartswitch.asgi:application as the systemd unit does, and drives
POST /call-control/v1/authorize from a separate client process over keep-alive HTTP/1.1
connections: random customers (source_ip), random numbers under the sell deck's prefixes,
a share of the routed calls released again (failed calls) and the rest left holding their
money (answered calls waiting for their CDR). Prints authorizations per second, latency
percentiles, the answers by code, CPU of server, database and client, and whether the
accounts' reserved money still equals the live reservations afterwards.

    .venv/bin/python bench/call_control.py --reuse
    .venv/bin/python bench/call_control.py --reuse --workers 1,2 --threads 4,8,16 --concurrency 16,32
    .venv/bin/python bench/call_control.py --reuse --rate 1000      # open loop: latency at an offered load
    .venv/bin/python bench/call_control.py --reuse --profile 5000   # in-process, under cProfile
    .venv/bin/python bench/call_control.py --prefixes 100000 --customers 1000 \\
        --database-url postgres://postgres@127.0.0.1:5432/smartswitch_bench_cc

The database (default mysql://root@127.0.0.1:3306/smartswitch_bench_cc) is created and
dropped at the end. --keep keeps it; --reuse keeps it too and uses it again next time when
it was built with the same --prefixes, --customers and --seed: setup takes minutes.
Closed loop (the default): each connection sends its next request when the answer
arrives, so latency grows with --concurrency. --rate R: requests leave on a fixed
schedule of R per second and latency counts from the scheduled moment (no coordinated
omission). Nothing here changes product code; the server runs the code as it is.
"""

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import json
import os
import pstats
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import IPv4Address
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
    describe_server,
    drop_database,
    integers,
    load_codes,
    percentile,
)

DEFAULT_URL = "mysql://root@127.0.0.1:3306/smartswitch_bench_cc"
NODE = "bench1"
SELL_TABLE = "Bench retail"
SUPPLIERS = ("Carrier A", "Carrier B", "Carrier C")
FIRST_IP = IPv4Address("198.18.0.0")  # RFC 2544's benchmarking range: never anyone's address
SELL_MARKUP = 1.3  # sell = base * 1.3; a supplier buys at base * 0.8-1.4, so about 1 in 6 costs more
PREPAID_BALANCE = Decimal("1000000")
POSTPAID_CREDIT = Decimal("100000")
TICK = os.sysconf("SC_CLK_TCK")


# --- the decks ------------------------------------------------------------------------------


def make_blocks(codes: list[Code], count: int, seed: int) -> list[tuple[str, int]]:
    """`count` distinct number blocks (prefix, index of its code) under the codes no other extends.

    Blocks are 1-6 digits longer than their code and leave at least 3 digits of the number,
    as carriers price NPA-NXX ranges or mobile operator blocks.
    """
    rnd = random.Random(seed)
    ordered = sorted(range(len(codes)), key=lambda i: codes[i].prefix)
    leaves = [
        i
        for n, i in enumerate(ordered)
        if n + 1 == len(ordered) or not codes[ordered[n + 1]].prefix.startswith(codes[i].prefix)
    ]
    taken = {code.prefix for code in codes}
    blocks = []
    while len(blocks) < count:
        index = rnd.choice(leaves)
        code = codes[index]
        room = max(1, min(6, code.length - len(code.prefix) - 3))
        prefix = code.prefix + str(rnd.randrange(10**room)).zfill(room)[: rnd.randint(1, room)]
        if prefix not in taken:
            taken.add(prefix)
            blocks.append((prefix, index))
    return blocks


def decks(codes: list[Code], prefixes: int, seed: int) -> tuple[list, list[list]]:
    """The sell deck and the three buy decks: every code, plus blocks from one shared pool.

    The pool is 15 % larger than a deck, so each supplier prices most of the customers'
    blocks and some of its own; a number outside a supplier's blocks falls to its code.
    """
    pool = make_blocks(codes, max(0, int(prefixes * 1.15) - len(codes)), seed)
    codes_only = [(code.prefix, i) for i, code in enumerate(codes)]
    size = max(0, prefixes - len(codes))
    sell = codes_only + pool[:size]
    buys = [codes_only + random.Random(seed + 1 + n).sample(pool, size) for n in range(len(SUPPLIERS))]
    return sell, buys


def write_deck(path: Path, codes: list[Code], entries: list, *, supplier: int | None) -> int:
    """Write a canonical CSV: sell prices, or the buy prices of supplier number `supplier`."""
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
            # No dates: the rows take effect when the import activates them.
            out.write(f"{prefix},{code.destination},{price:.6f},0,{code.increments},,\n")
    return len(entries)


def calls(codes: list[Code], sell: list, customers: int, count: int, seed: int, miss: float) -> list:
    """(source IP, caller, callee) of `count` calls: a random customer, a number in a sell block."""
    rnd = random.Random(seed + 99)
    made = []
    for _ in range(count):
        ip = str(FIRST_IP + rnd.randrange(customers))
        caller = f"1555{rnd.randrange(10**7):07d}"
        if rnd.random() < miss:
            callee = "0" + str(rnd.randrange(10**11)).zfill(11)  # no such code: 404
        else:
            prefix, index = sell[rnd.randrange(len(sell))]
            extra = max(1, codes[index].length - len(prefix))
            callee = prefix + str(rnd.randrange(10**extra)).zfill(extra)
        made.append((ip, caller, callee))
    return made


# --- the database ---------------------------------------------------------------------------


def marker(args) -> dict:
    """What the database was built for; kept in the sell table's description for --reuse."""
    return {
        "bench": "call_control",
        "prefixes": args.prefixes,
        "customers": args.customers,
        "seed": args.seed,
    }


def reusable_setup(args) -> dict | None:
    """The setup timings recorded by the run that built the database, if it fits; else None."""
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


def build_world(args, codes: list[Code], workdir: Path) -> dict:
    """Create the node, price lists, suppliers, customers and routing; return the timings."""
    from django.db import connection, transaction

    from apps.billing import services as billing
    from apps.billing.models import Account, LedgerEntry
    from apps.core.changes import announce
    from apps.nodes import services as node_services
    from apps.nodes.models import ClusterSettings
    from apps.peers import services as peer_services
    from apps.peers.models import Endpoint, Peer
    from apps.rates import services as rate_services
    from apps.rates.services import activation
    from apps.routing import services as routing
    from apps.tenancy.scope import Scope

    system = Scope.system()
    timings: dict = {"imports": []}
    node = node_services.create_node(
        actor=system, name=NODE, management_address="127.0.0.1", sip_address="127.0.0.1"
    )

    started = time.perf_counter()
    sell, buys = decks(codes, args.prefixes, args.seed)
    timings["generate"] = time.perf_counter() - started
    print(f"decks generated in {timings['generate']:.1f} s", flush=True)

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
        phases = {k: round(v, 2) for k, v in report.timings.items()}
        timings["imports"].append({"table": name, "rows": rows, "seconds": round(took, 1), "phases": phases})
        print(f"imported {name}: {rows:,} rows in {took:.1f} s ({rows / took:,.0f} rows/s)", flush=True)
        tables.append(table)
    del sell, buys

    started = time.perf_counter()
    suppliers = []
    for n, name in enumerate(SUPPLIERS):
        supplier = peer_services.create_peer(
            actor=system, name=name, role=Peer.Role.SUPPLIER, buy_rate_table_id=tables[n + 1].pk
        )
        peer_services.add_gateway(supplier, actor=system, name="gw1", host=f"192.0.2.{10 + n}")
        if n == 0:
            peer_services.add_gateway(supplier, actor=system, name="gw2", host="192.0.2.20", priority=1)
        suppliers.append(supplier)
    plan = routing.create_plan(actor=system, name="Bench default")
    rules = [
        ("", "lcr", {}),
        ("1", "quality", {}),  # no statistics yet: ordered by cost, as on a fresh cluster
        ("44", "priority", {"priority": [0, 1, 2]}),
        ("49", "weight", {"weight": [60, 30, 10]}),
        ("881", "block", None),  # satellite ranges are refused
    ]
    for prefix, method, options in rules:
        rule = routing.add_rule(plan, actor=system, prefix=prefix, method=method)
        for n, supplier in enumerate(suppliers if options is not None else ()):
            routing.add_route(rule, actor=system, supplier=supplier, **{k: v[n] for k, v in options.items()})
    # No service sets the default plan yet (apps.nodes.services.CLUSTER_SETTINGS lacks it).
    cluster = ClusterSettings.load()
    cluster.default_routing_plan = plan
    cluster.save()

    # The first customer through the services, as the admin and the API make one; the others
    # copy its rows with bulk_create. create_peer, add_endpoint and post_payment write the
    # same Peer, Account, Endpoint and LedgerEntry rows, plus an audit row each (left out
    # here), and add_endpoint checks overlaps against every endpoint: hours for 10,000.
    first = peer_services.create_peer(
        actor=system,
        name="Customer 00000",
        role=Peer.Role.CUSTOMER,
        sell_rate_table_id=tables[0].pk,
        nodes=[node],
    )
    peer_services.add_endpoint(first, actor=system, ip=str(FIRST_IP))
    billing.post_payment(first.account, actor=system, amount=PREPAID_BALANCE, reference="bench-topup-0")
    numbers = range(1, args.customers)
    Peer.objects.bulk_create(
        [
            Peer(name=f"Customer {i:05d}", role=Peer.Role.CUSTOMER, sell_rate_table_id=tables[0].pk)
            for i in numbers
        ],
        batch_size=2000,
    )
    peer_ids = dict(Peer.objects.filter(name__startswith="Customer ").values_list("name", "pk"))
    ids = [peer_ids[f"Customer {i:05d}"] for i in range(args.customers)]
    # One in ten postpaid (credit, no balance); the others prepaid with a large balance.
    postpaid = {i for i in numbers if i % 10 == 9}
    Account.objects.bulk_create(
        [
            Account(
                peer_id=ids[i],
                currency="USD",
                mode=Account.Mode.POSTPAID if i in postpaid else Account.Mode.PREPAID,
                credit_limit=POSTPAID_CREDIT if i in postpaid else 0,
                balance=0 if i in postpaid else PREPAID_BALANCE,
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
    Endpoint.objects.bulk_create(
        [Endpoint(peer_id=ids[i], ip=str(FIRST_IP + i), mask=32) for i in numbers], batch_size=2000
    )
    Peer.nodes.through.objects.bulk_create(
        [Peer.nodes.through(peer_id=ids[i], node_id=node.pk) for i in numbers if i % 2 == 0], batch_size=2000
    )
    # bulk_create wrote behind the services' backs: announce it once (call control's
    # snapshot, the OpenSIPS tables; apps.core.changes).
    with transaction.atomic():
        for kind in ("peers.Peer", "billing.Account", "peers.Endpoint"):
            announce(kind)
    timings["peers"] = round(time.perf_counter() - started, 1)
    print(f"{args.customers:,} customers, {len(SUPPLIERS)} suppliers and routing in {timings['peers']:.1f} s")
    rate_services.update_rate_table(
        tables[0], actor=system, changes={"description": json.dumps({**marker(args), **timings})}
    )
    connection.close()
    return timings


def reset_reservations() -> None:
    """Forget the reservations of earlier runs so that each run starts with idle accounts.

    Benchmark housekeeping on the bench's own database, not a product path.
    """
    from django.db import connection

    from apps.billing.models import Account, Reservation

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Reservation._meta.db_table}")
        cursor.execute(f"UPDATE {Account._meta.db_table} SET reserved = 0 WHERE reserved <> 0")


def books() -> tuple[int, Decimal, Decimal]:
    """(live reservations, money they hold, sum of the accounts' reserved): the last two agree."""
    from django.db.models import Count, Sum

    from apps.billing.models import Account, Reservation

    live = Reservation.objects.active().aggregate(n=Count("id"), held=Sum("amount"))
    reserved = Account.objects.aggregate(total=Sum("reserved"))["total"] or Decimal(0)
    return live["n"], live["held"] or Decimal(0), reserved


# --- CPU ------------------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command, CPU seconds used) of every process in /proc."""
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
    return table


def cpu_sample(server_pid: int, database: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds so far of the server's process tree, the database server and the machine."""
    table = _processes()
    tree, grew = {server_pid}, True
    while grew:
        children = {pid for pid, (parent, _n, _c) in table.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return {
        **{f"process {pid}": table[pid][2] for pid in tree if pid in table},
        "server": sum(table[pid][2] for pid in tree if pid in table),
        "database": sum(cpu for _p, name, cpu in table.values() if name in database),
        "machine": (sum(values) - values[3] - values[4]) / TICK,  # all but idle and iowait
    }


# --- the client (a separate process) --------------------------------------------------------


async def _read_answer(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    length = int(lowered[at + 17 : lowered.index(b"\r\n", at + 2)]) if at >= 0 else 0
    return status, await reader.readexactly(length) if length else b""


async def _drive(cfg: dict) -> dict:
    port, node, rate = cfg["port"], cfg["node"], cfg["rate"]
    heads = {
        op: (
            f"POST /call-control/v1/{op} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {cfg['secret']}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        for op in ("authorize", "release")
    }
    # Each body is built once but for its Call-ID, the only part that changes per call.
    tails = [
        f'","node":"{node}","source_ip":"{ip}","caller":"{caller}","callee":"{callee}"}}'.encode()
        for ip, caller, callee in cfg["calls"]
    ]
    tag = cfg["tag"]
    counter = itertools.count()
    auth_ms: list[float] = []
    release_ms: list[float] = []
    answers: Counter = Counter()
    examples: dict = {}
    errors: Counter = Counter()
    totals = Counter()
    window = Counter()
    connections = []
    for _ in range(cfg["concurrency"]):
        connections.append(await asyncio.open_connection("127.0.0.1", port))
    start = time.perf_counter()
    measure_from = start + cfg["warmup"]
    measure_to = measure_from + cfg["duration"]
    concurrency = len(connections)

    async def request(reader, writer, op: str, body: bytes) -> tuple[int, dict | None]:
        writer.write(heads[op] + str(len(body)).encode() + b"\r\n\r\n" + body)
        status, payload = await _read_answer(reader)
        return status, (json.loads(payload) if payload else None)

    async def client(number: int, reader, writer) -> None:
        rnd = random.Random(cfg["seed"] * 1000 + number)
        for turn in itertools.count():
            now = time.perf_counter()
            if now >= measure_to:
                return
            if rate:
                # Open loop: this connection's share of a fixed schedule, one timer per
                # request; a late request still counts from the moment it was due.
                scheduled = start + (number + turn * concurrency) / rate
                if scheduled >= measure_to:
                    return
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
            else:
                scheduled = now
            totals["sent"] += 1
            measured = measure_from <= scheduled < measure_to
            call_id = f"{tag}-{next(counter)}@bench"
            try:
                status, answer = await request(
                    reader,
                    writer,
                    "authorize",
                    b'{"call_id":"' + call_id.encode() + tails[rnd.randrange(len(tails))],
                )
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[f"authorize: {type(exc).__name__}"] += 1
                return
            done = time.perf_counter()
            if status != 200:
                errors[f"authorize: HTTP {status}"] += 1
                continue
            routed = answer["action"] == "route"
            totals["routed"] += routed
            if measured:
                auth_ms.append((done - scheduled) * 1000)
                key = f"{answer['action']} {answer['code']}"
                answers[key] += 1
                examples.setdefault(key, answer["reason"])
            if measure_from <= done < measure_to:
                window["authorize"] += 1
                window["routed"] += routed
            if not routed or rnd.random() >= cfg["release"]:
                continue  # answered: the money stays reserved until the CDR
            body = json.dumps(
                {"node": node, "call_id": call_id, "reservation": answer["reservation"]}
            ).encode()
            sent = time.perf_counter()
            try:
                status, answer = await request(reader, writer, "release", body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[f"release: {type(exc).__name__}"] += 1
                return
            done = time.perf_counter()
            if status != 200:
                errors[f"release: HTTP {status}"] += 1
                continue
            totals["released"] += answer["released"]
            if measured:
                release_ms.append((done - sent) * 1000)
            if measure_from <= done < measure_to:
                window["release"] += 1

    async def mark() -> dict:
        await asyncio.sleep(measure_from - time.perf_counter())
        before = resource.getrusage(resource.RUSAGE_SELF)
        print("measuring", flush=True)
        await asyncio.sleep(measure_to - time.perf_counter())
        after = resource.getrusage(resource.RUSAGE_SELF)
        print("measured", flush=True)
        backlog = int((measure_to - start) * rate) - totals["sent"] if rate else 0
        return {
            "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "backlog": backlog,
        }

    tasks = [asyncio.ensure_future(client(n, r, w)) for n, (r, w) in enumerate(connections)]
    marks = await mark()
    _done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
        errors["still waiting 30 s after the end"] += 1
    for _reader, writer in connections:
        writer.close()
    return {
        "auth_ms": auth_ms,
        "release_ms": release_ms,
        "answers": dict(answers),
        "examples": examples,
        "errors": dict(errors),
        "totals": dict(totals),
        "window": dict(window),
        **marks,
    }


def run_client(config_path: str) -> None:
    """The client process: drive the server as configured, print the figures as JSON."""
    cfg = json.loads(Path(config_path).read_text())
    gc.freeze()  # the call list is long-lived: keep the collector off it
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(_drive(cfg))), flush=True)


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# With --gc-stats the server imports this (as sitecustomize, from a folder put first on its
# PYTHONPATH): every full collection, and any other one of 2 ms or more, is written to its
# log with the wall-clock moment it ended. Instrumentation of the bench; no product code.
GC_HOOK = """
import gc, sys, time
_started = {}
def _gc_pause(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started.get(0, time.perf_counter())) * 1000
    if info["generation"] == 2 or ms >= 2:
        sys.stderr.write(f"gc-pause {time.time():.3f} {info['generation']} {ms:.2f}\\n")
gc.callbacks.append(_gc_pause)
"""


def gc_pauses(log: Path, since: float, until: float) -> dict:
    """Collections logged by GC_HOOK between two wall-clock moments: full ones and the longest."""
    pauses = []
    for line in log.read_text().splitlines():
        if line.startswith("gc-pause "):
            _tag, moment, generation, ms = line.split()
            if since <= float(moment) < until:
                pauses.append((int(generation), float(ms)))
    full = [ms for generation, ms in pauses if generation == 2]
    return {"full": len(full), "full_ms": sum(full), "longest": max((ms for _g, ms in pauses), default=0.0)}


def start_server(args, *, workers: int, threads: int, port: int, log: Path) -> subprocess.Popen:
    path = str(ROOT)
    if args.gc_stats:
        hook = log.parent / "gc-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(GC_HOOK)
        path = f"{hook}{os.pathsep}{path}"
    env = {
        **os.environ,
        "CALL_CONTROL_THREADS": str(threads),
        "LOG_LEVEL": args.log_level,
        "NODE_NAME": NODE,
        "PYTHONPATH": path,
    }
    command = [
        sys.executable, "-m", "uvicorn", "smartswitch.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--lifespan", "on",
    ]  # fmt: skip
    # The systemd unit runs uvicorn at its default level, which logs every request;
    # --access-log measures that, the default leaves it out.
    command += [] if args.access_log else ["--log-level", "warning", "--no-access-log"]
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server stopped (exit {server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                # No secret: 401 from the call-control handler, which checks it before the body.
                sock.sendall(
                    b"POST /call-control/v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                )
                if sock.recv(100).startswith(b"HTTP/1.1 401"):
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"the server did not answer within 120 s:\n{log.read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def measure(
    args, workdir: Path, cfg: dict, *, workers: int, threads: int, concurrency: int, rate: float
) -> dict:
    """One server configuration: start it, drive it, stop it; the figures."""
    reset_reservations()
    port = free_port()
    log = workdir / f"server-{workers}-{threads}-{concurrency}-{rate:g}.log"
    server = start_server(args, workers=workers, threads=threads, port=port, log=log)
    database = ("mariadbd", "mysqld") if args.database_url.startswith("mysql") else ("postgres",)
    config = workdir / "client.json"
    tag = f"r{random.randrange(16**6):06x}"
    config.write_text(json.dumps({**cfg, "port": port, "concurrency": concurrency, "rate": rate, "tag": tag}))
    before = after = None
    result = None
    try:
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", str(config)], stdout=subprocess.PIPE, text=True
        )
        for line in client.stdout:
            if line.startswith("measuring"):
                before, since = cpu_sample(server.pid, database), time.time()
            elif line.startswith("measured"):
                after, until = cpu_sample(server.pid, database), time.time()
            elif line.startswith("{"):
                result = json.loads(line)
        client.wait()
    finally:
        stop_server(server)
    if result is None or before is None or after is None:
        raise SystemExit(f"the client failed; server log:\n{log.read_text()[-3000:]}")
    seconds = cfg["duration"]
    live, held, reserved = books()
    result.update(
        workers=workers,
        threads=threads,
        concurrency=concurrency,
        rate=rate,
        cpu={k: (after[k] - before.get(k, 0)) / seconds for k in after} | {"client": result["cpu"] / seconds},
        books=(live, held, reserved),
        gc=gc_pauses(log, since, until) if args.gc_stats else None,
        log_tail=[line for line in log.read_text().splitlines() if "ERROR" in line or "Traceback" in line][
            :5
        ],
    )
    return result


def report_run(result: dict, duration: float) -> dict:
    auth, release = result["auth_ms"], result["release_ms"]
    window = result["window"]
    row = {
        "workers": result["workers"],
        "threads": result["threads"],
        "concurrency": result["concurrency"],
        "rate": result["rate"],
        "auth_s": window.get("authorize", 0) / duration,
        "routed_s": window.get("routed", 0) / duration,
        "release_s": window.get("release", 0) / duration,
        **{f"p{int(q * 100)}": percentile(auth, q) for q in (0.5, 0.9, 0.99)},
        "max": max(auth, default=float("nan")),
        "cpu": result["cpu"],
    }
    loop = f"open loop at {result['rate']:g}/s" if result["rate"] else "closed loop"
    print(
        f"\nuvicorn --workers {row['workers']}, CALL_CONTROL_THREADS={row['threads']}, "
        f"{row['concurrency']} connections, {loop}, {duration:g} s measured"
    )
    print(
        f"  authorizations: {row['auth_s']:,.0f}/s ({row['routed_s']:,.0f}/s routed); "
        f"releases {row['release_s']:,.0f}/s"
    )
    print(
        f"  authorize latency ms: p50 {row['p50']:.1f}  p90 {row['p90']:.1f}  p99 {row['p99']:.1f}  "
        f"max {row['max']:.1f}   release: p50 {percentile(release, 0.5):.1f}  "
        f"p99 {percentile(release, 0.99):.1f}"
    )
    total = sum(result["answers"].values()) or 1
    shares = sorted(result["answers"].items(), key=lambda kv: -kv[1])
    print(
        "  answers: " + "; ".join(f"{key} {result['examples'][key]!r} {n / total:.1%}" for key, n in shares)
    )
    if result["rate"] and result.get("backlog"):
        print(f"  behind schedule: {result['backlog']:,} requests due in the window were never sent")
    print(
        f"  errors: {result['errors'] or 'none'}"
        + (f"; server log: {result['log_tail']}" if result["log_tail"] else "")
    )
    if result["gc"] is not None:
        pauses = result["gc"]
        print(
            f"  server garbage collection: {pauses['full']} full collections, {pauses['full_ms']:.0f} ms "
            f"in all; the longest pause {pauses['longest']:.0f} ms"
        )
    cpu = result["cpu"]
    # Each uvicorn worker keeps the connections it accepted: the split shows an uneven share.
    split = [f"{v:.2f}" for k, v in cpu.items() if k.startswith("process ") and v >= 0.01]
    print(
        f"  CPU, cores: server {cpu['server']:.2f}"
        + (f" ({' + '.join(split)})" if len(split) > 1 else "")
        + f", database {cpu['database']:.2f}, client {cpu['client']:.2f}, "
        f"whole machine {cpu['machine']:.2f} of {os.cpu_count()}"
    )
    live, held, reserved = result["books"]
    expected = result["totals"].get("routed", 0) - result["totals"].get("released", 0)
    verdict = "agree" if held == reserved and live == expected else "DISAGREE"
    print(
        f"  books: {live:,} live reservations (routed minus released: {expected:,}) hold {held}; "
        f"accounts' reserved {reserved}: {verdict}"
    )
    return row


# --- in-process profile ---------------------------------------------------------------------


def statements() -> int | None:
    """Statements this connection has sent so far (MariaDB/MySQL), None elsewhere."""
    from django.db import connection

    if connection.vendor != "mysql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


def print_table(rows: list[dict]) -> None:
    columns = (
        "workers | threads | connections | offered | auth/s | routed/s | p50 ms | p90 ms | p99 ms | max ms"
    )
    print(f"\n| {columns} | CPU server / db / client |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        offered = f"{row['rate']:,}/s" if row["rate"] else "closed"
        cells = [row["workers"], row["threads"], row["concurrency"], offered]
        cells += [f"{row[k]:,.0f}" for k in ("auth_s", "routed_s")]
        cells += [f"{row[k]:.1f}" for k in ("p50", "p90", "p99")] + [f"{row['max']:.0f}"]
        cells.append(" / ".join(f"{row['cpu'][k]:.2f}" for k in ("server", "database", "client")))
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


def profile(cfg: dict, count: int) -> None:
    """N authorizations through endpoint.handle in this process: timings, then cProfile."""
    from django.utils import timezone

    from apps.callcontrol import snapshot as snapshots
    from apps.callcontrol.decision import decide
    from apps.callcontrol.endpoint import handle, parse_authorize

    auth = f"Bearer {cfg['secret']}"
    rnd = random.Random(cfg["seed"])

    def bodies(tag: str, n: int) -> list[bytes]:
        return [
            json.dumps(
                {
                    "call_id": f"{tag}-{i}@bench",
                    "node": NODE,
                    "source_ip": ip,
                    "caller": caller,
                    "callee": callee,
                }
            ).encode()
            for i, (ip, caller, callee) in enumerate(rnd.choice(cfg["calls"]) for _ in range(n))
        ]

    reset_reservations()
    started = time.perf_counter()
    handle("authorize", bodies("first", 1)[0], auth)
    first = (time.perf_counter() - started) * 1000
    print(f"\nfirst authorization (snapshot build, index mapping): {first:.0f} ms")
    for body in bodies("warm", 500):
        handle("authorize", body, auth)

    timed = bodies("timed", count)
    asked = statements()
    answers: Counter = Counter()
    routed = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started, cpu = time.perf_counter(), time.process_time()
    for body in timed:
        _status, answer = handle("authorize", body, auth)
        answers[f"{answer.get('action')} {answer.get('code')}"] += 1
        if answer.get("action") == "route":
            routed.append((json.loads(body)["call_id"], answer["reservation"]))
    handled, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
    sent = statements()
    started, decide_cpu = time.perf_counter(), time.process_time()
    for body in timed:
        decide(snapshots.current(), parse_authorize(json.loads(body)), at=timezone.now())
    decided, decide_cpu = time.perf_counter() - started, time.process_time() - decide_cpu
    releases = routed[: max(1, len(routed) // 2)]
    before_releases = statements()
    started, release_cpu = time.perf_counter(), time.process_time()
    for call_id, reservation in releases:
        body = json.dumps({"node": NODE, "call_id": call_id, "reservation": reservation}).encode()
        handle("release", body, auth)
    released, release_cpu = time.perf_counter() - started, time.process_time() - release_cpu
    after_releases = statements()

    def us(seconds: float, n: int = count) -> str:
        return f"{seconds / n * 1e6:,.0f} µs"

    print(
        f"{count:,} authorizations one after another, no profiler: {us(handled)} each "
        f"({count / handled:,.0f}/s), of which {us(cpu)} CPU in this process "
        f"(user {us(user)}, system {us(system)})"
    )
    print(f"  parse + snapshot + decide (no money): {us(decided)} ({us(decide_cpu)} CPU)")
    print(
        f"  so settle (reserve: one transaction): {us(handled - decided)} "
        f"({us(cpu - decide_cpu)} CPU, the rest waiting for the database)"
    )
    if asked is not None and sent is not None:
        print(f"  statements sent to the database per authorization: {(sent - asked - 1) / count:.2f}")
    print(f"  answers: {dict(answers)}")
    n = len(releases)
    print(f"{n:,} releases: {us(released, n)} each ({us(release_cpu, n)} CPU)")
    if before_releases is not None and after_releases is not None:
        print(f"  statements per release: {(after_releases - before_releases - 1) / n:.2f}")

    profiled = bodies("profiled", count)
    profiler = cProfile.Profile()
    profiler.enable()
    for body in profiled:
        handle("authorize", body, auth)
    profiler.disable()
    for order in ("cumulative", "tottime"):
        print(f"\n--- {count:,} authorizations under cProfile, top 25 by {order} time ---")
        pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats(order).print_stats(25)
    print_own_time(pstats.Stats(profiler), count)
    reset_reservations()


def _owner(filename: str, function: str) -> str:
    """Who a profiled function belongs to: a product module, a library, or the socket."""
    if "recv_into" in function or "sendall" in function:
        return "socket send/receive (mostly waiting for the database)"
    if "/apps/" in filename:
        return "apps/" + filename.split("/apps/", 1)[1]
    for library in ("pymysql", "psycopg", "django", "uvicorn", "asgiref"):
        if f"/{library}/" in filename:
            return library
    if filename.startswith("~"):
        return "built-in functions (getattr, isinstance, str, dict methods...)"
    if "/lib/python3" in filename:
        return f"stdlib {Path(filename).stem}"
    return "other"


def print_own_time(stats: pstats.Stats, count: int) -> None:
    """cProfile's own (tottime) time summed by owner, per authorization."""
    owners: Counter = Counter()
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
        owners[_owner(filename, function)] += own
    total = sum(owners.values())
    print(
        f"\n--- own time by owner, per authorization under cProfile (total {total / count * 1e6:,.0f} µs) ---"
    )
    for owner, seconds in owners.most_common(20):
        print(f"{seconds / count * 1e6:8,.0f} µs  {seconds / total:5.1%}  {owner}")


# --- main -----------------------------------------------------------------------------------


def configure(args, index_dir: Path, var_dir: Path) -> None:
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "PREFIX_INDEX_DIR": str(index_dir),
            "SMARTSWITCH_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
    )
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # this process's; the server's is --log-level
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--prefixes", type=int, default=1_000_000, help="per deck (default 1000000)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a database built with the same sizes; keep it"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and index files afterwards")
    parser.add_argument("--workers", type=integers, default=[1], help="uvicorn --workers, e.g. 1,2")
    parser.add_argument("--threads", type=integers, default=[8], help="CALL_CONTROL_THREADS, e.g. 4,8,16")
    parser.add_argument(
        "--concurrency", type=integers, default=[32], help="client connections, e.g. 16,32,64"
    )
    parser.add_argument(
        "--rate", type=integers, default=[0], help="open loop: requests per second (0: closed loop)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--release", type=float, default=0.5, help="share of routed calls released (failed)")
    parser.add_argument("--miss", type=float, default=0.0, help="share of numbers no price list knows")
    parser.add_argument("--calls", type=int, default=100_000, help="distinct (customer, number) pairs")
    parser.add_argument(
        "--log-level", default="INFO", help="the server's LOG_LEVEL (default INFO, as deployed)"
    )
    parser.add_argument("--gc-stats", action="store_true", help="log the server's garbage collections")
    parser.add_argument("--access-log", action="store_true", help="uvicorn logs every request (as deployed)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile N authorizations in process"
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args.client)
        return

    name = urlparse(args.database_url).path.lstrip("/")
    keep = args.keep or args.reuse
    # One folder per server and database: a MariaDB and a PostgreSQL bench database of the
    # same name have tables of the same ids, whose index files must not meet.
    vendor = urlparse(args.database_url).scheme.split("+")[0]
    var_dir = ROOT / "var" / f"bench-{vendor}-{urlparse(args.database_url).port or 'default'}-{name}"
    index_dir = var_dir / "prefix-index"
    workdir = Path(tempfile.mkdtemp(prefix="smartswitch-bench-cc-"))
    (workdir / "static").mkdir()
    configure(args, index_dir, workdir)
    from django.core.management import call_command
    from django.db import connection

    from apps.callcontrol import snapshot as snapshots
    from apps.nodes.models import Node
    from apps.rates.lookup import index_path, rebuild_index
    from apps.rates.models import RateTable

    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {describe_machine()}")
    print(describe_server(args.database_url))
    recorded = reusable_setup(args) if args.reuse else None
    if recorded is None:
        started = time.perf_counter()
        create_database(args.database_url)
        shutil.rmtree(index_dir, ignore_errors=True)  # files of a dropped database's tables
        call_command("migrate", verbosity=0)
        print(f"database {name} created and migrated in {time.perf_counter() - started:.1f} s", flush=True)
        timings = build_world(args, load_codes(), workdir)
    else:
        timings = recorded
        call_command("migrate", verbosity=0)  # code newer than the database: same data, new columns
        print(f"reusing database {name} (built for {args.prefixes:,} prefixes, {args.customers:,} customers)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        print(f"database: {connection.vendor} {cursor.fetchone()[0]} ({args.database_url.split('@')[-1]})")
    for item in timings["imports"]:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in item["phases"].items())
        print(f"  import {item['table']}: {item['rows']:,} rows in {item['seconds']:.1f} s ({phases})")

    tables = list(RateTable.objects.order_by("pk").values_list("pk", "name", "live_version"))
    for table_id, table_name, version in tables:
        existed = index_path(table_id, version).exists()
        started = time.perf_counter()
        path = rebuild_index(table_id)
        took = time.perf_counter() - started
        what = "kept from an earlier run" if existed else f"built in {took:.1f} s"
        print(f"  index {table_name}: {path.stat().st_size / 1e6:.1f} MB, {what}")
    started = time.perf_counter()
    snapshot = snapshots.build()
    print(f"  call-control snapshot: {len(snapshot.peers):,} peers in {time.perf_counter() - started:.2f} s")
    del snapshot

    codes = load_codes()
    sell, _buys = decks(codes, args.prefixes, args.seed)
    del _buys
    cfg = {
        "node": NODE,
        "secret": Node.objects.get(name=NODE).call_control_secret,
        "calls": calls(codes, sell, args.customers, args.calls, args.seed, args.miss),
        "seed": args.seed,
        "warmup": args.warmup,
        "duration": args.duration,
        "release": args.release,
    }
    del sell
    gc.collect()

    try:
        if args.profile:
            profile(cfg, args.profile)
            return
        rows = []
        for workers, threads, concurrency, rate in itertools.product(
            args.workers, args.threads, args.concurrency, args.rate
        ):
            result = measure(
                args, workdir, cfg, workers=workers, threads=threads, concurrency=concurrency, rate=rate
            )
            rows.append(report_run(result, args.duration))
        reset_reservations()
        print_table(rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not keep:
            drop_database(args.database_url)
            shutil.rmtree(var_dir, ignore_errors=True)
            print(f"\ndropped database {name}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
