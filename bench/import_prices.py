"""How fast a supplier price list goes from a CSV file to live rates, phase by phase.

Generates a realistic deck of N rows (prefixes grown from fixtures/destinations.csv,
per-country price levels, 30/6/0-style increments, one effective date), imports it into
an empty buy table with the same service the CLI and the admin use, then imports it again
with 5 % of the prices changed and 1 % of the codes gone (a full list over a full table).
On MariaDB it also times a raw `LOAD DATA LOCAL INFILE` of the same CSV into a scratch
table: the floor no import with validation can beat.

    .venv/bin/python bench/import_prices.py --rows 1000000 --db mysql://root@127.0.0.1:3306/ss_bench
    .venv/bin/python bench/import_prices.py --rows 100000 --db postgres://postgres@127.0.0.1:5432/ss_bench
    .venv/bin/python bench/import_prices.py --rows 100000            # a throwaway SQLite file

The database named by --db is dropped, created, and dropped again at the end (--keep keeps it).
"""

import argparse
import csv
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent


def make_deck(path: Path, rows: int, *, seed: int, change: float = 0.0, drop: float = 0.0) -> int:
    """Write a canonical CSV of `rows` distinct prefixes; return the rows written."""
    rng = random.Random(seed)
    with (ROOT / "fixtures" / "destinations.csv").open(newline="") as handle:
        destinations = [
            (
                row["prefix"],
                f'"{row["destination"]}"' if "," in row["destination"] else row["destination"],
                float(row["reference_rate"]),
            )
            for row in csv.DictReader(handle)
        ]
    prices = random.Random(1)  # the same base price per prefix in every deck
    written = 0
    with path.open("w", newline="") as out:
        out.write(
            "prefix,destination,rate,connection_fee,min_seconds,increment_seconds,free_seconds,effective_from,effective_to\n"
        )
        per_destination = -(-rows // len(destinations))
        width = len(str(per_destination))
        for prefix, name, reference in destinations:
            for n in range(per_destination):
                if written >= rows:
                    break
                base = reference * (0.8 + 0.4 * prices.random())
                if rng.random() < drop:
                    written += 1
                    continue
                if rng.random() < change:
                    base *= 1.1 if rng.random() < 0.5 else 0.9
                code = f"{prefix}{n:0{width}d}"
                increments = (
                    "60,60,0" if prefix.startswith("88") else "30,6,0" if prefix[0] != "1" else "1,1,0"
                )
                out.write(f"{code},{name},{base:.5f},0,{increments},2026-12-01T00:00:00Z,\n")
                written += 1
    return written


def _server_statement(url: str, *, mysql: str, postgres: str) -> None:
    """Run one statement on the server of `url` outside its database (create or drop it)."""
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if parsed.scheme.startswith("mysql"):
        import pymysql

        conn = pymysql.connect(
            host=parsed.hostname,
            port=parsed.port or 3306,
            user=parsed.username or "root",
            password=parsed.password or "",
        )
        with conn.cursor() as cur:
            cur.execute(mysql.format(name=name))
        conn.close()
    elif parsed.scheme.startswith("postgres"):
        import psycopg

        with psycopg.connect(
            f"host={parsed.hostname} port={parsed.port or 5432} user={parsed.username} dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(postgres.format(name=name))


def ensure_database(url: str) -> None:
    _server_statement(
        url,
        mysql="CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4",
        # CREATE DATABASE has no IF NOT EXISTS in PostgreSQL; drop first instead.
        postgres='DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
    )
    _server_statement(url, mysql="SELECT 1", postgres='CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    _server_statement(
        url,
        mysql="DROP DATABASE IF EXISTS `{name}`",
        postgres='DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
    )


def load_data_floor(url: str, path: Path) -> float | None:
    """Seconds for MariaDB to LOAD DATA LOCAL INFILE the CSV into a scratch table, or None."""
    import pymysql

    parsed = urlparse(url)
    conn = pymysql.connect(
        host=parsed.hostname,
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=parsed.path.lstrip("/"),
        local_infile=True,
    )
    with conn.cursor() as cur:
        cur.execute("SHOW VARIABLES LIKE 'local_infile'")
        if (cur.fetchone() or ("", "OFF"))[1] != "ON":
            print("LOAD DATA floor: skipped (the server has local_infile=OFF)")
            return None
        cur.execute("DROP TABLE IF EXISTS bench_load_floor")
        cur.execute(
            "CREATE TABLE bench_load_floor (id BIGINT AUTO_INCREMENT PRIMARY KEY, prefix VARCHAR(32), "
            "destination VARCHAR(100), price DECIMAL(20,6), connection_fee DECIMAL(20,6), min_seconds INT, "
            "increment_seconds INT, free_seconds INT, effective_from VARCHAR(32), effective_to VARCHAR(32), "
            "KEY (prefix))"
        )
        started = time.perf_counter()
        cur.execute(
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE bench_load_floor FIELDS TERMINATED BY ',' "
            "OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' IGNORE 1 LINES "
            "(prefix, destination, price, connection_fee, min_seconds, increment_seconds, free_seconds, "
            "effective_from, effective_to)"
        )
        conn.commit()
        seconds = time.perf_counter() - started
        cur.execute("DROP TABLE bench_load_floor")
    conn.close()
    return seconds


def run_import(table, path: Path, mode: str, chunk: int):
    from apps.rates.services import activation
    from apps.tenancy.scope import Scope

    started = time.perf_counter()
    data = path.read_bytes()
    read = time.perf_counter() - started
    report = activation.import_price_file(
        table, data, actor=Scope.system(), filename=path.name, mode=mode, chunk_size=chunk
    )
    total = time.perf_counter() - started
    return report, read, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", default="", help="database URL (default: a throwaway SQLite file)")
    parser.add_argument("--chunk", type=int, default=10_000, help="rows per activation transaction")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-reimport", action="store_true", help="skip the second (full over full) import")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="smartswitch-import-bench-"))
    os.environ["SMARTSWITCH_VAR_DIR"] = str(workdir)
    (workdir / "static").mkdir()
    url = args.db or f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smartswitch.settings")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    import django

    django.setup()
    if args.db:
        drop_database(url)  # a scratch database: start from nothing
    ensure_database(url)
    from django.core.management import call_command
    from django.db import connection

    from apps.rates import services
    from apps.rates.models import Rate
    from apps.tenancy.scope import Scope

    call_command("migrate", verbosity=0)
    deck = workdir / "deck.csv"
    started = time.perf_counter()
    rows = make_deck(deck, args.rows, seed=1)
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"database: {connection.vendor} {connection.Database.__name__} ({url.split('@')[-1]})")
    print(
        f"deck: {rows} rows, {deck.stat().st_size / 1e6:.1f} MB, "
        f"generated in {time.perf_counter() - started:.1f}s"
    )

    table = services.create_rate_table(
        actor=Scope.system(), name=f"Bench {time.time():.0f}", purpose="buy", currency="USD"
    )
    report, read, total = run_import(table, deck, "full", args.chunk)
    assert report.ok, report.lines()[:20]
    live = Rate.objects.live().filter(table=table).count()
    print(
        f"\nfirst import (empty table): {total:.1f}s end to end, {rows / total:,.0f} rows/s, {live} rows live"
    )
    print(f"  read file {read:.2f}s; " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()))

    if not args.no_reimport:
        changed = workdir / "deck2.csv"
        make_deck(changed, args.rows, seed=2, change=0.05, drop=0.01)
        report, read, total = run_import(table, changed, "full", args.chunk)
        assert report.ok, report.lines()[:20]
        counts = report.diff["counts"]
        print(
            f"\nsecond import (full list over {live} live rows): {total:.1f}s end to end, "
            f"{rows / total:,.0f} rows/s"
        )
        print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        print(f"  read file {read:.2f}s; " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()))

    if connection.vendor == "mysql":
        floor = load_data_floor(url, deck)
        if floor is not None:
            print(
                f"\nLOAD DATA LOCAL INFILE floor (same CSV, one index, no validation): {floor:.1f}s, "
                f"{rows / floor:,.0f} rows/s"
            )
    if not args.keep and args.db:
        drop_database(url)


if __name__ == "__main__":
    main()
