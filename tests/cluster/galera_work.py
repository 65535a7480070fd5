"""What the galera tests make a node do: run inside `manage.py shell` on one member.

Each function prints one JSON line for the test to read. The product code runs for real
against the member named by DATABASE_URL, as that node's workers and admin would.
"""

import io
import json
import os
import threading
import time
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlparse

import pymysql
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry
from apps.billing.services import rating
from apps.cdr.models import Cdr
from apps.cluster import leases
from apps.core.db import retry_stats, unless_conflict
from apps.files import services as files
from apps.files import tasks as file_tasks
from apps.files.models import FileCopy
from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.routing.models import RoutingPlan
from apps.tenancy.scope import Scope
from tests.factories import NodeFactory, make_peer
from tests.switching import (
    BERLIN,
    BUY,
    MOBILE,
    SELL,
    add_route,
    add_rule,
    add_supplier,
    price_list,
    rate,
    set_plan,
)

SYSTEM = Scope.system()
CUSTOMERS = 5
OPENING_BALANCE = Decimal("50.00")


def say(**values) -> None:
    print(json.dumps(values, default=str), flush=True)


def read_elsewhere(url: str, sql: str, params) -> list:
    parts = urlparse(url)
    with (
        closing(
            pymysql.connect(
                host=parts.hostname, port=parts.port, user=parts.username, database=parts.path.lstrip("/")
            )
        ) as other,
        other.cursor() as cursor,
    ):
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def create_peer_and_read_elsewhere(name: str) -> None:
    """Create a peer through the service here, then read it on the other members at once."""
    peer = make_peer(name)  # peers.services.create_peer, committed when it returns
    seen = {
        node: read_elsewhere(url, "SELECT name FROM peers_peer WHERE id = %s", [peer.pk])
        for node, url in json.loads(os.environ["OTHER_MEMBERS"]).items()
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@wsrep_sync_wait")
        sync_wait = cursor.fetchone()[0]
    say(
        peer=peer.pk,
        seen={node: [row[0] for row in rows] for node, rows in seen.items()},
        sync_wait=sync_wait,
    )


def build_world() -> None:
    """Three nodes, a sell list, four suppliers with routes, five customers with money."""
    for i in (1, 2, 3):
        NodeFactory(name=f"node{i}")
    sell = price_list("Retail", [rate(p, price, dest) for p, (dest, price) in SELL.items()])
    suppliers = [add_supplier(name, prices) for name, prices in BUY.items()]
    plan = RoutingPlan.objects.create(name="Main")
    rule = add_rule(plan)
    for priority, supplier in enumerate(suppliers, start=1):
        add_route(rule, supplier, priority=priority)
    for i in range(CUSTOMERS):
        customer = make_peer(f"Galera customer {i}", sell_rate_table_id=sell.pk)
        billing.post_payment(customer.account, actor=SYSTEM, amount=OPENING_BALANCE, reference=f"open-{i}")
        set_plan(customer, plan)
    say(customers=CUSTOMERS)


def add_calls(calls: int, tag: str) -> None:
    """`calls` unrated CDRs of the five customers, spread over the three nodes, 1 in 7 unanswered."""
    nodes = list(Node.objects.filter(name__in=["node1", "node2", "node3"]).order_by("name"))
    customers = list(Peer.objects.filter(name__startswith="Galera customer").order_by("pk"))
    suppliers = list(Peer.objects.filter(name__in=list(BUY)).order_by("pk"))
    start = timezone.now() - timedelta(hours=1)
    Cdr.objects.bulk_create(
        Cdr(
            call_id=f"{tag}-{i}@galera",
            node=nodes[i % 3],
            customer=customers[i % len(customers)],
            supplier=suppliers[i % len(suppliers)],
            callee=MOBILE if i % 2 else BERLIN,
            created_at=start + timedelta(seconds=i),
            answered_at=start + timedelta(seconds=i) if i % 7 else None,
            ended_at=start + timedelta(seconds=i + 30),
            duration_ms=(1000 + 137 * i) if i % 7 else 0,
            sip_code=200 if i % 7 else 487,
        )
        for i in range(calls)
    )
    say(calls=calls)


def _wait_until(moment: float) -> None:
    while time.time() < moment:
        time.sleep(0.01)


def race(go_at: float, payments: int, how: str = "worker") -> None:
    """Rate CDRs while posting `payments` referenced payments, from `go_at` on.

    `how`: "worker" rates as billing_loop does (this node's CDRs first, then those left too
    long by others), "command" runs `manage.py rate_cdrs` (any CDR, oldest first).
    Every node posts the same references: each must end up posted once, whichever node wins.
    """
    node = Node.objects.get(name=settings.NODE_NAME)
    accounts = list(Account.objects.filter(peer__name__startswith="Galera customer").order_by("pk"))
    created = []

    def pay() -> None:
        try:
            for i in range(payments):
                # A payment that gave up on conflicts is sent again, as an integrator does after
                # the API's 503: the reference makes the retry safe.
                outcome = None
                while outcome is None:
                    outcome = unless_conflict(
                        billing.post_payment,
                        accounts[i % len(accounts)],
                        actor=SYSTEM,
                        amount=Decimal("1.25"),
                        reference=f"{how}-{i}",
                    )
                created.append(outcome[1])
        finally:
            connection.close()

    _wait_until(go_at)
    payer = threading.Thread(target=pay)
    payer.start()
    rated, stopped = 0, 0
    # A batch that loses certification more often than the retry budget allows is taken
    # again by the same rater (apps.core.db.unless_conflict); a rater stops only after
    # rating.GIVE_UP_LIMIT such batches in a row — counted here, and started again as the
    # worker's next scheduled run would.
    while Cdr.objects.filter(rating_state=Cdr.RatingState.UNRATED).exists():
        try:
            if how == "worker":
                rated += rating.rate_all(node_id=node.pk, limit=20).rated
            else:
                out = io.StringIO()
                call_command("rate_cdrs", "--batch", "20", stdout=out)
                rated += int(out.getvalue().split(" rated")[0])
        except (rating.RatingStalled, CommandError):
            stopped += 1
        time.sleep(0.05)  # the last CDRs may be in another node's batch: do not spin on them
    payer.join()
    say(
        rated=rated,
        stopped=stopped,
        retries=retry_stats.retries,
        gave_up=retry_stats.gave_up,
        payments_created=sum(created),
    )


def ledger_summary(how: str) -> None:
    """What every node must agree on after a race."""
    customers = Peer.objects.filter(name__startswith="Galera customer")
    answered = Cdr.objects.filter(duration_ms__gt=0)
    charges = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE)
    payments = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PAYMENT, account__peer__in=customers)
    race_payments = payments.filter(reference__startswith=f"{how}-")
    say(
        unrated=Cdr.objects.exclude(rating_state=Cdr.RatingState.RATED).count(),
        answered=answered.count(),
        charges=charges.count(),
        duplicate_charges=charges.values("account", "reference")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count(),
        race_payments=race_payments.count(),
        duplicate_payments=payments.values("account", "reference")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count(),
        paid=payments.aggregate(s=Sum("amount"))["s"],
        sold=answered.aggregate(s=Sum("sell_cost"))["s"],
        balances=Account.objects.filter(peer__in=customers).aggregate(s=Sum("balance"))["s"],
        differences=len(billing.ledger_differences()),
    )


