"""A running switch for the live tests: two OpenSIPS nodes on the rendered config, call
control under uvicorn and suppliers played by SIPp, all on loopback and the test database.

Customers (each calls from its own loopback address, as SIPp's source):
  Acme 127.0.0.10 (postpaid; SIP account alice@sip.test), Limited 127.0.0.11 (one call at a
  time), Prepaid 127.0.0.12 (0.03 USD at 0.60 USD/min: three seconds), Newcomer 127.0.0.13
  (no endpoint until a test adds it), Wanderer 127.0.0.14 (served by node2 only: calls to
  node1 are redirected there), Onnet 127.0.0.15 (calls our accounts), Other (SIP account
  alice@other.test: the second phone, 127.0.0.21), Bursty 127.0.0.16 (5 calls a second,
  served by node1 only). Nobody is on 127.0.0.99.
On-net calls cost 0.0100/min on Retail. Carrier (a supplier, from 127.0.0.30) delivers our
  DID 442071110000, Acme's, to alice@sip.test: 0.12/min to Carrier, 0.60/min to Acme; and
  442071110001, ringing alice@sip.test and bob@sip.test at once (free).
Nodes: node1 and node2 ask call control under uvicorn; node3 asks one that never answers.
Routing (static priority, setup timeout 1 s): 49 (Germany) -> Alpha; 33 (France) -> Failing
  (always 503), then Bravo; 44 (United Kingdom) -> Failing only; 39 (Italy) -> Mute (never
  answers), then Bravo; 34 (Spain) -> Late (sends its 180 after its 200); 41 (Switzerland)
  -> Stuck (100 Trying, then nothing), then Bravo; 43 (Austria) -> Probe (a bare UDP socket
  the test reads: who sent the INVITE).
node4 (127.0.0.40) listens on every address (0.0.0.0), dedicated-IP mode: its calls must
  leave from 127.0.0.40.
OpenSIPS ends an answer its caller never ACKs after ACK_TIMEOUT seconds.
"""

import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import setup_databases, teardown_databases
from django.utils import timezone

from apps.billing import services as billing
from apps.dids.models import Did, DidTarget
from apps.nodes.models import ClusterSettings, Node
from apps.opensips import dialogs, provisioning
from apps.opensips.config import mysql_url, render
from apps.peers import services as peer_services
from apps.peers.models import Gateway, Peer
from apps.rates import services as rate_services
from apps.rates.models import Rate, RateTable
from apps.routing.models import Method, Route, RoutingPlan, RoutingRule
from apps.tenancy.scope import Scope
from engines.opensips.mi import MIClient
from tests.factories import make_peer, make_rate_table
from tests.opensips.live import modules_dir, require_opensips, require_sipp
from tests.ports import free_port

SYSTEM = Scope.system()
SCENARIOS = Path(__file__).parent / "scenarios"
LOOPBACK = "127.0.0.1"
ACME_IP = "127.0.0.10"
LIMITED_IP = "127.0.0.11"
PREPAID_IP = "127.0.0.12"
NEWCOMER_IP = "127.0.0.13"
WANDERER_IP = "127.0.0.14"
ONNET_IP = "127.0.0.15"
BURSTY_IP = "127.0.0.16"
PHONE_IP = "127.0.0.20"
PHONE2_IP = "127.0.0.21"
CARRIER_IP = "127.0.0.30"
DID = "442071110000"
RING_GROUP_DID = "442071110001"
STRANGER_IP = "127.0.0.99"
BERLIN = "4930123456"
PARIS = "33123456789"
LONDON = "442071234567"
ROME = "39061234567"
MADRID = "34911234567"
ZURICH = "41441234567"
VIENNA = "43151234567"
NODE4_IP = "127.0.0.40"
DESTINATIONS = (
    ("49", "Germany"),
    ("33", "France"),
    ("44", "United Kingdom"),
    ("39", "Italy"),
    ("34", "Spain"),
    ("41", "Switzerland"),
    ("43", "Austria"),
)
ACK_TIMEOUT = 3


