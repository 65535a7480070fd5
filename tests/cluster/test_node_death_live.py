"""A node dies whole under traffic: its OpenSIPS, web, worker and Galera member at once.

Three full nodes in network namespaces: OpenSIPS, call control (uvicorn), the worker
(`manage.py qcluster`) and a member of a three-member Galera cluster, each on the node's
own address, every process using its own node's member, as deploy/ installs a node.
keepalived holds the shared IP on node1. SIPp calls the shared IP at 20 calls/s for 60 s
(6 s calls; OpenSIPS writes its dialogs every 2 s); 20 s in, every process of node1 is
SIGKILLed, as when its machine loses power.

Measured: when the two surviving members had evicted the dead one, how long until a call set
up again, how many calls failed, and how long until the money was settled. Nothing is done by
hand after the kill: the surviving workers take over node1's singleton work through the
leases, import and rate every CDR, estimate node1's cut calls from its dialog table (billed to
its last heartbeat) and release its reservations. The test only waits, within a bound, and
then checks, on each member (node1's once it has rejoined by IST), that every answered call
is charged once on each side, no money is held and `check_ledger` is clean.

Runs as test_failover_traffic_live.py does (root, OPENSIPS_BIN, SIPp, keepalived,
DATABASE_URL=mysql://...), with Debian's mariadb-server and galera-4 too.
"""

import contextlib
import time

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apps.billing.models import Reservation
from apps.cdr.models import Cdr
from apps.cluster.models import Lease
from apps.nodes.models import ClusterSettings, Node
from tests.cluster import calling, galera_harness, netns
from tests.cluster.live_nodes import (
    CLIENT,
    SHARED_IP,
    options_answered,
    skip_unless_possible,
    started_nodes,
    wait_until,
)
from tests.opensips.live import require_sipp

pytestmark = pytest.mark.netns

RATE, SECONDS, HOLD_MS = 20, 60, 6000
KILL_AFTER = 20
# Beats, staleness and leases in seconds, short so that the test's waits stay short; two
# workers per node (the billing loop and the rest) on this two-core machine.
CLUSTER = {
    "CLUSTER_HEARTBEAT_SECONDS": "1",
    "CLUSTER_STALE_SECONDS": "3",
    "CLUSTER_LEASE_SECONDS": "3",
    "Q_WORKERS": "2",
}
SETTLE_BOUND = 240  # seconds after SIPp's end for the workers to settle every call