def write_payments(prefix: str, after: int, flag: str) -> None:
    """Post payments with fresh references, one transaction each, without pause, until the
    file `flag` exists; then `after` more. Says how many in all."""
    account = Account.objects.filter(peer__name__startswith="Galera customer").order_by("pk").first()
    posted, left = 0, None
    while left is None or left > 0:
        # Sent again after giving up on conflicts, as an integrator does after a 503.
        reference = f"{prefix}-{posted}"
        while not unless_conflict(
            billing.post_payment, account, actor=SYSTEM, amount=Decimal("0.01"), reference=reference
        ):
            pass
        posted += 1
        if posted == 1:
            say(started=True)
        if left is None and os.path.exists(flag):
            left = after
        elif left is not None:
            left -= 1
    say(posted=posted)


def hold_lease(name: str, holder: str, ttl: float) -> None:
    """Take lease `name` and renew it every second, as a node's worker does, until killed."""
    while not leases.acquire(name, holder, ttl):
        time.sleep(0.5)
    say(held=holder)
    while True:
        time.sleep(1)
        leases.acquire(name, holder, ttl)


def take_lease(name: str, holder: str, ttl: float, give_up_after: float) -> None:
    """Try for lease `name` every half second until it is ours (or `give_up_after` seconds)."""
    began = time.monotonic()
    tries = 0
    while time.monotonic() - began < give_up_after:
        tries += 1
        try:
            if leases.acquire(name, holder, ttl):
                say(taken=True, after=round(time.monotonic() - began, 1), tries=tries)
                return
        except Exception as exc:  # a write refused while the cluster reforms: try again
            say(error=str(exc))
            connection.close()
        time.sleep(0.5)
    say(taken=False, holder=leases.holder(name), tries=tries)


def point_sync_at(targets: dict) -> None:
    """Send node2's and node3's copies to the rsync daemons of the test ({node: rsync URL})."""
    for name, url in targets.items():
        files.set_node_storage(Node.objects.get(name=name), actor=SYSTEM, sync_target=url)
    say(targets=sorted(targets))


def make_and_push(names: list) -> None:
    """Finish recordings on this node, register them and run the pushes its worker would run."""
    origin = Node.objects.get(name=settings.NODE_NAME)
    registered = {}
    for name in names:
        relative = files.path_for(origin, name)
        path = files.kind_root("recording") / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF" + os.urandom(4096))
        registered[relative] = files.register_file(kind="recording", relative_path=relative).pk
    results = file_tasks.sync_now()
    say(
        files=registered,
        results={f"{file_id}->{node}": result.split(":")[0] for (file_id, node), result in results.items()},
    )


def copy_states(file_ids: list) -> None:
    """State of each copy of the files, by node, as this node's database says."""
    copies = FileCopy.objects.filter(file_id__in=file_ids).values_list("file_id", "node__name", "state")
    say(states=sorted([file_id, node, state] for file_id, node, state in copies))


def health_at(go_at: float) -> None:
    """Ask this node's /health/ at `go_at`; say its answer and the cluster's size right after.

    Asked in a thread of its own: under ASGI each request of the web process has a database
    connection of its own, begun by Django's SELECT of the server's version."""
    from django.test import RequestFactory

    from smartswitch.urls import health

    connection.ensure_connection()  # this thread's, for the size below
    answers = []
    _wait_until(go_at)
    asker = threading.Thread(target=lambda: answers.append(health(RequestFactory().get("/health/"))))
    asker.start()
    asker.join()
    with connection.cursor() as cursor:
        cursor.execute("SET STATEMENT wsrep_sync_wait = 0 FOR SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")
        size = int(cursor.fetchone()[1])
    say(status=answers[0].status_code, body=json.loads(answers[0].content), cluster_size=size)
