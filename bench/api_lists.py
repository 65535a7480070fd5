"""How fast the API's scoped list endpoints answer, in process, on a real database.

Loads the demo (with as many CDRs as asked) into the database named by DATABASE_URL, or
into a throwaway SQLite file when it is unset, then requests each list endpoint many
times with an operator key and a reseller key through Django's test client (the whole
Django stack — middleware, key check, scoping, filters, serialization — without the
network). Prints requests per second, latency percentiles and queries per request.

    .venv/bin/python bench/api_lists.py --cdrs 50000 --requests 200
    DATABASE_URL=mysql://root@127.0.0.1:3306/smartswitch_bench .venv/bin/python bench/api_lists.py
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def setup_django() -> None:
    if "DATABASE_URL" not in os.environ:
        var_dir = Path(tempfile.mkdtemp(prefix="smartswitch-bench-"))
        (var_dir / "static").mkdir()
        os.environ["SMARTSWITCH_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smartswitch.settings")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cdrs", type=int, default=20_000, help="demo CDRs to generate (default 20000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint and key")
    args = parser.parse_args()
    setup_django()

    from django.core.management import call_command
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, connection
    from django.test import Client

    from apps.cdr.models import Cdr
    from apps.tenancy import services
    from apps.tenancy.models import ApiKey, Reseller
    from apps.tenancy.scope import Scope

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("loaddemo", cdrs=args.cdrs, verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    load_seconds = time.perf_counter() - started

    system = Scope.system()
    _, operator_key = services.create_api_key(
        actor=system, name="bench operator", scope=ApiKey.Scope.OPERATOR
    )
    reseller = Reseller.objects.order_by("pk").first()
    _, reseller_key = services.create_api_key(
        actor=system, name="bench reseller", scope=ApiKey.Scope.RESELLER, reseller=reseller
    )
    week_ago = urlencode({"created_after": (datetime.now(UTC) - timedelta(days=7)).isoformat()})
    endpoints = [
        ("peers", "/api/v1/peers/"),
        ("cdrs, first page", "/api/v1/cdrs/?limit=50"),
        ("cdrs, last 7 days", f"/api/v1/cdrs/?limit=50&{week_ago}"),
        ("ledger entries", "/api/v1/ledger-entries/?limit=50"),
        ("rates", "/api/v1/rates/?limit=50"),
    ]
    # Keep one connection across requests, as persistent connections do in production (and
    # so the query counter sees every request's queries).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    client = Client()
    rows = []
    for key_name, token in (("operator", operator_key), ("reseller", reseller_key)):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        for label, url in endpoints:
            assert client.get(url, **headers).status_code == 200, url  # warm up, and prove it works
            executed: list[str] = []

            def count(execute, sql, params, many, context, executed=executed):
                executed.append(sql)
                return execute(sql, params, many, context)

            with connection.execute_wrapper(count):
                client.get(url, **headers)
            timings = []
            for _ in range(args.requests):
                begin = time.perf_counter()
                response = client.get(url, **headers)
                timings.append((time.perf_counter() - begin) * 1000)
                assert response.status_code == 200
            timings.sort()
            rows.append(
                (
                    key_name,
                    label,
                    len(executed),
                    1000 / statistics.mean(timings),
                    statistics.median(timings),
                    timings[int(len(timings) * 0.95) - 1],
                )
            )

    print(f"# API list endpoints — {datetime.now(UTC):%Y-%m-%d}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"database: {connection.vendor} {connection.Database.__name__}")
    print(f"data: {Cdr.objects.count()} CDRs (demo load {load_seconds:.1f}s), {args.requests} requests each")
    print()
    print("| key | endpoint | queries | req/s | p50 ms | p95 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for key_name, label, query_count, rate, p50, p95 in rows:
        print(f"| {key_name} | {label} | {query_count} | {rate:.0f} | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
