"""A load test of the whole call path: SIPp customer -> OpenSIPS -> call control -> SIPp supplier,
then the CDRs imported and rated, and the money checked.

Builds a database of its own (default mysql://root@127.0.0.1:3306/smartswitch_bench_path,
dropped at the end unless --keep): one node "bench1" on 127.0.0.1, one prepaid customer
(source address 127.0.0.10, a large balance) with a sell list for 49 (Germany), one supplier
with a buy list and a gateway on 127.0.0.1 (SIPp uas), a default routing plan sending 49
to it; OpenSIPS's tables synced (apps.opensips.provisioning), the price indexes built.
Then it starts, all on 127.0.0.1:

- OpenSIPS (OPENSIPS_BIN, else `opensips` on PATH: the product's detection in
  engines.opensips.install_layout, as tests/opensips/live.py does) on the opensips.cfg the product
  renders (apps.opensips.config.render, what `render_node_config` writes);
- call control: `uvicorn smartswitch.asgi:application --lifespan on` (--web-workers, 1 as
  in deploy/systemd/smartswitch-callcontrol.service), at that unit's CPU priority (Nice=);
- the billing worker: a process of this script running `apps.billing.tasks.billing_loop`
  back to back (the function django-q2's qcluster runs every minute; without qcluster's
  scheduler, so it runs from the first second), concurrently with the calls, at the Nice= of
  deploy/systemd/smartswitch-worker.service;
- the supplier: SIPp with bench/scenarios/uas_answer.xml (200 at once without 180,
  echoing Record-Route: see /work/shared/ENGINES.md); both SIPp answer the dialogs' OPTIONS
  pings (-aa), so calls held past OPENSIPS_PING_INTERVAL are not ended as dead parties;

and, for each --rates step, the customer: SIPp with bench/scenarios/uac_call.xml (ACK and
BYE along the recorded route) at that many calls/s for --duration seconds, each held
--hold seconds. After SIPp ends it waits (bounded) until the billing loop has caught up (no
`acc`/`missed_calls` row left, no unrated CDR) and OpenSIPS holds no dialog (or 10 more
seconds have passed: dialogs of calls SIPp gave up on are reported, not waited out), and
reports:

- completed %: SIPp's successful calls / calls offered;
- set-up time p50/p99/max: SIPp's response time INVITE -> 200 per call (-trace_rtt);
- CPU seconds per process over the step (start of SIPp to caught up), from /proc/<pid>/stat
  (the process trees of opensips, uvicorn, the worker and SIPp; every mariadbd on the
  machine: other users of the same server are counted too);
- MariaDB's CPU by client over the same span, in ms per call offered (the threads that serve
  the connections of call control, the worker, OpenSIPS and others, and the server's own
  threads; when the server is this machine's only mariadbd: db_threads);
- MariaDB's work per call offered over the same span (SHOW GLOBAL STATUS): statements sent
  (a CALL once) and executed (with the procedures' own), each kind of statement, rows
  read, written, updated and deleted, and InnoDB's fsyncs;
- the money: every answered call is one CDR, rated, charged once on each side (one ledger
  row on the customer's and one on the supplier's account, equal to the CDR's sell and buy
  costs), unanswered CDRs charged nothing, no reservation left open (all of SIPp's calls
  have ended) and the accounts' reserved money 0, OpenSIPS holding no dialog, and
  `manage.py check_ledger` clean. When reservations are open it also counts those without
  a live dialog (MI dlg_list), runs the product's sweep (apps.billing.services.reconcile.
  release_without_dialog, its clock moved past its two-minute margin) and counts again.

--baseline runs the same steps on the same rendered cfg with call control replaced by a
fixed relay to the supplier, and neither uvicorn nor the worker running: in the rendered
text the main route's single `route(authorize);` line is replaced by `route(bench_relay);`
and a route[bench_relay] block is appended that does what route[cc_answer] does after a
"route" answer (create_dialog("B"), $DLG_timeout, do_accounting("db", "cdr|missed|failed"),
route(acc_common) and the supplier's acc columns) and relays to the supplier's gateway. The
script stops if that line is not found exactly once (the template changed). Its money
check is reduced to: one `acc` row per answered call, no dialog left.

    .venv/bin/python bench/call_path.py --rates 50,100,200,300 --duration 20
    .venv/bin/python bench/call_path.py --baseline --rates 50,100,200,300,500,800

Skips (exit 0, saying why) when OpenSIPS or SIPp is not found. Every process it starts is
stopped on exit, on Ctrl-C and on errors. Nothing here changes product code.
"""

import argparse
import contextlib
import cProfile
import csv
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402 - after the repository is on sys.path
    create_database,
    describe_machine,
    describe_server,
    drop_database,
    integers,
    percentile,
)

DEFAULT_URL = "mysql://root@127.0.0.1:3306/smartswitch_bench_path"
NODE = "bench1"
LOOPBACK = "127.0.0.1"
CUSTOMER_IP = "127.0.0.10"
CALLEE = "4930123456"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TICK = os.sysconf("SC_CLK_TCK")
SELL_PRICE = Decimal("0.0600")  # per minute, billed per second
BUY_PRICE = Decimal("0.0300")
RESELLER_PRICE = Decimal("0.0450")  # --reseller: what the operator charges the reseller
BUNDLE_MINUTES = 1_000_000  # --bundle: more than any run calls
BALANCE = Decimal("100000")
CATCH_UP_SECONDS = 240  # the longest wait for the billing loop after a step
# Once everything is imported and rated, how long dialogs left in OpenSIPS are waited for
# (SIPp's calls have all ended by then: a dialog still there is reported, not waited out).
DIALOG_GRACE = 10
RELAY_ANCHOR = "\troute(authorize);\n"
CUSTOMERS: list[subprocess.Popen] = []  # the step's SIPp customer while it runs, for the cleanup