@dataclass
class Switch:
    node1_port: int
    node2_port: int
    node3_port: int  # its call control never answers
    node4_port: int  # listens on 0.0.0.0, sends from 127.0.0.40
    node1_mi: str
    node2_mi: str
    node3_mi: str
    phone_port: int
    phone2_port: int
    phone_password: str
    acme: Peer
    limited: Peer
    prepaid: Peer
    newcomer: Peer
    alpha: Peer
    bravo: Peer
    failing: Peer
    mute: Peer
    late: Peer
    onnet: Peer
    bursty: Peer
    other: Peer
    carrier: Peer
    alpha_gateway: Gateway
    probe: socket.socket  # Probe's gateway
    logs: Path
    processes: list = field(default_factory=list)
    # name -> a function that stops that node's OpenSIPS (SIGTERM, as systemd does) and
    # starts it again on the same configuration; returns when its MI answers.
    restarts: dict = field(default_factory=dict)

    def restart(self, name: str) -> None:
        self.restarts[name]()


@dataclass
class SippRun:
    """One SIPp run: its process, the Call-ID of its (single) call and its files."""

    process: subprocess.Popen
    call_id: str
    directory: Path

    def wait(self, timeout: float = 40) -> "SippRun":
        self.process.wait(timeout=timeout)
        return self

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def messages(self) -> str:
        path = self.directory / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def log(self) -> str:
        parts = [self.directory / name for name in ("screen.log", "errors.log")]
        text = "\n".join(path.read_text(errors="replace")[-2000:] for path in parts if path.exists())
        return f"sipp exit {self.returncode}\n{text}\n{self.messages[-3000:]}"


_runs = itertools.count(1)
# Where each SIPp run keeps its files: set by the `switch` fixture.
_sipp_directory: list[Path] = []


NODE3_QUEUE = 3  # requests node3's OpenSIPS keeps waiting for its call control


def sipp(
    port: int,
    *,
    source: str,
    callee: str = "",
    service: str = "",
    role: str = "uac",
    scenario: str = "",
    hold_ms: int = 0,
    local_port: int | None = None,
    background: bool = False,
    calls: int = 1,
    extra: Sequence[str] = (),
) -> SippRun:
    """Run SIPp against 127.0.0.1:`port` from `source` for `calls` calls (one at a time
    unless `extra` sets a rate); wait unless `background`."""
    number = next(_runs)
    directory = _sipp_directory[-1] / f"run{number}"
    directory.mkdir(parents=True)
    prefix = f"live-{secrets.token_hex(6)}-"
    command = [
        "timeout", "-k", "2", "30", require_sipp(), f"{LOOPBACK}:{port}",
        *(["-sf", str(SCENARIOS / scenario)] if scenario else ["-sn", role]),
        "-i", source, "-p", str(local_port or free_port()), "-mp", str(free_port()),
        "-m", str(calls), "-l", str(calls), "-nostdin",
        "-recv_timeout", "12000", "-timeout", "25", "-timeout_error",
        "-cid_str", f"{prefix}%u",
        "-trace_msg", "-message_file", str(directory / "messages.log"),
        "-trace_err", "-error_file", str(directory / "errors.log"),
        *(["-s", service or callee] if (service or callee) else []),
        *(["-d", str(hold_ms)] if hold_ms else []),
        *extra,
    ]  # fmt: skip
    screen = open(directory / "screen.log", "w")  # noqa: SIM115 - the child keeps its own descriptor
    process = subprocess.Popen(  # noqa: S603 - SIPp from PATH, our own arguments
        command, stdin=subprocess.DEVNULL, stdout=screen, stderr=subprocess.STDOUT
    )
    screen.close()
    run = SippRun(process, f"{prefix}1", directory)  # the first call: number 1
    return run if background else run.wait()


# --- the world in the database -----------------------------------------------------------


