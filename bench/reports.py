"""Reports and portal pages over a month of --cdrs CDRs (default 10,000,000) on MariaDB.

Builds a database of its own (default mysql://root@127.0.0.1:3306/bench_reports) with the
CDR generator of bench/controllers.py (MariaDB's sequence engine, rated CDRs over --days
days, default 30) across --customers customers (default 200) and --suppliers suppliers. One
customer, "the big one", has --export-cdrs of the calls (default 1,000,000; as many as the
total allows), so that its CSV export is a month of a million calls.

Then, timed:
1. the traffic rollups built from the CDRs (`rebuild_rollups`, the migration path), their
   day rows per shape, what the rater's rollup upsert adds to one rating batch of 500 CDRs
   and what re-rating's move of 500 calls' prices costs;
2. p50/p95 over --samples requests (Django's test Client against the views, as a signed-in
   user): the portal calls list's first page and a filtered calls page (the big customer),
   the operator's report for the month by destination, the portal Usage page for the month,
   the admin home and live dashboards and the portal's Live calls;
3. the big customer's CSV export of the month (its calls): time and peak memory, as
   tracemalloc's peak of Python allocations and the process's peak RSS before and after.

    .venv/bin/python bench/reports.py                  # 10 M CDRs
    .venv/bin/python bench/reports.py --cdrs 1000000

The database is dropped at the end unless --keep; --reuse measures on a kept one.
"""

import argparse
import os
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    configure_django,
    create_database,
    describe_machine,
    drop_database,
    percentile,
)