# --- finding the engines ----------------------------------------------------------------------


def find_engines() -> tuple[Path, str, str]:
    """(opensips binary, its modules directory, sipp); exits 0 saying why when one is missing."""
    from engines.opensips.install_layout import ModulesNotFound, find_binary, modules_dir

    binary = find_binary(os.environ.get("OPENSIPS_BIN", ""))
    if binary is None or not binary.is_file():
        skip(
            "no OpenSIPS: put `opensips` on PATH or set OPENSIPS_BIN (and OPENSIPS_MODULES_DIR "
            "where its modules are not found from it: engines.opensips.install_layout)."
        )
    try:
        modules = modules_dir(os.environ.get("OPENSIPS_MODULES_DIR", ""), binary=str(binary))
    except ModulesNotFound as error:
        skip(str(error))
    sipp = shutil.which("sipp")
    if sipp is None:
        skip("no SIPp: install Debian's sip-tester package (binary `sipp`).")
    return binary, modules, sipp


def skip(reason: str) -> None:
    print(f"call_path: skipped: {reason}", flush=True)
    raise SystemExit(0)


def free_port() -> int:
    """A port free on 127.0.0.1 for UDP and TCP alike (OpenSIPS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((LOOPBACK, 0))
            port = first.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1")


# --- the world --------------------------------------------------------------------------------


def configure(url: str, workdir: Path, mi_port: int) -> dict:
    """Settings of this process and of the children (uvicorn, the worker); returns their env."""
    env = {
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "NODE_NAME": NODE,
        "SMARTSWITCH_VAR_DIR": str(workdir / "var"),
        "PREFIX_INDEX_DIR": str(workdir / "prefix-index"),
        "OPENSIPS_MI_URL": f"http://{{address}}:{mi_port}/mi",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    import django

    django.setup()
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def build_world(
    ports: dict[str, int],
    *,
    fraud: bool = False,
    reseller: bool = False,
    bundle: bool = False,
    bundle_only: bool = False,
) -> dict:
    """Node, customer, supplier, prices, routing; OpenSIPS's tables; the price indexes.

    With `fraud`, what issue 16 adds to a call's path, set so that it never refuses: daily
    and monthly spend limits on the customer's account (its calls take the reservation's
    long way and the rater moves its spend counters) and a repeated-number controller of 30
    calls a minute (one count per call; each call goes to a number of its own).

    With `reseller`, the customer is a reseller's, and the reseller has an account with the
    operator (postpaid, credit BALANCE) on an operator's list at RESELLER_PRICE: each call is
    charged on three sides, and the reseller's credit is read by every authorization.

    With `bundle`, the customer has a bundle of BUNDLE_MINUTES to Germany: its money pays for
    every call's maximum duration, so calls take the short way as without a bundle, and the
    rater takes them off the bundle (under its period's row lock) instead of charging money.
    With `bundle_only` it has no money: every call takes the long way and holds its seconds
    of the bundle under that row's lock (docs/BUNDLES.md).
    """
    from django.db import transaction
    from django.utils import timezone

    from apps.billing.services.ledger import post_payment
    from apps.nodes import services as node_services
    from apps.nodes.models import ClusterSettings
    from apps.opensips import provisioning
    from apps.peers import services as peer_services
    from apps.peers.models import Peer
    from apps.rates import services as rate_services
    from apps.rates.lookup import rebuild_index
    from apps.rates.models import Rate
    from apps.routing.models import Method, Route, RoutingPlan, RoutingRule
    from apps.tenancy.scope import Scope

    system = Scope.system()

    def price_list(name: str, purpose: str, price: Decimal, owner=None):
        table = rate_services.create_rate_table(
            actor=system, name=name, purpose=purpose, currency="USD", reseller_id=owner.pk if owner else None
        )
        rate = Rate(
            prefix="49",
            destination="Germany",
            price=price,
            connection_fee=Decimal("0"),
            min_seconds=1,
            increment_seconds=1,
            free_seconds=0,
            effective_from=timezone.now() - timedelta(days=1),
        )
        rate_services.add_rates(table, [rate], actor=system)
        return table

    node = node_services.create_node(
        actor=system, name=NODE, management_address=LOOPBACK, sip_address=LOOPBACK, sip_port=ports["sip"]
    )
    owner = reseller_account = None
    tables = []
    if reseller:
        from apps.billing.services.ledger import open_reseller_account
        from apps.tenancy import services as tenancy_services

        owner = tenancy_services.create_reseller(actor=system, name="Bench reseller", currency="USD")
        wholesale = price_list("Bench reseller cost", "sell", RESELLER_PRICE)
        reseller_account = open_reseller_account(
            owner, actor=system, rate_table_id=wholesale.pk, credit_limit=BALANCE
        ).pk
        tables.append(wholesale)
    sell = price_list("Bench retail", "sell", SELL_PRICE, owner)
    buy = price_list("Bench carrier buy", "buy", BUY_PRICE)
    customer = peer_services.create_peer(
        actor=system,
        name="Bench customer",
        role=Peer.Role.CUSTOMER,
        sell_rate_table_id=sell.pk,
        reseller_id=owner.pk if owner else None,
    )
    peer_services.add_endpoint(customer, actor=system, ip=CUSTOMER_IP)
    if not bundle_only:
        post_payment(customer.account, actor=system, amount=BALANCE, reference="bench-topup")
    if bundle or bundle_only:
        from apps.bundles.services import catalogue

        offer = catalogue.create_bundle(
            actor=system,
            name="Bench Germany",
            kind="minutes",
            minutes=BUNDLE_MINUTES,
            prefixes="49",
            reseller=owner,
        )
        catalogue.subscribe(
            customer.account, offer, actor=system, starts_on=timezone.localdate().replace(day=1)
        )
    if fraud:
        from apps.billing.models import Account
        from apps.fraud.models import Action, Controller, Kind, Metric

        Account.objects.filter(pk=customer.account.pk).update(
            daily_spend_limit=BALANCE, monthly_spend_limit=BALANCE
        )
        Controller.objects.create(
            name="Bench repeated numbers",
            kind=Kind.REPEATED_NUMBER,
            metric=Metric.CALLEE,
            min_count=30,
            window_minutes=1,
            action=Action.BLOCK,
        )
    supplier = peer_services.create_peer(
        actor=system, name="Bench carrier", role=Peer.Role.SUPPLIER, buy_rate_table_id=buy.pk
    )
    gateway = peer_services.add_gateway(supplier, actor=system, name="main", host=LOOPBACK, port=ports["uas"])
    plan = RoutingPlan.objects.create(name="Bench")
    rule = RoutingRule.objects.create(plan=plan, prefix="49", method=Method.PRIORITY)
    Route.objects.create(rule=rule, supplier=supplier, priority=1)
    ClusterSettings.load()
    ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).update(
        bind_address=LOOPBACK, default_routing_plan=plan
    )
    with transaction.atomic():
        provisioning.sync_tables()
    for table in (sell, buy, *tables):
        rebuild_index(table.pk)
    return {
        "node": node,
        "customer": customer,
        "supplier": supplier,
        "gateway": gateway,
        "customer_account": customer.account.pk,
        "supplier_account": supplier.account.pk,
        "reseller_account": reseller_account,
    }


# --- the cfg ----------------------------------------------------------------------------------


def render_cfg(world: dict, *, modules: str, cc_url: str, mi_port: int, baseline: bool, uas_port: int) -> str:
    """The node's opensips.cfg as `render_node_config` writes it; patched for --baseline."""
    from django.test import override_settings

    from apps.nodes.models import ClusterSettings, Node
    from apps.opensips.config import render

    with override_settings(
        CALL_CONTROL_URL=cc_url,
        OPENSIPS_MODULES_DIR=modules,
        OPENSIPS_MI_URL=f"http://{{address}}:{mi_port}/mi",
    ):
        text = render(Node.objects.get(name=NODE), ClusterSettings.load())["opensips/opensips.cfg"]
    if not baseline:
        return text
    if text.count(RELAY_ANCHOR) != 1:
        raise SystemExit(
            f"--baseline: the rendered cfg holds {RELAY_ANCHOR.strip()!r} {text.count(RELAY_ANCHOR)} times,"
            " not once: deploy/opensips/opensips.cfg changed; adapt relay_route() in bench/call_path.py."
        )
    return text.replace(RELAY_ANCHOR, "\troute(bench_relay);\n") + relay_route(world, uas_port)


def relay_route(world: dict, uas_port: int) -> str:
    """What route[cc_answer] does after a "route" answer, with a fixed route and no call control."""
    return f"""

# --- bench/call_path.py --baseline: call control replaced by a fixed relay to the supplier.
route[bench_relay] {{
	create_dialog("B");
	$dlg_val(caller_contact) = $(ct{{nameaddr.uri}});
	$dlg_val(max_duration) = "3600";
	$DLG_timeout = 3600;
	set_dlg_profile("peer_calls", "$avp(peer_id)");
	do_accounting("db", "cdr|missed|failed");
	route(acc_common);
	$acc_extra(destination) = "Germany";
	$acc_extra(supplier_id) = "{world["supplier"].pk}";
	$acc_extra(gateway_id) = "{world["gateway"].pk}";
	$ru = "sip:" + $rU + "@{LOOPBACK}:{uas_port}";
	t_on_reply("answered");
	if (!t_relay())
		send_reply(500, "Internal Error");
}}
"""


# --- processes --------------------------------------------------------------------------------


def deployed_priority(unit: str):
    """A preexec_fn giving a child the Nice= of its systemd unit in deploy/systemd, as deployed."""
    text = (ROOT / "deploy" / "systemd" / f"{unit}.service").read_text()
    nice = int(re.search(r"^Nice=(-?\d+)$", text, re.MULTILINE)[1])
    return lambda: os.nice(nice)


class Processes:
    """The long-lived children, stopped in reverse order however the script ends."""

    def __init__(self) -> None:
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], log: Path, **kwargs) -> subprocess.Popen:
        with log.open("w") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs
            )
        self.running[name] = process
        return process

    def stop_all(self) -> None:
        for name, process in reversed(list(self.running.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            self.running.pop(name)


def wait_ready(check, process: subprocess.Popen, log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready after {timeout} s:\n{log.read_text()[-4000:]}")


def answers_http(url: str) -> bool:
    try:
        request = urllib.request.Request(url, data=b"{}", method="POST")  # our own http:// URL
        urllib.request.urlopen(request, timeout=1)
    except urllib.error.HTTPError:
        return True  # 400/401: up, refusing an empty request
    except OSError:
        return False
    return True


def mi_client(port: int):
    from engines.opensips.mi import MIClient

    return MIClient(f"http://{LOOPBACK}:{port}/mi", timeout=5)


def answers_mi(port: int) -> bool:
    try:
        mi_client(port).execute("version")
    except Exception:
        return False
    return True


def active_dialogs(port: int) -> int:
    return int(mi_client(port).statistics(["dialog:"]).get("dialog:active_dialogs", -1))


# --- CPU --------------------------------------------------------------------------------------


SERVERS = ("mariadbd", "mysqld")


def _stat(path: str) -> tuple[int, str, float]:
    """(parent pid, command, CPU seconds used) of a process or thread: its /proc/…/stat."""
    text = Path(path, "stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (
        int(fields[1]),
        text[text.index("(") + 1 : text.rindex(")")],
        (int(fields[11]) + int(fields[12])) / TICK,
    )


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command, CPU seconds used) of every process in /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                table[int(entry.name)] = _stat(entry.path)
    return table


def _trees(roots: dict[str, int], table: dict) -> dict[str, set[int]]:
    """The pids of each named process tree."""
    trees = {}
    for label, root in roots.items():
        tree, grew = {root}, True
        while grew:
            children = {pid for pid, (parent, _n, _c) in table.items() if parent in tree} - tree
            tree |= children
            grew = bool(children)
        trees[label] = tree
    return trees


def cpu_sample(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree and of every mariadbd on the machine."""
    table = _proc_table()
    sample = {
        label: sum(table[pid][2] for pid in tree if pid in table)
        for label, tree in _trees(roots, table).items()
    }
    sample["mariadbd"] = sum(cpu for _p, name, cpu in table.values() if name in SERVERS)
    return sample


def db_threads(roots: dict[str, int]) -> dict[int, tuple[str, float]]:
    """MariaDB's threads now, when the server is this machine's only mariadbd: thread id ->
    (whose connection it serves: a process tree of `roots`, "other", or "" for the server's
    own threads; CPU seconds so far).

    MariaDB serves each connection with a thread of its own, which PROCESSLIST names (TID)
    with the client's address; the client's port leads to its socket (/proc/net/tcp) and the
    socket to the process holding it. Threads are reused by later connections: compare two
    samples thread by thread, and label them by the later one.
    """
    from django.db import connection

    table = _proc_table()
    servers = [pid for pid, (_p, name, _c) in table.items() if name in SERVERS]
    if len(servers) != 1 or connection.vendor != "mysql":
        return {}  # not this machine's one server: whose threads would be whose is not known
    server = servers[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT TID, HOST FROM information_schema.PROCESSLIST WHERE HOST LIKE '%:%'")
        ports = {int(host.rsplit(":", 1)[1]): tid for tid, host in cursor.fetchall()}
    inodes = {}  # socket inode -> the serving thread
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if port in ports:
            inodes[f"socket:[{fields[9]}]"] = ports[port]
    owner = {}
    for label, tree in _trees(roots, table).items():
        for pid in tree:
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if (tid := inodes.get(os.readlink(fd.path))) is not None:
                            owner[tid] = label
    threads = {}
    for entry in os.scandir(f"/proc/{server}/task"):
        with contextlib.suppress(OSError):
            tid = int(entry.name)
            label = owner.get(tid, "other" if tid in ports.values() else "")
            threads[tid] = (label, _stat(entry.path)[2])
    return threads


def db_cpu_by_client(before: dict, after: dict, calls: int) -> str:
    """MariaDB's CPU between two db_threads samples, by client, in ms per call offered."""
    if not after or not calls:
        return "not measured"
    spent: dict[str, float] = defaultdict(float)
    for tid, (label, cpu) in after.items():
        spent[label or "its own threads"] += cpu - before.get(tid, ("", 0.0))[1]
    return ", ".join(
        f"{label} {1000 * cpu / calls:.2f}" for label, cpu in sorted(spent.items(), key=lambda i: -i[1])
    )


# What MariaDB did per call: statements sent (a CALL counted once) and executed (with the
# procedures' own), each kind of statement (Com_*: a procedure's statements counted by their
# kind, a prepared statement's as stmt_execute), rows read, written (temporary tables' too),
# updated and deleted, and InnoDB's fsyncs, from SHOW GLOBAL STATUS. Every client of the
# server is counted, as its CPU is.
DB_COUNTERS = {
    "Questions": "statements",
    "Queries": "with procedures'",
    "Rows_read": "rows read",
    "Handler_write": "rows written",
    "Handler_update": "updated",
    "Handler_delete": "deleted",
    "Innodb_data_fsyncs": "fsyncs",
}


def db_sample() -> dict[str, int]:
    from django.db import connection

    if connection.vendor != "mysql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS")
        return {
            name: int(value)
            for name, value in cursor.fetchall()
            if name in DB_COUNTERS or (name.startswith("Com_") and value.isdigit())
        }


def db_per_call(before: dict[str, int], after: dict[str, int], calls: int) -> str:
    if not before or not calls:
        return "not counted"
    per_call = {name: (after[name] - before.get(name, 0)) / calls for name in after}
    kinds = sorted(
        ((name.removeprefix("Com_"), count) for name, count in per_call.items() if name.startswith("Com_")),
        key=lambda item: -item[1],
    )
    return ", ".join(
        [f"{label} {per_call[name]:.2f}" for name, label in DB_COUNTERS.items()]
        + [f"{kind} {count:.2f}" for kind, count in kinds if count >= 0.01]
    )


# --- the worker (a child process) -------------------------------------------------------------


def run_worker(profile: str | None = None) -> None:
    """The billing loop back to back until SIGTERM, as the django-q2 worker runs it every minute;
    under cProfile, its statistics written to `profile` at the end, when given."""
    from apps.billing.tasks import billing_loop

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    while not stop:
        billing_loop(seconds=5.0)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)


# --- one step ---------------------------------------------------------------------------------


def run_customer(args, sipp: str, rate: int, step_dir: Path, prefix: str, sip_port: int) -> dict:
    """SIPp at `rate` calls/s for --duration s; returns its counts, set-up times and rusage."""
    step_dir.mkdir(parents=True)
    scenario = (SCENARIOS / "uac_call.xml").read_text()
    if args.fraud:
        # Each call to a number of its own (the repeated-number controller counts them).
        scenario = scenario.replace("sip:[service]@", "sip:[service][call_number]@")
    (step_dir / "uac_call.xml").write_text(scenario)
    calls = rate * args.duration
    limit = rate * (args.hold + 10) + 100  # never the bound: SIPp would delay calls silently
    bound = args.duration + args.hold + 60
    command = [
        "timeout", "-k", "5", str(bound + 10), sipp, f"{LOOPBACK}:{sip_port}",
        "-sf", "uac_call.xml", "-i", CUSTOMER_IP, "-p", str(free_port()), "-mp", str(free_port()),
        "-s", CALLEE, "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(limit),
        "-d", str(args.hold * 1000), "-aa", "-nostdin", "-buff_size", "4194304",
        "-recv_timeout", "10000", "-timeout", str(bound), "-cid_str", f"{prefix}%u-%p@bench",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        "-trace_err", "-error_file", "errors.log",
    ]  # fmt: skip
    with (step_dir / "screen.log").open("w") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=step_dir
        )
    CUSTOMERS.append(process)
    # wait4: the rusage of `timeout` includes the SIPp it waited for, gone from /proc by then.
    deadline = time.monotonic() + bound + 30
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            process.kill()
            _pid, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.1)
    CUSTOMERS.remove(process)
    times = []
    for path in glob.glob(str(step_dir / "uac_call_*_rtt.csv")):
        with open(path) as handle:
            for row in handle:
                parts = row.strip().split(";")
                if len(parts) >= 2:
                    with contextlib.suppress(ValueError):
                        times.append(float(parts[1]))
    stats = {}
    stat_path = step_dir / "stat.csv"
    if stat_path.exists():
        with stat_path.open() as handle:
            rows = list(csv.reader(handle, delimiter=";"))
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
    return {
        "errors": sipp_errors(step_dir / "errors.log"),
        "exit": process.returncode,
        "offered": calls,
        "created": int(stats.get("TotalCallCreated", 0) or 0),
        "successful": int(stats.get("SuccessfulCall(C)", 0) or 0),
        "failed": int(stats.get("FailedCall(C)", 0) or 0),
        "setup_ms": times,
        "cpu": usage.ru_utime + usage.ru_stime,
    }