@contextlib.contextmanager
def on_member(member: galera_harness.Member):
    """This process's connection on `member`'s database, over its socket, instead of the test
    database (this process is outside the namespaces)."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(
        NAME=galera_harness.DATABASE, HOST=str(member.socket), PORT="", USER="root", PASSWORD=""
    )
    ContentType.objects.clear_cache()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        ContentType.objects.clear_cache()


@pytest.fixture
def world(transactional_db, tmp_path):
    binary = skip_unless_possible()
    sipp = require_sipp()
    reason = galera_harness.missing()
    if reason:
        pytest.skip(f"no Galera cluster here: {reason}")
    hosts = netns.Hosts(3, hub_address=CLIENT)
    galera = galera_harness.GaleraCluster(3, hosts=hosts)
    nodes = None
    try:
        galera.start()
        # node3's member survives the test: this process reads and checks there.
        with on_member(galera.members[2]):
            call_command("migrate", interactive=False, verbosity=0)
            customer, supplier = calling.build(origination="shared")
            # Calls granted at most 20 s, released 10 s later if no CDR came: node1's cut
            # calls are settled within the test's wait.
            ClusterSettings.objects.update(max_call_duration=20, reservation_grace=10)
            nodes = started_nodes(
                tmp_path,
                binary,
                web="uvicorn",
                hosts=hosts,
                galera=galera,
                workers=True,
                environment=CLUSTER,
                engine_settings={"OPENSIPS_DIALOG_FLUSH": 2},
            )
            calling.start_supplier(nodes, sipp)
            yield nodes, sipp, customer, supplier
    finally:
        if nodes is not None:
            nodes.stop()  # its processes, then the Galera cluster, then the namespaces
        else:
            galera.stop()
            hosts.close()


def test_a_node_dying_whole_under_traffic_loses_only_its_calls_and_the_others_settle_them(world, tmp_path):
    nodes, sipp, customer, supplier = world
    galera = nodes.galera
    for i in (1, 2, 3):
        nodes.start_keepalived(i)
        if i == 1:
            assert options_answered(nodes.hosts, 15) is not None and nodes.hosts.holds(1, SHARED_IP)
    fresh = timezone.now()
    assert wait_until(lambda: Node.objects.filter(last_heartbeat__gt=fresh).count() == 3, 60), (
        "the three workers do not beat"
    )

    run = tmp_path / "sipp"
    started = time.monotonic()
    customer_sipp = calling.start_customer(nodes, sipp, run, rate=RATE, seconds=SECONDS, hold_ms=HOLD_MS)
    time.sleep(KILL_AFTER)
    killed = time.monotonic()
    nodes.kill(1)
    survivors = galera.members[1:]
    assert wait_until(lambda: all(galera.status(m).get("wsrep_cluster_size") == "2" for m in survivors), 60)
    evicted = time.monotonic() - killed
    assert all(galera.status(m).get("wsrep_cluster_status") == "Primary" for m in survivors)
    customer_sipp.wait(timeout=SECONDS + 60)
    ended = time.monotonic()
    # The survivors' track scripts kept passing while their members waited to evict the dead
    # one: had /health/ waited with them, both would have given up the shared IP at once.
    for i in (2, 3):
        assert "FAULT" not in (tmp_path / f"keepalived{i}.log").read_text(), f"node{i} failed its check"

    successful, failed = calling.customer_counts(run)
    recovered = calling.first_setup_after(run, killed - started)

    def settled() -> bool:
        answered = Cdr.objects.filter(customer=customer, billable_seconds__gt=0)
        return (
            not Reservation.objects.active().exists()
            and not Cdr.objects.filter(rating_state=Cdr.RatingState.UNRATED).exists()
            and answered.count() >= successful
        )

    assert wait_until(settled, SETTLE_BOUND), "the surviving workers did not settle every call"
    estimated = Cdr.objects.filter(customer=customer, estimated=True).count()
    print(
        f"{RATE} calls/s for {SECONDS} s, node1 killed whole at {KILL_AFTER} s: {successful} completed, "
        f"{failed} failed; Galera evicted node1's member after {evicted:.1f} s; the first call set up "
        f"{recovered:.2f} s after the kill; money settled {time.monotonic() - ended:.0f} s after the "
        f"last call, {estimated} of node1's calls estimated from its dialog table"
    )
    assert successful + failed == RATE * SECONDS
    # VRRP's master-down interval (3.5 s), Galera's eviction of the silent member (writes on
    # the survivors wait for it), and a call's set-up.
    assert recovered < evicted + 6
    # Lost: the calls up on node1 and those sent until the survivors could commit again.
    assert failed <= RATE * (HOLD_MS / 1000 + recovered + 1)
    # Answered calls up on node1 when it died were in its dialog table: estimated and billed.
    assert estimated > 0
    assert Node.objects.get(name="node1").last_heartbeat < Node.objects.get(name="node2").last_heartbeat
    # The expiry singleton ran on a survivor: node1's leases went to the living.
    held = Lease.objects.filter(expires_at__gte=timezone.now()).values_list("holder", flat=True)
    assert held and "node1" not in held
    calling.check_money(customer, supplier, successful)
    # The same books on every member: node2's, and node1's once it is back, caught up by IST
    # (what it missed while dead), as its node would be after a restart.
    with on_member(survivors[0]):
        calling.check_money(customer, supplier, successful)
    rejoin = galera.restart(galera.members[0])
    print(
        f"node1's member back in {rejoin.seconds:.1f} s: "
        f"{'a full copy' if rejoin.full_copy else f'IST of {rejoin.writesets} writesets'}"
    )
    assert not rejoin.full_copy
    with on_member(galera.members[0]):
        calling.check_money(customer, supplier, successful)