def _rate(prefix: str, price: str, destination: str) -> Rate:
    return Rate(
        prefix=prefix,
        destination=destination,
        price=Decimal(price),
        connection_fee=Decimal("0"),
        min_seconds=1,
        increment_seconds=1,
        free_seconds=0,
        effective_from=timezone.now() - timedelta(days=1),
    )


def _price_list(name: str, rates: list[Rate], purpose: str = "sell"):
    table = make_rate_table(name, purpose=purpose)
    rate_services.add_rates(table, rates, actor=SYSTEM)
    return table


def _customer(name: str, ip: str | None, table, **kwargs) -> Peer:
    peer = make_peer(name, sell_rate_table_id=table.pk, **kwargs)
    if ip:
        peer_services.add_endpoint(peer, actor=SYSTEM, ip=ip)
    return Peer.objects.get(pk=peer.pk)


def _supplier(name: str, port: int) -> tuple[Peer, Gateway]:
    buy = _price_list(
        f"{name} buy",
        [_rate(prefix, "0.0100", name) for prefix, name in DESTINATIONS],
        purpose="buy",
    )
    peer = make_peer(name, role=Peer.Role.SUPPLIER, buy_rate_table_id=buy.pk)
    gateway = peer_services.add_gateway(peer, actor=SYSTEM, name="main", host=LOOPBACK, port=port)
    return peer, gateway


def build_world(ports: dict[str, int], phone_password: str) -> dict:
    retail = _price_list(
        "Retail",
        [_rate(prefix, "0.0200", name) for prefix, name in DESTINATIONS],
    )
    postpaid = {"account_mode": "postpaid", "credit_limit": Decimal("100")}
    acme = _customer("Acme", ACME_IP, retail, **postpaid)
    limited = _customer("Limited", LIMITED_IP, retail, max_calls=1, **postpaid)
    newcomer = _customer("Newcomer", None, retail, **postpaid)
    prepaid = _customer("Prepaid", PREPAID_IP, _price_list("Per second", [_rate("49", "0.6000", "Germany")]))
    billing.post_payment(prepaid.account, actor=SYSTEM, amount=Decimal("0.03"))
    alice = peer_services.add_sip_account(
        acme, actor=SYSTEM, username="alice", domain="sip.test", password=phone_password
    )
    RateTable.objects.filter(pk=retail.pk).update(on_net_price=Decimal("0.0100"))
    onnet = _customer("Onnet", ONNET_IP, retail, **postpaid)
    other = _customer("Other", None, retail, **postpaid)
    peer_services.add_sip_account(
        other, actor=SYSTEM, username="alice", domain="other.test", password=phone_password
    )
    carrier = make_peer("Carrier", role=Peer.Role.SUPPLIER)
    peer_services.add_gateway(carrier, actor=SYSTEM, name="edge", host=CARRIER_IP, port=5060)
    did = Did.objects.create(
        number=DID,
        supplier=carrier,
        customer=acme,
        buy_per_minute=Decimal("0.1200"),
        sell_per_minute=Decimal("0.6000"),
    )
    DidTarget.objects.create(did=did, sip_account=alice)
    # Acme's second DID rings alice@sip.test and bob@sip.test at once.
    bob = peer_services.add_sip_account(
        acme, actor=SYSTEM, username="bob", domain="sip.test", password=phone_password
    )
    group = Did.objects.create(number=RING_GROUP_DID, supplier=carrier, customer=acme, hunting="all")
    DidTarget.objects.create(did=group, position=1, sip_account=alice)
    DidTarget.objects.create(did=group, position=2, sip_account=bob)

    alpha, alpha_gateway = _supplier("Alpha", ports["alpha"])
    bravo, _ = _supplier("Bravo", ports["bravo"])
    failing, _ = _supplier("Failing", ports["failing"])
    mute, _ = _supplier("Mute", ports["mute"])
    late, _ = _supplier("Late", ports["late"])
    stuck, _ = _supplier("Stuck", ports["stuck"])
    probe, _ = _supplier("Probe", ports["probe"])
    plan = RoutingPlan.objects.create(name="Main")
    routing = {
        "49": [alpha],
        "33": [failing, bravo],
        "44": [failing],
        "39": [mute, bravo],
        "34": [late],
        "41": [stuck, bravo],
        "43": [probe],
    }
    for prefix, suppliers in routing.items():
        rule = RoutingRule.objects.create(plan=plan, prefix=prefix, method=Method.PRIORITY)
        for priority, supplier in enumerate(suppliers, start=1):
            Route.objects.create(rule=rule, supplier=supplier, priority=priority, setup_timeout=1)

    ClusterSettings.load()
    ClusterSettings.objects.filter(pk=ClusterSettings.SINGLETON_ID).update(
        bind_address=LOOPBACK, default_routing_plan=plan, redirect_to_assigned_node=True
    )
    Node.objects.create(
        name="node1", management_address=LOOPBACK, sip_address=LOOPBACK, sip_port=ports["node1"]
    )
    for name in ("node2", "node3"):
        Node.objects.create(
            name=name, management_address=LOOPBACK, sip_address=LOOPBACK, sip_port=ports[name]
        )
    Node.objects.create(
        name="node4", management_address=LOOPBACK, sip_address=NODE4_IP, sip_port=ports["node4"]
    )
    wanderer = _customer("Wanderer", WANDERER_IP, retail, **postpaid)
    peer_services.assign_peer_to_nodes(wanderer, Node.objects.filter(name="node2"), actor=SYSTEM)
    # Credit for 200 calls held at once: its calls are not rated while the test runs.
    bursty = _customer(
        "Bursty", BURSTY_IP, retail, max_cps=5, account_mode="postpaid", credit_limit=Decimal("1000")
    )
    peer_services.assign_peer_to_nodes(bursty, Node.objects.filter(name="node1"), actor=SYSTEM)
    with transaction.atomic():
        # Every table, the version rows too: a transactional test before this one flushed them.
        provisioning.sync_tables()
    return {
        "acme": acme,
        "limited": limited,
        "prepaid": prepaid,
        "newcomer": newcomer,
        "alpha": alpha,
        "bravo": bravo,
        "failing": failing,
        "mute": mute,
        "late": late,
        "onnet": onnet,
        "bursty": bursty,
        "other": other,
        "carrier": carrier,
        "alpha_gateway": alpha_gateway,
    }