def sipp_errors(path: Path) -> dict[str, int]:
    """Why SIPp's calls failed, from its error file: the unexpected replies and the timeouts."""
    reasons: dict[str, int] = {}
    if not path.exists():
        return reasons
    for line in path.read_text(errors="replace").splitlines():
        if "received 'SIP/2.0 " in line:
            reason = line.split("received 'SIP/2.0 ", 1)[1].split("'", 1)[0].split("\\r")[0].strip()
        elif "retrans" in line.lower() or "timeout" in line.lower():
            reason = (
                line.split(":", 1)[-1].strip()[:80] if "Call-Id" not in line else "timeout/retransmissions"
            )
        else:
            continue
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def wait_caught_up(args, mi_port: int, prefix: str) -> tuple[float, bool]:
    """Poll until nothing is left to import or rate (bounded), and OpenSIPS holds no dialog
    or DIALOG_GRACE seconds have passed."""
    from apps.cdr.models import Cdr
    from apps.opensips.models import Acc, MissedCall

    started = time.monotonic()
    deadline = started + CATCH_UP_SECONDS
    stable, last = 0, None
    while time.monotonic() < deadline:
        dialogs = active_dialogs(mi_port)
        if args.baseline:
            # No importer: the acc rows stay; done when their count holds for two seconds.
            count = Acc.objects.filter(callid__startswith=prefix).count()
            stable = stable + 1 if count == last else 0
            last = count
            if stable >= 4 and (dialogs == 0 or time.monotonic() - started > DIALOG_GRACE):
                return time.monotonic() - started, True
        elif (
            not Acc.objects.exists()
            and not MissedCall.objects.exists()
            and not Cdr.objects.filter(rating_state=Cdr.RatingState.UNRATED).exists()
        ):
            # Twice in a row: a call ending just now writes its acc row a moment later.
            stable += 1
            if stable >= 2 and (dialogs == 0 or time.monotonic() - started > DIALOG_GRACE):
                return time.monotonic() - started, True
        else:
            stable = 0
        time.sleep(0.5)
    return time.monotonic() - started, False


