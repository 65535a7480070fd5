"""What the benchmarks share: the machine they ran on, their own databases, the destination codes.

The scripts run as `python bench/<name>.py` from the repository; each puts the repository
on sys.path first, which makes this module importable as bench.common.
"""

import csv
import os
import platform
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Code:
    """A destination code of fixtures/destinations.csv and what its numbers look like."""

    prefix: str
    destination: str  # as written in a CSV cell
    length: int  # digits of a whole number
    reference: float  # a typical price per minute
    increments: str  # min,increment,free


def load_codes() -> list[Code]:
    with (ROOT / "fixtures" / "destinations.csv").open(newline="") as handle:
        return [
            Code(
                row["prefix"],
                f'"{row["destination"]}"' if "," in row["destination"] else row["destination"],
                int(row["number_length"]),
                float(row["reference_rate"]),
                "60,60,0"
                if row["prefix"].startswith("88")
                else "1,1,0"
                if row["prefix"][0] == "1"
                else "30,6,0",
            )
            for row in csv.DictReader(handle)
        ]


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by `text`: the same price for a prefix in every run."""
    return zlib.crc32(text.encode()) / 2**32


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def describe_machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return f"{model}, {os.cpu_count()} cores, {memory / 2**20:.0f} GiB, Python {platform.python_version()}"


def integers(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _on_server(url: str, sql: str) -> list:
    """Run one statement on the server of `url` outside its database; return its rows."""
    parsed = urlparse(url)
    if parsed.scheme.startswith("mysql"):
        import pymysql

        conn = pymysql.connect(
            host=parsed.hostname,
            port=parsed.port or 3306,
            user=parsed.username or "root",
            password=parsed.password or "",
        )
        with conn.cursor() as cur:
            cur.execute(sql)
            rows = list(cur.fetchall())
        conn.close()
        return rows
    if parsed.scheme.startswith("postgres"):
        import psycopg

        with psycopg.connect(
            f"host={parsed.hostname} port={parsed.port or 5432} user={parsed.username} dbname=postgres",
            autocommit=True,
        ) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []
    raise SystemExit(f"--database-url must be mysql:// or postgres://, not {url}")


def describe_server(url: str) -> str:
    """The database server's version and the settings a benchmark's figures depend on,
    to be printed with them (docs/BENCHMARKS.md names the server's settings of each run)."""
    if urlparse(url).scheme.startswith("mysql"):
        names = (
            "version",
            "innodb_buffer_pool_size",
            "innodb_log_file_size",
            "innodb_flush_log_at_trx_commit",
        )
        found = dict(_on_server(url, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN {names}"))
        pool, redo = int(found["innodb_buffer_pool_size"]), int(found["innodb_log_file_size"])
        return (
            f"MariaDB {found['version']}, buffer pool {pool / 2**30:.2g} GiB, "
            f"redo log {redo / 2**20:,.0f} MiB, "
            f"innodb_flush_log_at_trx_commit={found['innodb_flush_log_at_trx_commit']}"
        )
    [(version,)] = _on_server(url, "SHOW server_version")
    [(buffers,)] = _on_server(url, "SHOW shared_buffers")
    return f"PostgreSQL {version}, shared_buffers {buffers}"


def database_exists(url: str) -> bool:
    name = urlparse(url).path.lstrip("/")
    if urlparse(url).scheme.startswith("mysql"):
        return bool(
            _on_server(url, f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'")
        )
    return bool(_on_server(url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def create_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    drop_database(url)
    if urlparse(url).scheme.startswith("mysql"):
        _on_server(url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    else:
        _on_server(url, f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    name = urlparse(url).path.lstrip("/")
    if urlparse(url).scheme.startswith("mysql"):
        _on_server(url, f"DROP DATABASE IF EXISTS `{name}`")
    else:
        _on_server(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_django(url: str, node: str) -> None:
    """Set up Django on the database at `url` as node `node`, quiet, for a benchmark."""
    os.environ.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "smartswitch.settings"})
    os.environ.update({"DEBUG": "0", "NODE_NAME": node})
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
