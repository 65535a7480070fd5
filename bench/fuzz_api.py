"""Fuzz the REST API and call control with schemathesis, against a live server and the demo data.

Makes a throwaway SQLite database in a temporary directory, migrates it, loads the demo
(`manage.py loaddemo`, which prints an operator API key on its first run), starts the ASGI
application under uvicorn on a loopback port in production mode (DEBUG off), and runs
`schemathesis run` over the live schema (/api/v1/schema/) with every check, positive and
negative data, and all phases (examples, coverage, fuzzing, stateful). API operations are
called with the operator's key, call control with the demo node's secret. Exits with
schemathesis's status: 0 when nothing failed. Server-side tracebacks are printed at the end.

    .venv/bin/python bench/fuzz_api.py                      # about 3 minutes on 2 cores
    .venv/bin/python bench/fuzz_api.py --seed 7             # other cases than the default seed 1
    .venv/bin/python bench/fuzz_api.py --max-examples 100 -- --include-path-regex '/peers/'

Failures accepted on purpose are listed, with their reasons, in bench/fuzz_api_baseline.json;
--no-baseline reports them too. The temporary directory (database, server log, schemathesis's
JUnit and NDJSON reports) is deleted after a clean run and kept otherwise.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SCHEMATHESIS = Path(PYTHON).with_name("schemathesis")
# Findings accepted on purpose, each entry with its reason (see docs/API.md). schemathesis keys a
# "schema-violating request accepted" finding by operation and status only: while an operation
# is listed here, no other accepted invalid input of that operation is reported either.
BASELINE = ROOT / "bench" / "fuzz_api_baseline.json"

# Checks the API does not promise, each for a stated reason; everything else runs.
EXCLUDED_CHECKS = {
    # "Schema-conforming data is accepted": our filters name objects by id, and an id that
    # does not exist (or that the key may not see) is a 400 naming the filter, as django-filter
    # does, although any integer conforms to the schema.
    "positive_data_acceptance",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _wait_for(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"uvicorn did not start:\n{log.read_text()}")
            time.sleep(0.2)


def _key_of_a(scope: str, env: dict) -> str:
    """A new API key of the first demo reseller, or of the first demo reseller's first customer."""
    find = (
        "from apps.tenancy.models import Reseller; "
        "reseller = Reseller.objects.order_by('pk').first(); "
        + (
            "owner = dict(reseller=reseller); "
            if scope == "reseller"
            else "owner = dict(peer=reseller.peers.filter(role='customer').order_by('pk').first()); "
        )
    )
    output = _manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        find + "from apps.tenancy.scope import Scope; from apps.tenancy.services import create_api_key; "
        f"print(create_api_key(actor=Scope.system(), name='fuzz', scope='{scope}', **owner)[1])",
    )
    return output.strip().splitlines()[-1]


def _config(path: Path, *, base: str, api_key: str, node_secret: str, args) -> None:
    """schemathesis.toml: the operator key for the API, the node's secret for call control."""
    path.write_text(
        f"""
base-url = "{base}"
workers = {args.workers}
seed = {args.seed}

[generation]
max-examples = {args.max_examples}
mode = "all"

[[operations]]
include-path-regex = "^/api/"
headers = {{ Authorization = "Bearer {api_key}" }}

[[operations]]
include-path-regex = "^/call-control/"
headers = {{ Authorization = "Bearer {node_secret}" }}
"""
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-examples", type=int, default=15, help="cases per operation and phase (15)")
    parser.add_argument("--workers", type=int, default=2, help="concurrent schemathesis workers (2)")
    parser.add_argument("--cdrs", type=int, default=300, help="demo CDRs to generate (300)")
    parser.add_argument(
        "--seed", type=int, default=1, help="schemathesis's random seed (1: the same cases every run)"
    )
    parser.add_argument(
        "--key",
        choices=["operator", "reseller", "customer"],
        default="operator",
        help="whose API key the API is called with (operator: loaddemo's)",
    )
    parser.add_argument(
        "--checks", default="all", help="schemathesis checks (all, less those in EXCLUDED_CHECKS)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help=f"report also what {BASELINE.name} accepts"
    )
    parser.add_argument("extra", nargs="*", help="more `schemathesis run` options, after --")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="smartswitch-fuzz-"))
    (work / "static").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        SMARTSWITCH_VAR_DIR=str(work),
        DEBUG="0",
        SECRET_KEY="fuzz-only-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        REDIS_URL="",
    )
    started = time.perf_counter()
    _manage(env, "migrate", "--no-input")
    demo = _manage(env, "loaddemo", "--cdrs", str(args.cdrs))
    match = re.search(r"Operator API key \(shown once, keep it\): (\S+)", demo)
    if match is None:
        sys.exit(f"loaddemo printed no operator API key:\n{demo}")
    api_key = match[1] if args.key == "operator" else _key_of_a(args.key, env)
    node_secret = (
        _manage(
            env,
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; from apps.nodes.models import Node; "
            "print(Node.objects.get(name=settings.NODE_NAME).call_control_secret)",
        )
        .strip()
        .splitlines()[-1]
    )
    print(f"demo loaded in {time.perf_counter() - started:.0f}s into {work}", flush=True)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = work / "uvicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "smartswitch.asgi:application",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(port, server, log)
        config = work / "schemathesis.toml"
        _config(config, base=base, api_key=api_key, node_secret=node_secret, args=args)
        command = [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{base}/api/v1/schema/?format=json",
            "--checks",
            args.checks,
            "--exclude-checks",
            ",".join(sorted(EXCLUDED_CHECKS)),
            # Every case of every operation runs: a first failed check does not hide the rest.
            "--continue-on-failure",
            *([] if args.no_baseline else ["--baseline", str(BASELINE)]),
            "--report",
            "junit,ndjson",
            "--report-dir",
            str(work / "report"),
            *args.extra,
        ]
        status = subprocess.run(command, cwd=work, check=False).returncode
    finally:
        server.terminate()
        server.wait(timeout=30)
    tracebacks = log.read_text()
    if "Traceback" in tracebacks:
        print(f"\nServer log ({log}):\n{tracebacks}")
        status = status or 1
    elapsed = time.perf_counter() - started
    if status == 0:
        shutil.rmtree(work)
        print(f"\nfuzzed in {elapsed:.0f}s: no failures")
    else:
        print(f"\nfuzzed in {elapsed:.0f}s; database, server log and reports kept in {work}")
    return status


if __name__ == "__main__":
    sys.exit(main())