def books(
    prefix: str,
    answered_by_sipp: int,
    customer_account: int,
    supplier_account: int,
    reseller_account: int | None = None,
) -> tuple[dict, bool]:
    """The ledger's side of the money checks, and whether it holds (also bench/call_path_galera.py).

    Every answered call of the step is one CDR, rated, charged once on the customer's and
    once on the supplier's account (and once on the reseller's, with --reseller) for exactly
    its costs; nothing else is charged; and check_ledger is clean.
    """
    from django.core.management import CommandError, call_command
    from django.db.models import Count, Sum

    from apps.billing.models import LedgerEntry
    from apps.cdr.models import Cdr

    cdrs = Cdr.objects.filter(call_id__startswith=prefix)
    answered = cdrs.filter(sip_code=200)
    n_answered = answered.count()
    distinct_calls = answered.values("call_id").distinct().count()
    not_rated = answered.exclude(rating_state=Cdr.RatingState.RATED).count()
    no_cost = answered.filter(sell_cost__isnull=True).count() + answered.filter(buy_cost__isnull=True).count()
    # Calls a bundle covered wholly (--bundle) cost the customer nothing: no charge.
    charged = answered.filter(sell_cost__gt=0).count()
    costs = answered.aggregate(
        sell=Sum("sell_cost"),
        buy=Sum("buy_cost"),
        reseller=Sum("reseller_cost"),
        bundle=Sum("bundle_seconds"),
    )
    from apps.bundles.models import Usage

    bundle_used = Usage.objects.aggregate(s=Sum("used_seconds"))["s"] or 0
    all_covered = Cdr.objects.aggregate(s=Sum("bundle_seconds"))["s"] or 0
    charges = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE, cdr__call_id__startswith=prefix)
    per_side = {
        row["account"]: row
        for row in charges.values("account").annotate(
            n=Count("id"), total=Sum("amount"), cdrs=Count("cdr", distinct=True)
        )
    }
    empty = {"n": 0, "total": Decimal(0), "cdrs": 0}
    customer = per_side.get(customer_account, empty)
    supplier = per_side.get(supplier_account, empty)
    reseller = per_side.get(reseller_account, empty)
    sides = (customer_account, supplier_account, reseller_account)
    elsewhere = sum(row["n"] for account, row in per_side.items() if account not in sides)
    unanswered_charged = charges.exclude(cdr__sip_code=200).count()
    try:
        with open(os.devnull, "w") as quiet:
            call_command("check_ledger", stdout=quiet, stderr=quiet)
        ledger = "clean"
    except CommandError as error:
        ledger = str(error)
    result = {
        "cdrs": cdrs.count(),
        "answered_cdrs": n_answered,
        "answered_sipp": answered_by_sipp,
        "duplicates": n_answered - distinct_calls,
        "not_rated": not_rated,
        "without_cost": no_cost,
        "customer_charges": customer["n"],
        "customer_charged_cdrs": customer["cdrs"],
        "supplier_charges": supplier["n"],
        "supplier_charged_cdrs": supplier["cdrs"],
        "reseller_charges": reseller["n"],
        "charges_elsewhere": elsewhere,
        "sell_matches": -(customer["total"] or 0) == (costs["sell"] or 0),
        "buy_matches": -(supplier["total"] or 0) == (costs["buy"] or 0),
        "reseller_matches": -(reseller["total"] or 0) == (costs["reseller"] or 0),
        "sell_total": costs["sell"],
        "bundle_seconds": costs["bundle"] or 0,
        "bundle_matches": bundle_used == all_covered,
        "unanswered_charged": unanswered_charged,
        "check_ledger": ledger,
    }
    ok = (
        n_answered == answered_by_sipp == distinct_calls
        and not_rated == no_cost == 0
        and customer["n"] == customer["cdrs"] == charged
        and result["bundle_matches"]
        and supplier["n"] == supplier["cdrs"] == n_answered
        and (reseller_account is None or reseller["n"] == reseller["cdrs"] == n_answered)
        and elsewhere == unanswered_charged == 0
        and result["reseller_matches"]
        and result["sell_matches"]
        and result["buy_matches"]
        and ledger == "clean"
    )
    return result, ok


