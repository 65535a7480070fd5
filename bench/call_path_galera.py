"""bench/call_path.py's load on a real 3-node Galera cluster: one OpenSIPS, call control and
billing worker per node, traffic to all three at once.

The cluster is tests/cluster/galera_harness.py's GaleraCluster (three mariadbd with galera-4
on loopback ports, their own data directories under one temporary folder; the machine's
MariaDB on 3306 is never touched): imported from the test package, since it is the one
loopback Galera starter the project has, and what it starts is what the `galera` tests test.
Migrations run and the world of bench/call_path.py (`build_world`: one prepaid customer
from 127.0.0.10, one supplier on SIPp uas, prices for 49, a default routing plan; node
"bench1") is built once on member 1; nodes "bench2" and "bench3" are added and OpenSIPS's
tables synced again. Galera replicates it all. Then, for each node k (1..3), all on
loopback:

- OpenSIPS on the cfg the product renders for that Node (apps.opensips.config.render):
  SIP on 127.0.0.1:<its own port> (the cluster's bind address), MI and the clusterer's bin
  socket on its management address 127.0.0.k (one MI port for all, as OPENSIPS_MI_URL
  says), db_url = Galera member k (OPENSIPS_DB_URL), call control = its own uvicorn;
- call control: uvicorn (--web-workers) with DATABASE_URL = member k, NODE_NAME = benchk;
- the billing worker (`billing_loop` back to back, as bench/call_path.py's) on member k,
  NODE_NAME = benchk, so it imports its own node's acc rows first;
- one SIPp customer per node (bench/scenarios/uac_call.xml) at rate/3 calls/s, all three
  at once; one SIPp supplier (uas_answer.xml) shared by the three nodes.

After each step (bounded wait until nothing is left to import or rate and no node holds a
dialog, as bench/call_path.py waits) it reports completed %, set-up p50/p99/max (SIPp's
INVITE -> 200, all three customers together), CPU seconds per process group (the trees of
the three OpenSIPS, the three call controls, the three billing workers, SIPp; every mariadbd
on the machine), and the write conflicts:

- retried / given up: `apps.core.db.retry_on_conflict`'s INFO "write conflict (...)" and
  WARNING "write conflict persisted" lines, counted in each process's log over the step
  (its counters `retry_stats` live in each process; the logger apps.core.db is put at INFO
  in every child: uvicorn through --log-config, the worker in its own code); "skipped" is
  `unless_conflict`'s line (the billing loop takes the work again on its next round);
- Galera's own counters per member: wsrep_local_cert_failures and wsrep_local_bf_aborts.

The money checks then run against every member, each in a process of its own with
DATABASE_URL = that member: every answered call one CDR, rated, charged once on each side
(ledger sums equal to the CDRs' sell and buy costs), unanswered ones charged nothing, no
open reservation (for each node: none without a dialog in that node's OpenSIPS; accounts'
reserved money 0), no dialog left, and `manage.py check_ledger` clean. Member 1's check
runs first and, when reservations are open without a dialog, runs the product's sweep
(release_without_dialog, its clock moved past its margin) for each node, as
bench/call_path.py does. Galera should make the three agree.

    OPENSIPS_BIN=/opt/engines/opensips/sbin/opensips \\
        .venv/bin/python bench/call_path_galera.py --rates 60,150,300 --duration 20

Skips (exit 0, saying why) when OpenSIPS, SIPp, mariadbd or galera-4 is missing. Every
process it starts is stopped, and the cluster's and its own temporary folders removed
(unless --keep), on exit, on Ctrl-C and on errors. Nothing here changes product code.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import call_path as single  # noqa: E402 - after the repository is on sys.path
from bench.common import describe_machine, integers, percentile  # noqa: E402

NODES = 3
LOOPBACK = single.LOOPBACK
GROUPS = ("opensips", "uvicorn", "worker", "mariadbd", "sipp")
CONFLICT_LINES = {
    "retried": "write conflict (",
    "gave_up": "write conflict persisted",
    "skipped": "gave up on a write conflict",
}
WSREP_COUNTERS = ("wsrep_local_cert_failures", "wsrep_local_bf_aborts")
# For uvicorn's workers: Django's own dictConfig (disable_existing_loggers False) keeps the
# level of a logger it does not name, so apps.core.db stays at INFO under LOG_LEVEL=WARNING.
UVICORN_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"apps.core.db": {"level": "INFO"}},
}


def management_address(k: int) -> str:
    return f"127.0.0.{k}"


# --- child modes ------------------------------------------------------------------------------


def worker_mode() -> None:
    import django

    django.setup()  # the parent's environment: this node's member, NODE_NAME, MI
    logging.getLogger("apps.core.db").setLevel(logging.INFO)
    single.run_worker()


def check_mode(spec: dict) -> None:
    import django

    django.setup()
    print(json.dumps(member_checks(**spec), default=str), flush=True)


def member_checks(
    *,
    prefix: str,
    answered_by_sipp: int,
    customer_account: int,
    supplier_account: int,
    mi_port: int,
    sweep: bool,
) -> dict:
    """The step's calls in the books of this process's member (see the module's docstring)."""
    from django.db.models import Count, Sum
    from django.utils import timezone

    from apps.billing.models import Account, Reservation
    from apps.nodes.models import Node
    from engines.opensips.mi import MIClient

    result, books_ok = single.books(prefix, answered_by_sipp, customer_account, supplier_account)
    nodes = list(Node.objects.filter(name__startswith="bench").order_by("name"))
    clients = {
        node.pk: MIClient(f"http://{node.management_address}:{mi_port}/mi", timeout=5) for node in nodes
    }

    def without_dialog() -> dict[str, int]:
        counts = {}
        for node in nodes:
            live = {d.call_id for d in clients[node.pk].dialogs(context=False) if d.active}
            open_ids = Reservation.objects.active().filter(node_id=node.pk).values_list("call_id", flat=True)
            counts[node.name] = sum(call_id not in live for call_id in open_ids)
        return counts

    open_by_node = dict(
        Reservation.objects.active()
        .values_list("node__name")
        .annotate(n=Count("id"))
        .values_list("node__name", "n")
    )
    no_dialog = without_dialog()
    swept = {}
    if sweep and any(no_dialog.values()):
        from apps.billing.services.reconcile import MARGIN, release_without_dialog

        later = timezone.now() + MARGIN + timedelta(seconds=1)
        swept = {node.name: release_without_dialog(node, clients[node.pk], now=later) for node in nodes}
        no_dialog_after = without_dialog()
    else:
        no_dialog_after = no_dialog
    dialogs = {
        node.name: int(clients[node.pk].statistics(["dialog:"]).get("dialog:active_dialogs", -1))
        for node in nodes
    }
    reserved = Account.objects.aggregate(total=Sum("reserved"))["total"] or Decimal(0)
    result.update(
        {
            "open_reservations": open_by_node,
            "open_without_dialog": no_dialog,
            "released_by_sweep": swept,
            "open_without_dialog_after_sweep": no_dialog_after,
            "reserved": reserved,
            "dialogs": dialogs,
        }
    )
    result["ok"] = books_ok and not open_by_node and reserved == 0 and not any(dialogs.values())
    return result


# --- the parent -------------------------------------------------------------------------------


def render_node_cfg(name: str, *, modules: str, cc_url: str, db_url: str) -> str:
    """Node `name`'s opensips.cfg as `render_node_config` writes it, on its own Galera member."""
    from django.test import override_settings

    from apps.nodes.models import ClusterSettings, Node
    from apps.opensips.config import render

    with override_settings(CALL_CONTROL_URL=cc_url, OPENSIPS_MODULES_DIR=modules, OPENSIPS_DB_URL=db_url):
        return render(Node.objects.get(name=name), ClusterSettings.load())["opensips/opensips.cfg"]


def add_nodes(sip_ports: list[int]) -> None:
    """bench2 and bench3 beside build_world's bench1; OpenSIPS's tables synced again."""
    from django.db import transaction

    from apps.nodes import services as node_services
    from apps.nodes.models import Node
    from apps.opensips import provisioning
    from apps.tenancy.scope import Scope

    Node.objects.filter(name=single.NODE).update(management_address=management_address(1))
    for k in range(2, NODES + 1):
        node_services.create_node(
            actor=Scope.system(),
            name=f"bench{k}",
            management_address=management_address(k),
            sip_address=LOOPBACK,
            sip_port=sip_ports[k - 1],
            # Nodes on one address each need a FreeSWITCH port of their own (no FreeSWITCH runs).
            media_port=single.free_port(),
        )
    with transaction.atomic():
        provisioning.sync_tables()


def conflict_counts(logs: dict[str, Path], offsets: dict[str, int]) -> dict[str, dict[str, int]]:
    """Conflict lines per log since `offsets`: {"uvicorn2": {"retried": n, ...}, ...}."""
    counts = {}
    for label, path in logs.items():
        with path.open(errors="replace") as handle:
            handle.seek(offsets.get(label, 0))
            text = handle.read()
        counts[label] = {key: text.count(marker) for key, marker in CONFLICT_LINES.items()}
    return counts


def log_offsets(logs: dict[str, Path]) -> dict[str, int]:
    return {label: path.stat().st_size if path.exists() else 0 for label, path in logs.items()}


def wsrep_counters(cluster) -> dict[str, dict[str, int]]:
    counters = {}
    for member in cluster.members:
        status = cluster.status(member)
        counters[member.name] = {key: int(status.get(key, 0)) for key in WSREP_COUNTERS}
    return counters


def active_dialogs(mi_port: int) -> int:
    from engines.opensips.mi import MIClient

    total = 0
    for k in range(1, NODES + 1):
        client = MIClient(f"http://{management_address(k)}:{mi_port}/mi", timeout=5)
        total += int(client.statistics(["dialog:"]).get("dialog:active_dialogs", -1))
    return total


def wait_caught_up(mi_port: int) -> tuple[float, bool]:
    """bench/call_path.py's wait, on member 1, with the dialogs of all three nodes."""
    from apps.cdr.models import Cdr
    from apps.opensips.models import Acc, MissedCall

    started = time.monotonic()
    stable = 0
    while time.monotonic() < started + single.CATCH_UP_SECONDS:
        dialogs = active_dialogs(mi_port)
        if (
            not Acc.objects.exists()
            and not MissedCall.objects.exists()
            and not Cdr.objects.filter(rating_state=Cdr.RatingState.UNRATED).exists()
        ):
            stable += 1
            if stable >= 2 and (dialogs == 0 or time.monotonic() - started > single.DIALOG_GRACE):
                return time.monotonic() - started, True
        else:
            stable = 0
        time.sleep(0.5)
    return time.monotonic() - started, False


def run_checks(cluster, env_of, spec: dict) -> dict[str, dict]:
    """member_checks in a process on each member, member 1 first (it sweeps when needed)."""
    results = {}
    for k, member in enumerate(cluster.members, start=1):
        done = subprocess.run(
            [sys.executable, __file__, "--check", json.dumps({**spec, "sweep": k == 1})],
            env=env_of(k),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        try:
            results[member.name] = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            results[member.name] = {"ok": False, "error": f"exit {done.returncode}: {done.stderr[-2000:]}"}
    return results


def run_step(args, number: int, rate: int, ctx: dict) -> dict:
    prefix = f"s{number}r{rate}n"
    shares = [rate // NODES + (1 if k < rate % NODES else 0) for k in range(NODES)]
    load = os.getloadavg()[0]
    before_cpu = single.cpu_sample(ctx["roots"])
    before_wsrep = wsrep_counters(ctx["cluster"])
    offsets = log_offsets(ctx["logs"])
    results: dict[int, dict] = {}

    def customer(k: int) -> None:
        results[k] = single.run_customer(
            args,
            ctx["sipp"],
            shares[k - 1],
            ctx["workdir"] / f"step{number}-{rate}" / f"node{k}",
            f"{prefix}{k}-",
            ctx["sip_ports"][k - 1],
        )

    started = time.monotonic()
    threads = [threading.Thread(target=customer, args=(k,)) for k in range(1, NODES + 1) if shares[k - 1]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != len(threads):
        # A customer's thread died (its traceback is above): the step measured nothing.
        raise SystemExit(f"step {number}: {len(threads) - len(results)} SIPp customer(s) failed to run")
    calls_took = time.monotonic() - started
    catch_up, caught = wait_caught_up(ctx["mi_port"])
    after_cpu = single.cpu_sample(ctx["roots"])
    wall = time.monotonic() - started
    conflicts = conflict_counts(ctx["logs"], offsets)
    after_wsrep = wsrep_counters(ctx["cluster"])
    cpu = dict.fromkeys(GROUPS, 0.0)
    for label in after_cpu:
        group = label.rstrip("0123456789")
        cpu["sipp" if group == "uas" else group] += after_cpu[label] - before_cpu[label]
    customers = [results[k] for k in sorted(results)]
    cpu["sipp"] += sum(c["cpu"] for c in customers)
    setup_ms = [t for c in customers for t in c["setup_ms"]]
    offered = sum(c["offered"] for c in customers)
    successful = sum(c["successful"] for c in customers)
    spec = {
        "prefix": prefix,
        "answered_by_sipp": len(setup_ms),
        "customer_account": ctx["world"]["customer_account"],
        "supplier_account": ctx["world"]["supplier_account"],
        "mi_port": ctx["mi_port"],
    }
    checks = run_checks(ctx["cluster"], ctx["env_of"], spec)
    totals = {
        group: {
            key: sum(v[key] for label, v in conflicts.items() if label.startswith(group))
            for key in CONFLICT_LINES
        }
        for group in ("uvicorn", "worker")
    }
    wsrep = {
        name: {key: after_wsrep[name][key] - before_wsrep[name][key] for key in WSREP_COUNTERS}
        for name in after_wsrep
    }
    errors: dict[str, int] = {}
    for c in customers:
        for reason, n in c["errors"].items():
            errors[reason] = errors.get(reason, 0) + n
    row = {
        "rate": rate,
        "shares": shares,
        "offered": offered,
        "successful": successful,
        "answered": len(setup_ms),
        "completed": 100 * successful / offered if offered else 0.0,
        "p50": percentile(setup_ms, 0.50),
        "p99": percentile(setup_ms, 0.99),
        "max": max(setup_ms, default=float("nan")),
        "sipp_exits": [c["exit"] for c in customers],
        "calls_took": calls_took,
        "catch_up": catch_up,
        "caught_up": caught,
        "wall": wall,
        "cpu": cpu,
        "load": (load, os.getloadavg()[0]),
        "errors": errors,
        "conflicts": totals,
        "conflicts_by_process": conflicts,
        "wsrep": wsrep,
        "checks": checks,
    }
    print(
        f"step {number}: {rate} calls/s ({'+'.join(map(str, shares))}) x {args.duration} s:"
        f" offered {offered:,},"
        f" successful {successful:,} ({row['completed']:.1f} %), answered {row['answered']:,};"
        f" set-up p50 {row['p50']:.1f} ms p99 {row['p99']:.1f} ms max {row['max']:.0f} ms;"
        f" SIPp exits {row['sipp_exits']} after {calls_took:.1f} s;"
        f" {'caught up' if caught else 'NOT caught up'} {catch_up:.1f} s later;"
        f" CPU s {', '.join(f'{k} {v:.1f}' for k, v in cpu.items())} over {wall:.1f} s;"
        f" load {row['load'][0]:.2f} -> {row['load'][1]:.2f}",
        flush=True,
    )
    print(f"  SIPp's errors: {errors or 'none'}", flush=True)
    print(f"  conflicts (uvicorn, worker): {totals}; by process: {conflicts}", flush=True)
    print(f"  Galera counters over the step: {wsrep}", flush=True)
    for name, result in checks.items():
        print(f"  checks on {name}: {result}", flush=True)
    return row


def verdict(result: dict) -> str:
    """One member's checks in a table cell; every figure is printed in full after the step."""
    if result.get("ok"):
        return f"OK ({result['answered_cdrs']:,} rated)"
    if "error" in result:
        return f"FAILED: {result['error'][:200]}"
    charged = result["customer_charges"] == result["supplier_charges"] == result["answered_cdrs"]
    money = (
        "charges right" if charged and result["sell_matches"] and result["buy_matches"] else "CHARGES WRONG"
    )
    before = sum(result["open_without_dialog"].values())
    after = sum(result["open_without_dialog_after_sweep"].values())
    swept = f", {before} → {after} after the sweep" if result["released_by_sweep"] else ""
    return (
        f"FAILED: {result['answered_cdrs']:,} CDRs for {result['answered_sipp']:,} answered, {money};"
        f" open {sum(result['open_reservations'].values())} (without dialog {before}{swept}),"
        f" dialogs {sum(result['dialogs'].values())}, reserved {result['reserved']},"
        f" check_ledger {result['check_ledger']}"
    )


def print_table(rows: list[dict]) -> None:
    print()
    print(
        "| calls/s (per node) | calls | completed | set-up p50 / p99 / max ms | catch-up s |"
        " CPU s: " + " / ".join(GROUPS) + " | conflicts retried / gave up (uvicorn; worker) |"
        " cert failures / BF aborts per member | money checks node1 / node2 / node3 |"
    )
    print("|---|---:|---:|---|---:|---|---|---|---|")
    for r in rows:
        u, w = r["conflicts"]["uvicorn"], r["conflicts"]["worker"]
        cpu = " / ".join(f"{r['cpu'][g]:.1f}" for g in GROUPS)
        wsrep = " · ".join(
            f"{v['wsrep_local_cert_failures']}/{v['wsrep_local_bf_aborts']}" for v in r["wsrep"].values()
        )
        print(
            f"| {r['rate']} ({'+'.join(map(str, r['shares']))}) | {r['offered']:,} | {r['completed']:.1f} % |"
            f" {r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.0f} |"
            f" {r['catch_up']:.1f}{'' if r['caught_up'] else ' (gave up)'} |"
            f" {cpu} |"
            f" {u['retried']} / {u['gave_up']}; {w['retried']} / {w['gave_up']} (skipped {w['skipped']}) |"
            f" {wsrep} | {' / '.join(verdict(c) for c in r['checks'].values())} |"
        )


def start_cluster(sql_port: int):
    """A GaleraCluster whose member 1 listens on `sql_port` (Django in this process was set up
    for it before the harness could be imported: it imports the product's models)."""
    from tests.cluster.galera_harness import GaleraCluster

    while True:
        cluster = GaleraCluster(NODES)
        first = cluster.members[0]
        taken = {p for m in cluster.members for p in dataclasses.astuple(m.ports)}
        if sql_port not in taken:
            first.ports = dataclasses.replace(first.ports, sql=sql_port)
            return cluster
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=integers, default=[60, 150, 300], help="calls/s per step, all nodes")
    parser.add_argument("--duration", type=int, default=20, help="seconds of calls per step")
    parser.add_argument("--hold", type=int, default=3, help="seconds each call is held")
    parser.add_argument(
        "--web-workers", type=int, default=1, help="uvicorn --workers per node (1: smartswitch-callcontrol)"
    )
    parser.add_argument("--threads", type=int, default=8, help="CALL_CONTROL_THREADS")
    parser.add_argument("--shm", type=int, default=512, help="OpenSIPS shared memory per node, MB")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the cluster's files")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--check", help=argparse.SUPPRESS)
    # bench/call_path.py's customer reads this: the Galera world has no fraud settings.
    parser.set_defaults(fraud=False)
    args = parser.parse_args()
    if args.worker:
        worker_mode()
        return
    if args.check:
        check_mode(json.loads(args.check))
        return

    binary, modules, sipp = single.find_engines()
    sql_port, mi_port, uas_port = single.free_port(), single.free_port(), single.free_port()
    sip_ports = [single.free_port() for _ in range(NODES)]
    cc_ports = [single.free_port() for _ in range(NODES)]
    workdir = Path(tempfile.mkdtemp(prefix="smartswitch-bench-galera-"))
    # Django first: the harness imports the product's models (member 1's port is chosen now).
    env = single.configure(f"mysql://root@{LOOPBACK}:{sql_port}/h4_galera", workdir, mi_port)
    from tests.cluster import galera_harness

    env["CALL_CONTROL_THREADS"] = str(args.threads)
    reason = galera_harness.missing()
    if reason:
        shutil.rmtree(workdir, ignore_errors=True)
        single.skip(reason)
    if args.keep:
        os.environ["GALERA_KEEP_FILES"] = "1"
    processes = single.Processes()
    signal.signal(signal.SIGTERM, single.interrupt)
    cluster = None
    rows = []
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {describe_machine()}", flush=True)
    print(f"OpenSIPS {binary}, modules {modules}; SIPp {sipp}; logs in {workdir}", flush=True)
    try:
        from django.core.management import call_command

        cluster = start_cluster(sql_port)
        began = time.monotonic()
        cluster.start()
        print(
            f"Galera cluster of {NODES} Synced in {time.monotonic() - began:.0f} s ({cluster.root})",
            flush=True,
        )

        def env_of(k: int) -> dict:
            return {
                **env,
                "DATABASE_URL": cluster.members[k - 1].url(),
                "NODE_NAME": f"bench{k}",
                "SMARTSWITCH_VAR_DIR": str(workdir / f"var{k}"),
            }

        call_command("migrate", verbosity=0)
        world = single.build_world({"sip": sip_ports[0], "uas": uas_port})
        add_nodes(sip_ports)
        print("migrated and built on member 1", flush=True)
        log_config = workdir / "uvicorn-logging.json"
        log_config.write_text(json.dumps(UVICORN_LOGGING))
        roots, logs = {}, {}
        uas = processes.start(
            "uas",
            [sipp, "-sf", str(single.SCENARIOS / "uas_answer.xml"), "-i", LOOPBACK, "-p", str(uas_port),
             "-mp", str(single.free_port()), "-aa", "-nostdin", "-buff_size", "4194304"],
            workdir / "uas.log", cwd=workdir,
        )  # fmt: skip
        roots["uas"] = uas.pid
        for k in range(1, NODES + 1):
            cc_url = f"http://{LOOPBACK}:{cc_ports[k - 1]}/call-control/v1"
            logs[f"uvicorn{k}"] = workdir / f"uvicorn{k}.log"
            uvicorn = processes.start(
                f"uvicorn{k}",
                [sys.executable, "-m", "uvicorn", "smartswitch.asgi:application", "--host", LOOPBACK,
                 "--port", str(cc_ports[k - 1]), "--workers", str(args.web_workers), "--lifespan", "on",
                 "--log-level", "warning", "--no-access-log", "--log-config", str(log_config)],
                logs[f"uvicorn{k}"], env=env_of(k), cwd=ROOT,
                preexec_fn=single.deployed_priority("smartswitch-callcontrol"),
            )  # fmt: skip
            roots[f"uvicorn{k}"] = uvicorn.pid
            logs[f"worker{k}"] = workdir / f"worker{k}.log"
            worker = processes.start(
                f"worker{k}",
                [sys.executable, __file__, "--worker"],
                logs[f"worker{k}"],
                env=env_of(k),
                cwd=ROOT,
                preexec_fn=single.deployed_priority("smartswitch-worker"),
            )
            roots[f"worker{k}"] = worker.pid
            cfg = workdir / f"opensips{k}.cfg"
            cfg.write_text(
                render_node_cfg(
                    f"bench{k}", modules=modules, cc_url=cc_url, db_url=cluster.members[k - 1].url()
                )
            )
            run_dir = workdir / f"opensips{k}"
            run_dir.mkdir()
            log = workdir / f"opensips{k}.log"
            opensips = processes.start(
                f"opensips{k}",
                [str(binary), "-F", "-f", str(cfg), "-m", str(args.shm), "-M", "32", "-w", str(run_dir)],
                log,
            )
            roots[f"opensips{k}"] = opensips.pid
        for k in range(1, NODES + 1):
            cc_url = f"http://{LOOPBACK}:{cc_ports[k - 1]}/call-control/v1"
            single.wait_ready(
                lambda url=cc_url: single.answers_http(f"{url}/authorize"),
                processes.running[f"uvicorn{k}"],
                logs[f"uvicorn{k}"],
                f"call control of bench{k}",
                timeout=120,
            )
            address = management_address(k)
            single.wait_ready(
                lambda address=address: mi_answers(address, mi_port),
                processes.running[f"opensips{k}"],
                workdir / f"opensips{k}.log",
                f"OpenSIPS of bench{k}",
            )
        print("3 OpenSIPS, 3 call controls, 3 billing workers and the supplier are up", flush=True)
        ctx = {
            "cluster": cluster,
            "env_of": env_of,
            "logs": logs,
            "mi_port": mi_port,
            "roots": roots,
            "sip_ports": sip_ports,
            "sipp": sipp,
            "workdir": workdir,
            "world": world,
        }
        for number, rate in enumerate(args.rates, start=1):
            for name, process in processes.running.items():
                if process.poll() is not None:
                    raise SystemExit(f"{name} exited with {process.returncode}: see {workdir}")
            rows.append(run_step(args, number, rate, ctx))
        print_table(rows)
        if not all(c.get("ok") for r in rows for c in r["checks"].values()):
            print("\nA check failed: see the steps above.", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        if rows:
            print_table(rows)
    finally:
        for customer in list(single.CUSTOMERS):
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                customer.terminate()
                os.wait4(customer.pid, 0)
        processes.stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if cluster is not None:
            cluster.stop()
        if args.keep:
            print(f"kept {workdir} and {cluster.root if cluster else ''}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print("stopped everything, removed the cluster's and the run's folders", flush=True)


def mi_answers(address: str, port: int) -> bool:
    from engines.opensips.mi import MIClient

    try:
        MIClient(f"http://{address}:{port}/mi", timeout=5).execute("version")
    except Exception:
        return False
    return True


if __name__ == "__main__":
    main()
