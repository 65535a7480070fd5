"""A world that calls, for the live cluster tests: a prepaid customer on the bridge's CLIENT
address, a supplier whose gateway is SIPp on SUPPLIER, prices for 49 and a routing plan."""

import csv
import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.core.management import call_command
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry, Reservation
from apps.billing.services.ledger import post_payment
from apps.cdr.models import Cdr
from apps.nodes.models import Node
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.routing.models import Method, Route, RoutingPlan, RoutingRule
from apps.tenancy.scope import Scope
from tests.cluster import netns
from tests.cluster.live_nodes import CLIENT, SHARED_IP, NodeProcesses, make_nodes

SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
# The supplier's gateway: another address of the bridge (a route back to the caller's own
# address would be refused as a loop).
SUPPLIER = str(netns.TEST_NET.network_address + 253)
SUPPLIER_PORT = 5090


def price_list(name: str, purpose: str, price: str):
    system = Scope.system()
    table = rate_services.create_rate_table(actor=system, name=name, purpose=purpose, currency="USD")
    rate = Rate(
        prefix="49",
        destination="Germany",
        price=Decimal(price),
        connection_fee=Decimal(0),
        min_seconds=1,
        increment_seconds=1,
        free_seconds=0,
        effective_from=timezone.now() - timedelta(days=1),
    )
    rate_services.add_rates(table, [rate], actor=system)
    return table


def build(*, origination: str) -> tuple[Peer, Peer]:
    """Three nodes (node1 150, node2 140, node3 130), the customer and the supplier; the
    cluster's shared IP is SHARED_IP. Every node beats now."""
    system = Scope.system()
    plan = RoutingPlan.objects.create(name="Main")
    make_nodes({"origination_mode": origination, "default_routing_plan_id": plan.pk})
    customer = peer_services.create_peer(
        actor=system,
        name="Acme",
        role=Peer.Role.CUSTOMER,
        sell_rate_table_id=price_list("Retail", "sell", "0.02").pk,
    )
    peer_services.add_endpoint(customer, actor=system, ip=CLIENT)
    # Enough for every call's reservation of the longest call (no worker rates calls here).
    post_payment(customer.account, actor=system, amount=Decimal(100_000), reference="topup")
    supplier = peer_services.create_peer(
        actor=system,
        name="Carrier",
        role=Peer.Role.SUPPLIER,
        buy_rate_table_id=price_list("Buy", "buy", "0.01").pk,
    )
    peer_services.add_gateway(supplier, actor=system, name="gw", host=SUPPLIER, port=SUPPLIER_PORT)
    rule = RoutingRule.objects.create(plan=plan, prefix="49", method=Method.PRIORITY)
    Route.objects.create(rule=rule, supplier=supplier, priority=1)
    Node.objects.update(last_heartbeat=timezone.now())
    return customer, supplier


def start_supplier(nodes: NodeProcesses, sipp: str) -> None:
    """SIPp answering every call on SUPPLIER:SUPPLIER_PORT, on the bridge."""
    netns.ip("addr", "add", f"{SUPPLIER}/{netns.TEST_NET.prefixlen}", "dev", "br0", namespace=nodes.hosts.hub)
    command = [
        sipp,
        "-sf",
        str(SCENARIOS / "uas_answer.xml"),
        "-i",
        SUPPLIER,
        "-p",
        str(SUPPLIER_PORT),
        "-nostdin",
    ]
    with (nodes.root / "supplier.log").open("w") as log:
        nodes.processes.append(nodes.hosts.run_hub(command, stdout=log, stderr=subprocess.STDOUT))


def start_customer(nodes: NodeProcesses, sipp: str, run: Path, *, rate: int, seconds: int, hold_ms: int):
    """SIPp on the bridge calling the shared IP from CLIENT: `rate` calls/s for `seconds`, each
    held `hold_ms`; its statistics and every answered call's set-up time go to `run`."""
    run.mkdir()
    return nodes.hosts.run_hub(
        [sipp, f"{SHARED_IP}:5060", "-sf", str(SCENARIOS / "uac_call.xml"),
         "-i", CLIENT, "-p", "5070", "-s", "4930123456",
         "-r", str(rate), "-m", str(rate * seconds), "-d", str(hold_ms),
         "-recv_timeout", "5000", "-timeout", str(seconds + 30), "-nostdin",
         "-trace_stat", "-stf", str(run / "stat.csv"), "-fd", "1",
         "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-error_file", str(run / "errors.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=run,
    )  # fmt: skip


def customer_counts(run: Path) -> tuple[int, int]:
    """(successful, failed) calls of the customer's SIPp in `run`, from its last statistics."""
    with (run / "stat.csv").open() as handle:
        last = list(csv.DictReader(handle, delimiter=";"))[-1]
    return int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])


def first_setup_after(run: Path, moment: float) -> float:
    """Seconds from `moment` (seconds since SIPp started) to the first call answered after it.

    SIPp's -trace_rtt file has one row per answered call: milliseconds since it started;
    the set-up time."""
    answered = []
    for path in run.glob("*_rtt.csv"):
        with path.open() as handle:
            for row in handle:
                parts = row.strip().split(";")
                try:
                    answered.append(float(parts[0]) / 1000)
                except (ValueError, IndexError):
                    continue
    after = [at for at in answered if at > moment]
    assert after, "no call was set up after the kill"
    return min(after) - moment


def check_money(customer: Peer, supplier: Peer, successful: int) -> None:
    """Every answered call (SIPp's `successful` at least) charged once on each side, no money
    held, the books balanced."""
    answered = Cdr.objects.filter(customer=customer, billable_seconds__gt=0)
    assert answered.count() >= successful
    for peer in (customer, supplier):
        charges = LedgerEntry.objects.filter(account__peer=peer, kind=LedgerEntry.Kind.CHARGE)
        assert charges.count() == answered.count(), peer
    assert not Reservation.objects.active().exists()
    assert Account.objects.get(peer=customer).reserved == 0
    call_command("check_ledger", verbosity=0)