def money_checks(world: dict, prefix: str, answered_by_sipp: int, mi_port: int) -> dict:
    """The step's calls in the books: see the module's docstring."""
    from django.db.models import Count, Sum
    from django.utils import timezone

    from apps.billing.models import Account, Reservation
    from apps.cdr.models import Cdr

    result, books_ok = books(
        prefix,
        answered_by_sipp,
        world["customer_account"],
        world["supplier_account"],
        world["reseller_account"],
    )
    open_reservations = Reservation.objects.active().count()
    # dlg_list also shows ended dialogs for a moment: only the active ones hold a call.
    live = {dialog.call_id for dialog in mi_client(mi_port).dialogs(context=False) if dialog.active}
    # Answered calls SIPp gave up on without a BYE stay up until their maximum duration.
    still_up = sum(call_id.startswith(prefix) for call_id in live)
    open_ids = list(Reservation.objects.active().values_list("call_id", flat=True))
    without_dialog = sum(call_id not in live for call_id in open_ids)
    step_reservations = Reservation.objects.filter(call_id__startswith=prefix)
    rated_reservations = step_reservations.filter(outcome=Reservation.Outcome.RATED).count()
    reserved = Account.objects.aggregate(total=Sum("reserved"))["total"] or Decimal(0)
    swept, left_without_dialog = 0, without_dialog
    if without_dialog:
        # The product's safety net: the sweep each node's worker runs every five minutes,
        # with its clock moved past its two-minute margin so that it looks at these now.
        from apps.billing.services.reconcile import MARGIN, release_without_dialog
        from apps.nodes.models import Node

        later = timezone.now() + MARGIN + timedelta(seconds=1)
        swept = release_without_dialog(Node.objects.get(name=NODE), mi_client(mi_port), now=later)
        live = {dialog.call_id for dialog in mi_client(mi_port).dialogs(context=False) if dialog.active}
        still = Reservation.objects.active().values_list("call_id", flat=True)
        left_without_dialog = sum(call_id not in live for call_id in still)
    cdrs = Cdr.objects.filter(call_id__startswith=prefix)
    result["unanswered_cdrs_by_code"] = dict(
        cdrs.exclude(sip_code=200)
        .values_list("sip_code")
        .annotate(n=Count("id"))
        .values_list("sip_code", "n")
    )
    result["reservation_outcomes"] = dict(
        step_reservations.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n")
    )
    result.update(
        {
            "reservations": step_reservations.count(),
            "reservations_rated": rated_reservations,
            "open_reservations": open_reservations,
            "open_without_dialog": without_dialog,
            "released_by_sweep": swept,
            "open_without_dialog_after_sweep": left_without_dialog,
            "reserved": reserved,
            "dialogs": active_dialogs(mi_port),
            "step_dialogs_still_up": still_up,
        }
    )
    result["ok"] = books_ok and open_reservations == 0 and reserved == 0 and result["dialogs"] == 0
    account = Account.objects.get(pk=world["customer_account"])
    if account.monthly_spend_limit is not None:
        # --fraud: the month's spend counter is every call charge of the run (one month).
        from apps.billing.models import LedgerEntry

        charged = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.CHARGE).aggregate(
            total=Sum("amount")
        )["total"] or Decimal(0)
        result["spend_counter_matches"] = account.spent_month == -charged
        result["ok"] = result["ok"] and result["spend_counter_matches"]
    return result