# --- the processes ----------------------------------------------------------------------


def _start(command: list[str], log: Path, **kwargs) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(  # noqa: S603 - the binaries the tester named, our own arguments
            command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, **kwargs
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(check, process: subprocess.Popen, log: Path, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} not ready after {timeout} s:\n{log.read_text()[-4000:]}")


def _answers_http(url: str) -> bool:
    try:
        request = urllib.request.Request(url, data=b"{}", method="POST")  # noqa: S310 - our own http:// URL
        urllib.request.urlopen(request, timeout=1)  # noqa: S310
    except urllib.error.HTTPError:
        return True  # 400/401: up and refusing an empty request
    except OSError:
        return False
    return True


def _answers_mi(url: str) -> bool:
    try:
        MIClient(url, timeout=1).execute("version")
    except Exception:
        return False
    return True


def _start_opensips(
    binary: Path, node: Node, directory: Path, mi_port: int, common: dict, cluster=None
) -> subprocess.Popen:
    # Several nodes share 127.0.0.1 here: each sends its capture from a port of its own.
    hep = {"OPENSIPS_HEP_PORT": free_port(), **common}
    with override_settings(OPENSIPS_MI_URL=f"http://{{address}}:{mi_port}/mi", **hep):
        text = render(node, cluster or ClusterSettings.load())["opensips/opensips.cfg"]
    cfg = directory / f"{node.name}.cfg"
    cfg.write_text(text)
    log = directory / f"{node.name}.log"
    process = _start([str(binary), "-F", "-f", str(cfg), "-m", "128", "-M", "16", "-w", str(directory)], log)
    _wait_ready(lambda: _answers_mi(f"http://{LOOPBACK}:{mi_port}/mi"), process, log, f"OpenSIPS {node.name}")
    return process


@pytest.fixture(scope="module", name="switch")
def switch_fixture(django_db_setup, django_db_blocker, tmp_path_factory):
    binary = require_opensips()
    require_sipp()
    if connection.vendor != "mysql":
        pytest.skip(
            "OpenSIPS reads its tables from MariaDB: run with DATABASE_URL=mysql://… "
            f"(the test database is {connection.vendor})."
        )
    directory = tmp_path_factory.mktemp("live")
    _sipp_directory.append(directory / "sipp")
    ports = {
        name: free_port()
        for name in (
            "node1",
            "node2",
            "node3",
            "node4",
            "alpha",
            "bravo",
            "failing",
            "late",
            "stuck",
            "phone",
            "phone2",
        )
    }
    # Mute's gateway: a UDP socket nobody reads, so its calls meet the route's setup timeout.
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind((LOOPBACK, 0))
    ports["mute"] = mute.getsockname()[1]
    # Probe's gateway: a UDP socket the test reads, to see where an INVITE came from.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((LOOPBACK, 0))
    ports["probe"] = probe.getsockname()[1]
    mi_ports = {name: free_port() for name in ("node1", "node2", "node3", "node4")}
    cc_port = free_port()
    password = secrets.token_urlsafe(12) + "7k"  # random, and always letters and digits
    processes: list[subprocess.Popen] = []
    # node3's call control: accepts connections (the kernel's backlog) and never answers.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind((LOOPBACK, 0))
    silent.listen(16)
    with silent, mute, probe, django_db_blocker.unblock():
        # pytest-django sets up the test database only for tests marked or using `db`; these
        # share one committed world instead, so they set it up when nobody else has.
        created = None
        if not connection.settings_dict["NAME"].startswith("test_"):
            created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        try:
            world = build_world(ports, password)
            database = connection.settings_dict
            uvicorn = start_call_control(cc_port, directory, product_environment(directory))
            processes.append(uvicorn)
            for name in ("alpha", "bravo"):
                processes.append(_uas(ports[name], directory / f"{name}.log"))
            processes.append(_uas(ports["failing"], directory / "failing.log", scenario="uas_busy_503.xml"))
            processes.append(_uas(ports["late"], directory / "late.log", scenario="uas_answer_then_ring.xml"))
            processes.append(_uas(ports["stuck"], directory / "stuck.log", scenario="uas_trying_only.xml"))
            cc_url = wait_for_call_control(uvicorn, cc_port, directory)
            common = {
                "CALL_CONTROL_URL": cc_url,
                "OPENSIPS_DB_URL": mysql_url(database),
                "OPENSIPS_MODULES_DIR": modules_dir(binary),
                "OPENSIPS_ACK_TIMEOUT": ACK_TIMEOUT,
            }
            for node in Node.objects.all():
                dialogs.ensure_table(node.pk)
                with connection.cursor() as cursor:  # no call of an earlier run comes back
                    cursor.execute(f"DELETE FROM {dialogs.table_name(node.pk)}")  # noqa: S608 - our name
            restarts = {}
            for name in ("node1", "node2"):
                node = Node.objects.get(name=name)
                start = partial(_start_opensips, binary, node, directory, mi_ports[name], common)
                processes.append(start())
                log = directory / f"{name}.log"  # what _start_opensips writes to
                restarts[name] = partial(_restart, processes, len(processes) - 1, start, log)
            mute = {
                **common,
                "CALL_CONTROL_URL": f"http://{LOOPBACK}:{silent.getsockname()[1]}/call-control/v1",
                # A short queue: a few calls fill it (test_live_call_ends, overload control).
                "OPENSIPS_CALL_CONTROL_QUEUE": NODE3_QUEUE,
            }
            node3 = Node.objects.get(name="node3")
            processes.append(_start_opensips(binary, node3, directory, mi_ports["node3"], mute))
            # node4 listens on every address: dedicated-IP mode must send from its own.
            wide = ClusterSettings.load()
            wide.bind_address = "0.0.0.0"  # noqa: S104 - loopback test node, never saved
            node4 = Node.objects.get(name="node4")
            processes.append(
                _start_opensips(binary, node4, directory, mi_ports["node4"], common, cluster=wide)
            )
            yield Switch(
                node1_port=ports["node1"],
                node2_port=ports["node2"],
                node3_port=ports["node3"],
                node4_port=ports["node4"],
                probe=probe,
                node1_mi=f"http://{LOOPBACK}:{mi_ports['node1']}/mi",
                node2_mi=f"http://{LOOPBACK}:{mi_ports['node2']}/mi",
                node3_mi=f"http://{LOOPBACK}:{mi_ports['node3']}/mi",
                phone_port=ports["phone"],
                phone2_port=ports["phone2"],
                phone_password=password,
                logs=directory,
                processes=processes,
                restarts=restarts,
                **world,
            )
        finally:
            for process in reversed(processes):
                _stop(process)
            call_command("flush", interactive=False, verbosity=0)
            if created is not None:
                teardown_databases(created, verbosity=0)


def product_environment(directory: Path, **extra: str) -> dict[str, str]:
    """The environment of a product process (uvicorn, a management command) on the test
    database, its files below `directory`."""
    return {
        **os.environ,
        "DATABASE_URL": mysql_url(connection.settings_dict),
        "SMARTSWITCH_VAR_DIR": str(directory / "var"),
        "PREFIX_INDEX_DIR": str(directory / "prefix-index"),
        "CALL_CONTROL_THREADS": "4",
        **extra,
    }


def start_call_control(port: int, directory: Path, environment: dict[str, str]) -> subprocess.Popen:
    """uvicorn serving the product on 127.0.0.1:`port` as the node's web unit does; not
    waited for (wait_for_call_control), so that other processes start meanwhile."""
    return _start(
        [sys.executable, "-m", "uvicorn", "smartswitch.asgi:application",
         "--host", LOOPBACK, "--port", str(port), "--log-level", "warning"],
        directory / "uvicorn.log", env=environment, cwd=settings.BASE_DIR,
    )  # fmt: skip


def wait_for_call_control(process: subprocess.Popen, port: int, directory: Path) -> str:
    """The call-control URL of `start_call_control`'s server, once it answers."""
    url = f"http://{LOOPBACK}:{port}/call-control/v1"
    _wait_ready(
        lambda: _answers_http(f"{url}/authorize"), process, directory / "uvicorn.log", "call control", 60
    )
    return url


def _restart(processes: list, index: int, start, log: Path) -> None:
    """Stop OpenSIPS processes[index] as systemd does (SIGTERM) and start it again; its `log`
    is kept beside the new one."""
    _stop(processes[index])
    log.rename(log.with_suffix(f".log.{time.monotonic_ns()}"))
    processes[index] = start()


def _uas(port: int, log: Path, scenario: str = "") -> subprocess.Popen:
    """A supplier's gateway: SIPp answering calls on 127.0.0.1:`port` until stopped."""
    command = [
        require_sipp(),
        *(["-sf", str(SCENARIOS / scenario)] if scenario else ["-sn", "uas"]),
        "-i", LOOPBACK, "-p", str(port), "-mp", str(free_port()), "-nostdin",
        "-trace_msg", "-message_file", str(log.with_suffix(".messages")),
    ]  # fmt: skip
    return _start(command, log)


@pytest.fixture(name="orm")
def orm_fixture(django_db_blocker):
    """Database access in a live test: the module's world is committed, not rolled back."""
    with django_db_blocker.unblock():
        yield