DEFAULT_URL = "mysql://root@127.0.0.1:3306/bench_reports"
NODE = "bench1"
PASSWORD = "bench-Pass-1234!"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args, now: datetime) -> dict:
    """The database, the peers, the logins and the CDRs (bench.controllers' generator)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from apps.peers.models import Peer
    from apps.tenancy import services as tenancy_services
    from apps.tenancy.scope import Scope
    from bench import controllers

    create_database(args.database_url)
    call_command("migrate", verbosity=0)
    world = controllers.build_world(args)
    big = world["customers"][0]
    # The generator draws a customer uniformly from its list: repeating the big one gives it
    # its share of the calls.
    share = min(args.export_cdrs / args.cdrs, 0.9)
    others = world["customers"][1:]
    repeats = max(1, round(len(others) * share / (1 - share)))
    draw = dict(world, customers=[big] * repeats + others)
    took = controllers.fill_cdrs(args, draw, now)
    print(f"{args.cdrs:,} CDRs written in {took:.0f} s ({args.cdrs / took:,.0f}/s)", flush=True)
    get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)
    tenancy_services.add_customer_login(
        Peer.objects.get(pk=big), actor=Scope.system(), username="big", password=PASSWORD
    )
    return world


def timed(client, url: str, samples: int) -> tuple[float, float, int]:
    """p50 and p95 in ms of `samples` GETs of `url` (after one warm-up), and the status."""
    status = client.get(url).status_code
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return percentile(times, 0.5), percentile(times, 0.95), status


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--cdrs", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--suppliers", type=int, default=20)
    parser.add_argument("--export-cdrs", type=int, default=1_000_000, help="calls of the exporting customer")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--no-export", action="store_true", help="skip the CSV export (the reports only)")
    parser.add_argument("--reuse", action="store_true", help="measure on a kept database")
    args = parser.parse_args()
    if not args.database_url.startswith("mysql"):
        raise SystemExit("the CDRs are written by MariaDB's sequence engine: --database-url mysql://…")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    # The test Client speaks plain HTTP to the views: no TLS proxy in front here.
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    configure_django(args.database_url, NODE)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from apps.cdr.models import Cdr
    from apps.reports import rollups
    from apps.reports.models import TrafficRollup
    from apps.tenancy.models import Membership

    print(describe_machine(), flush=True)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f}", flush=True)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        if not args.reuse:
            build(args, now)
        users = get_user_model().objects
        big_user = users.get(username="big")
        big = Membership.objects.get(user=big_user).peer_id
        with connection.cursor() as cursor:
            cursor.execute("SELECT MIN(created_at), MAX(created_at), COUNT(*) FROM cdr_cdr")
            first, last, count = cursor.fetchone()
        big_calls = Cdr.objects.filter(customer_id=big).count()
        print(
            f"{count:,} CDRs from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M};"
            f" the big customer has {big_calls:,}"
        )

        customer = Client()
        customer.force_login(big_user)
        operator = Client()
        operator.force_login(users.get(username="operator"))
        zone = rollups.local_zone()
        since = first.replace(tzinfo=UTC).astimezone(zone).date()
        until = last.replace(tzinfo=UTC).astimezone(zone).date()
        month = f"since={since}&until={until}"
        calls_month = f"start={since}&end={until}"

        results = []
        if not args.no_export:
            # 3 first, on a fresh process: its peak RSS is the export's.
            rss_before = rss_mib()
            started = time.perf_counter()
            response = customer.get(f"/portal/calls/?{calls_month}&format=csv")
            size = lines = 0
            for piece in response.streaming_content:
                size += len(piece)
                lines += piece.count(b"\n")
            export_s = time.perf_counter() - started
            rss_after = rss_mib()
            tracemalloc.start()
            response = customer.get(f"/portal/calls/?{calls_month}&format=csv")
            for _piece in response.streaming_content:
                pass
            traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            results.append(
                f"CSV export of the big customer's month: {lines - 1:,} calls, {size / 2**20:.0f} MiB"
                f" in {export_s:.1f} s ({(lines - 1) / export_s:,.0f} rows/s);"
                f" peak RSS {rss_before:.0f} MiB before, {rss_after:.0f} MiB after;"
                f" tracemalloc peak {traced_peak:.1f} MiB (status {response.status_code})"
            )
            print(results[-1], flush=True)

        if not args.reuse or not TrafficRollup.objects.exists():
            started = time.perf_counter()
            written = rollups.rebuild()
            took = time.perf_counter() - started
            results.append(
                f"rebuild_rollups over {count:,} CDRs: {took:.0f} s ({count / took:,.0f} CDRs/s),"
                f" {written:,} rows"
            )
            print(results[-1], flush=True)
        rows = TrafficRollup.objects.count()
        results.append(
            f"rollup rows: {rows:,} ({TrafficRollup.objects.filter(grain='day').count():,} day rows)"
        )
        # Per shape (apps.reports.rollups.SHAPES): what a report of that shape sums for a month.
        from django.db.models import Count

        per_shape = dict(
            TrafficRollup.objects.filter(grain="day").values_list("shape").annotate(n=Count("pk")).order_by()
        )
        results.append(
            "day rows per shape: "
            + ", ".join(f"{name} {per_shape.get(name, 0):,}" for name in rollups.SHAPES)
        )
        print(results[-2], results[-1], sep="\n", flush=True)

        # The rater's part: add_rated for batches of 500 rated CDRs, in a transaction rolled back.
        from django.db import transaction

        ids = list(Cdr.objects.order_by("-pk").values_list("pk", flat=True)[: 500 * 10])
        batch_times = []
        for start in range(0, len(ids), 500):
            with transaction.atomic():
                started = time.perf_counter()
                rollups.add_rated(ids[start : start + 500])
                batch_times.append((time.perf_counter() - started) * 1000)
                transaction.set_rollback(True)
        results.append(
            f"rollup upsert per rating batch of 500 CDRs: p50 {percentile(batch_times, 0.5):.1f} ms,"
            f" p95 {percentile(batch_times, 0.95):.1f} ms"
        )
        print(results[-1], flush=True)

        # Re-rating's part: move_prices for 500 calls whose sell price changes (rolled back).
        from decimal import Decimal

        columns = ("pk", *rollups.PRICE_COLUMNS)
        move_times = []
        for start in range(0, len(ids), 500):
            prices = Cdr.objects.filter(pk__in=ids[start : start + 500]).values_list(*columns)
            changes = [(pk, tuple(old), ((old[0] or 0) + Decimal("0.001"), *old[1:])) for pk, *old in prices]
            with transaction.atomic():
                started = time.perf_counter()
                rollups.move_prices(changes)
                move_times.append((time.perf_counter() - started) * 1000)
                transaction.set_rollback(True)
        results.append(
            f"re-rating's rollup move per batch of 500 CDRs: p50 {percentile(move_times, 0.5):.1f} ms,"
            f" p95 {percentile(move_times, 0.95):.1f} ms"
        )
        print(results[-1], flush=True)

        destination = Cdr.objects.filter(customer_id=big).values_list("destination", flat=True).first()
        pages = [
            ("portal calls list, first page (big customer)", customer, "/portal/calls/"),
            (
                "portal calls, filtered (destination, answered, >= 60 s, the month)",
                customer,
                f"/portal/calls/?{calls_month}&destination={destination}&status=answered&min_duration=60",
            ),
            (
                "operator's report, the month by destination",
                operator,
                f"/admin/reports/?{month}&group_by=destination",
            ),
            ("operator's report, the month by day", operator, f"/admin/reports/?{month}&group_by=period"),
            (
                "operator's report, the month by customer",
                operator,
                f"/admin/reports/?{month}&group_by=customer",
            ),
            (
                "operator's report, the month by supplier",
                operator,
                f"/admin/reports/?{month}&group_by=supplier",
            ),
            (
                "operator's report, the month by supplier, the big customer (full shape)",
                operator,
                f"/admin/reports/?{month}&group_by=supplier&customer={big}",
            ),
            ("portal Usage, the month (big customer)", customer, f"/portal/usage/?{month}"),
            # The dashboards render their first figures on the server (then the socket
            # keeps them current): calls in progress, the last hour's CDR windows, alerts.
            ("admin home dashboard (operator)", operator, "/admin/"),
            ("live dashboard (operator)", operator, "/admin/live/"),
            ("portal Live calls (big customer)", customer, "/portal/live/"),
        ]
        for label, client, url in pages:
            p50, p95, status = timed(client, url, args.samples)
            results.append(f"{label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms (status {status})")
            print(results[-1], flush=True)
        print("\n".join(["", "Summary:", *results]))
    finally:
        if not args.keep and not args.reuse:
            drop_database(args.database_url)


if __name__ == "__main__":
    main()