def baseline_checks(prefix: str, answered_by_sipp: int, mi_port: int) -> dict:
    from apps.opensips.models import Acc

    rows = Acc.objects.filter(callid__startswith=prefix, sip_code="200")
    n = rows.count()
    distinct = rows.values("callid").distinct().count()
    result = {"acc_answered": n, "answered_sipp": answered_by_sipp, "duplicates": n - distinct}
    result["dialogs"] = active_dialogs(mi_port)
    result["ok"] = n == distinct == answered_by_sipp and result["dialogs"] == 0
    return result


def run_step(
    args, number: int, rate: int, sipp: str, roots: dict[str, int], world: dict, ports: dict, workdir: Path
) -> dict:
    prefix = f"s{number}r{rate}-"
    load = os.getloadavg()[0]
    before, db_before, threads_before = cpu_sample(roots), db_sample(), db_threads(roots)
    started = time.monotonic()
    customer = run_customer(args, sipp, rate, workdir / f"step{number}-{rate}", prefix, ports["sip"])
    calls_took = time.monotonic() - started
    catch_up, caught = wait_caught_up(args, ports["mi"], prefix)
    after, db_after, threads_after = cpu_sample(roots), db_sample(), db_threads(roots)
    wall = time.monotonic() - started
    cpu = {label: after[label] - before[label] for label in after}
    cpu["sipp"] = cpu.pop("uas", 0.0) + customer["cpu"]
    answered = len(customer["setup_ms"])
    checks = (
        baseline_checks(prefix, answered, ports["mi"])
        if args.baseline
        else money_checks(world, prefix, answered, ports["mi"])
    )
    row = {
        "rate": rate,
        "offered": customer["offered"],
        "created": customer["created"],
        "successful": customer["successful"],
        "failed": customer["failed"],
        "answered": answered,
        "completed": 100 * customer["successful"] / customer["offered"],
        "p50": percentile(customer["setup_ms"], 0.50),
        "p99": percentile(customer["setup_ms"], 0.99),
        "max": max(customer["setup_ms"], default=float("nan")),
        "sipp_exit": customer["exit"],
        "calls_took": calls_took,
        "catch_up": catch_up,
        "caught_up": caught,
        "wall": wall,
        "cpu": cpu,
        "load": (load, os.getloadavg()[0]),
        "errors": customer["errors"],
        "checks": checks,
    }
    print(
        f"step {number}: {rate} calls/s x {args.duration} s: offered {row['offered']:,},"
        f" created {row['created']:,}, successful {row['successful']:,} ({row['completed']:.1f} %),"
        f" failed {row['failed']:,},"
        f" answered {answered:,}; set-up p50 {row['p50']:.1f} ms p99 {row['p99']:.1f} ms"
        f" max {row['max']:.0f} ms;"
        f" SIPp exit {row['sipp_exit']} after {calls_took:.1f} s;"
        f" {'caught up' if caught else 'NOT caught up'} {catch_up:.1f} s later;"
        f" CPU s {', '.join(f'{k} {v:.1f}' for k, v in cpu.items())} over {wall:.1f} s;"
        f" load {row['load'][0]:.2f} -> {row['load'][1]:.2f}",
        flush=True,
    )
    print(f"  MariaDB per call offered: {db_per_call(db_before, db_after, row['offered'])}", flush=True)
    print(
        "  MariaDB's CPU by client, ms per call offered:",
        db_cpu_by_client(threads_before, threads_after, row["offered"]),
        flush=True,
    )
    print(f"  SIPp's errors: {customer['errors'] or 'none'}", flush=True)
    print(f"  checks: {checks}", flush=True)
    return row


# --- main -------------------------------------------------------------------------------------


def print_table(args, rows: list[dict]) -> None:
    labels = (
        ["opensips", "uvicorn", "worker", "mariadbd", "sipp"]
        if not args.baseline
        else ["opensips", "mariadbd", "sipp"]
    )
    print()
    print(
        "| mode | calls/s | calls | completed | set-up p50 / p99 / max ms | catch-up s | CPU s: "
        + " / ".join(labels)
        + " | load before → after | money checks |"
    )
    print("|---|---:|---:|---:|---|---:|---|---|---|")
    for r in rows:
        c = r["checks"]
        if args.baseline:
            verdict = (
                f"{'OK' if c['ok'] else 'FAILED'}: {c['acc_answered']:,} acc rows"
                f" for {c['answered_sipp']:,} answered"
            )
        elif c["ok"]:
            charged = c["customer_charges"] + c["supplier_charges"]
            verdict = f"OK ({c['answered_cdrs']:,} CDRs rated, {charged:,} charges)"
        else:
            verdict = "FAILED: " + ", ".join(f"{k} {v}" for k, v in c.items() if k != "ok")
        cpu = " / ".join(f"{r['cpu'].get(label, 0):.1f}" for label in labels)
        print(
            f"| {'baseline' if args.baseline else 'call control'} | {r['rate']} | {r['offered']:,} |"
            f" {r['completed']:.1f} % | {r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.0f} |"
            f" {r['catch_up']:.1f}{'' if r['caught_up'] else ' (gave up)'} | {cpu} |"
            f" {r['load'][0]:.1f} → {r['load'][1]:.1f} | {verdict} |"
        )


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rates", type=integers, default=[50, 100, 200, 300], help="calls/s per step")
    parser.add_argument("--duration", type=int, default=20, help="seconds of calls per step")
    parser.add_argument("--hold", type=int, default=3, help="seconds each call is held")
    parser.add_argument("--baseline", action="store_true", help="a fixed relay instead of call control")
    parser.add_argument(
        "--web-workers", type=int, default=1, help="uvicorn --workers (1, as smartswitch-callcontrol)"
    )
    parser.add_argument("--threads", type=int, default=8, help="CALL_CONTROL_THREADS")
    parser.add_argument("--shm", type=int, default=1024, help="OpenSIPS shared memory, MB")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    parser.add_argument(
        "--fraud", action="store_true", help="spend limits and a repeated-number controller that never refuse"
    )
    parser.add_argument(
        "--reseller", action="store_true", help="a reseller's customer, the reseller with an account with us"
    )
    parser.add_argument(
        "--bundle", action="store_true", help="every call covered by a minutes bundle of the customer's"
    )
    parser.add_argument(
        "--bundle-only",
        action="store_true",
        help="as --bundle, the customer without money: calls on the bundle alone",
    )
    parser.add_argument(
        "--profile-worker",
        metavar="FILE",
        help="run the billing loop under cProfile and write its statistics to FILE (pstats)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import django

        django.setup()  # the parent's environment: same database, node, MI and folders
        run_worker(args.profile_worker)
        return

    binary, modules, sipp = find_engines()
    ports = {"sip": free_port(), "uas": free_port(), "mi": free_port(), "cc": free_port()}
    workdir = Path(tempfile.mkdtemp(prefix="smartswitch-bench-path-"))
    env = configure(args.database_url, workdir, ports["mi"])
    env["CALL_CONTROL_THREADS"] = str(args.threads)
    processes = Processes()
    # Ctrl-C and SIGTERM both end up in the finally below.
    signal.signal(signal.SIGTERM, interrupt)
    name = urlparse(args.database_url).path.lstrip("/")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {describe_machine()}", flush=True)
    print(f"OpenSIPS {binary}, modules {modules}; SIPp {sipp}; logs in {workdir}", flush=True)
    print(describe_server(args.database_url), flush=True)
    rows = []
    try:
        from django.core.management import call_command

        create_database(args.database_url)
        call_command("migrate", verbosity=0)
        world = build_world(
            ports, fraud=args.fraud, reseller=args.reseller, bundle=args.bundle, bundle_only=args.bundle_only
        )
        print(f"database {name} created and built", flush=True)
        cc_url = f"http://{LOOPBACK}:{ports['cc']}/call-control/v1"
        roots = {}
        uas = processes.start(
            "uas",
            [sipp, "-sf", str(SCENARIOS / "uas_answer.xml"), "-i", LOOPBACK, "-p", str(ports["uas"]),
             "-mp", str(free_port()), "-aa", "-nostdin", "-buff_size", "4194304"],
            workdir / "uas.log", cwd=workdir,
        )  # fmt: skip
        roots["uas"] = uas.pid
        if not args.baseline:
            log = workdir / "uvicorn.log"
            uvicorn = processes.start(
                "uvicorn",
                [sys.executable, "-m", "uvicorn", "smartswitch.asgi:application", "--host", LOOPBACK,
                 "--port", str(ports["cc"]), "--workers", str(args.web_workers), "--lifespan", "on",
                 "--log-level", "warning", "--no-access-log"],
                log, env=env, cwd=ROOT, preexec_fn=deployed_priority("smartswitch-callcontrol"),
            )  # fmt: skip
            wait_ready(lambda: answers_http(f"{cc_url}/authorize"), uvicorn, log, "call control")
            roots["uvicorn"] = uvicorn.pid
            profile = []
            if args.profile_worker:
                profile = ["--profile-worker", str(Path(args.profile_worker).resolve())]
            worker = processes.start(
                "worker",
                [sys.executable, __file__, "--worker", "--database-url", args.database_url, *profile],
                workdir / "worker.log", env=env, cwd=ROOT, preexec_fn=deployed_priority("smartswitch-worker"),
            )  # fmt: skip
            roots["worker"] = worker.pid
        cfg = workdir / "opensips.cfg"
        cfg.write_text(
            render_cfg(
                world, modules=modules, cc_url=cc_url, mi_port=ports["mi"], baseline=args.baseline,
                uas_port=ports["uas"],
            )
        )  # fmt: skip
        log = workdir / "opensips.log"
        opensips = processes.start(
            "opensips",
            [str(binary), "-F", "-f", str(cfg), "-m", str(args.shm), "-M", "32", "-w", str(workdir)],
            log,
        )
        wait_ready(lambda: answers_mi(ports["mi"]), opensips, log, "OpenSIPS")
        roots["opensips"] = opensips.pid
        for number, rate in enumerate(args.rates, start=1):
            for name_, process in processes.running.items():
                if process.poll() is not None:
                    raise SystemExit(f"{name_} exited with {process.returncode}: see {workdir}")
            rows.append(run_step(args, number, rate, sipp, roots, world, ports, workdir))
        print_table(args, rows)
        if not all(r["checks"]["ok"] for r in rows):
            print("\nA check failed: see the steps above.", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        if rows:
            print_table(args, rows)
    finally:
        for customer in CUSTOMERS:
            # `timeout` passes SIGTERM on to SIPp (and kills it 5 s later if it lingers).
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                customer.terminate()
                os.wait4(customer.pid, 0)
        processes.stop_all()
        if not args.keep:
            drop_database(args.database_url)
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"dropped database {name}", flush=True)


if __name__ == "__main__":
    main()
