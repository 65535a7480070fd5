"""How big, how fast to build and how fast to query the longest-prefix price index is.

Generates N distinct numeric prefixes shaped like a wholesale deck (the country and
destination codes of fixtures/destinations.csv, extended by 1-7 digits down to number
blocks), gives 10% of them a past price change or an announced future price and closes
1%, builds the index file, then opens it in two fresh reader processes one after the
other (the second while the first still has it mapped, as a web and a worker process on
one node would) and reports for each: RSS and PSS growth from /proc/self/smaps_rollup
after opening and after the lookups, and lookups per second over random numbers, a fifth
of them misses. No database: the index is pure, and this measures it alone.

    .venv/bin/python bench/lookup.py --prefixes 1000000
    .venv/bin/python bench/lookup.py --prefixes 10000000 --lookups 500000
"""

import argparse
import csv
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.rates.prefix_index import Period, open_index, write_index  # noqa: E402
from apps.rates.tariffs import Tariff  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def memory() -> dict[str, int]:
    """Rss and Pss of this process in kB (Pss splits shared pages between their users)."""
    values = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name] = int(rest.split()[0])
    return values


def generate(count: int, seed: int) -> tuple[list[str], list]:
    """Distinct prefixes under real destination codes, and each one's periods."""
    rnd = random.Random(seed)
    with (ROOT / "fixtures" / "destinations.csv").open(newline="") as handle:
        roots = [
            (row["prefix"], row["destination"], Decimal(row["reference_rate"]))
            for row in csv.DictReader(handle)
        ]
    # A few hundred price points per root, as carriers quote per number range: prices,
    # and so tariffs and periods, repeat across prefixes the way they do in a real deck.
    tariffs = {}
    periods_of = {}
    periods_by_terms: dict[tuple, list] = {}
    prefixes: set[str] = set()
    while len(prefixes) < count:
        root, name, reference = rnd.choice(roots)
        prefix = root + str(rnd.randrange(10**7)).zfill(7)[: rnd.randint(1, 7)]
        if prefix in prefixes:
            continue
        prefixes.add(prefix)
        step = rnd.randrange(40)
        tariff = tariffs.get((root, step))
        if tariff is None:
            price = (reference * Decimal(80 + step) / 100).quantize(Decimal("0.000001"))
            tariff = tariffs[(root, step)] = Tariff(price=price, min_seconds=30, increment_seconds=6)
        destination = f"{name} {step}" if step < 8 else name
        roll = rnd.random()
        kind = 0 if roll < 0.05 else 1 if roll < 0.10 else 2 if roll < 0.11 else 3
        # Prefixes with the same terms share their period objects, as rows from one deck
        # share their tariff; it keeps the generator (not the index) from dominating the run.
        shared = periods_by_terms.get((root, step, kind))
        if shared is not None:
            periods_of[prefix] = shared
            continue
        if kind == 0:  # a price change twelve days ago
            change = NOW - timedelta(days=12)
            raised = Tariff(price=tariff.price + Decimal("0.0005"), min_seconds=30, increment_seconds=6)
            periods = [
                Period(tariff, NOW - timedelta(days=90), change, destination),
                Period(raised, change, None, destination),
            ]
        elif kind == 1:  # an increase announced for next week
            later = NOW + timedelta(days=7)
            raised = Tariff(price=tariff.price + Decimal("0.001"), min_seconds=30, increment_seconds=6)
            periods = [
                Period(tariff, NOW - timedelta(days=90), later, destination),
                Period(raised, later, None, destination),
            ]
        elif kind == 2:  # closed three days ago
            periods = [Period(tariff, NOW - timedelta(days=90), NOW - timedelta(days=3), destination)]
        else:
            periods = [Period(tariff, NOW - timedelta(days=90), None, destination)]
        periods_of[prefix] = periods_by_terms[(root, step, kind)] = periods
    keys = sorted(prefixes)
    return keys, [periods_of[key] for key in keys]


def numbers_for(keys: list[str], count: int, seed: int) -> list[str]:
    """Dialled numbers: 80% extend a known prefix to 11-13 digits, 20% start with 0 (misses)."""
    rnd = random.Random(seed + 1)
    numbers = []
    for _ in range(count):
        if rnd.random() < 0.8:
            prefix = rnd.choice(keys)
            numbers.append(prefix + str(rnd.randrange(10**13)).zfill(13)[: max(0, 12 - len(prefix))])
        else:
            numbers.append("0" + str(rnd.randrange(10**11)).zfill(11))
    return numbers


def reader(path: str, numbers_path: str, hold: bool) -> None:
    """Open the index in this fresh process, query it, print figures as key=value lines."""
    numbers = Path(numbers_path).read_text().split()
    before = memory()
    index = open_index(path)
    opened = memory()
    lookup = index.lookup
    timings = []
    # The first pass pays the page faults of a cold mapping; the second is the steady state.
    for _ in range(2):
        found = 0
        start = time.perf_counter()
        for number in numbers:
            if lookup(number, NOW) is not None:
                found += 1
        timings.append(time.perf_counter() - start)
    after = memory()
    print(f"open_rss_kb={opened['Rss'] - before['Rss']} open_pss_kb={opened['Pss'] - before['Pss']}")
    print(f"rss_kb={after['Rss'] - before['Rss']} pss_kb={after['Pss'] - before['Pss']}")
    print(f"lookups={len(numbers)} found={found} cold={timings[0]:.3f} warm={timings[1]:.3f}", flush=True)
    if hold:  # keep the mapping alive while the next reader measures its share
        sys.stdin.readline()


def run_reader(path: Path, numbers: Path, *, hold: bool) -> tuple[subprocess.Popen, dict[str, float]]:
    command = [sys.executable, __file__, "--reader", str(path), "--numbers", str(numbers)]
    child = subprocess.Popen(
        [*command, *(["--hold"] if hold else [])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    figures = {}
    for _ in range(3):
        for pair in child.stdout.readline().split():
            key, _, value = pair.partition("=")
            figures[key] = float(value)
    return child, figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prefixes", type=int, default=1_000_000, help="distinct prefixes (default 1000000)")
    parser.add_argument("--lookups", type=int, default=300_000, help="numbers looked up per reader")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where to write the index (default: a temporary directory)")
    parser.add_argument("--reader", help=argparse.SUPPRESS)
    parser.add_argument("--numbers", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        reader(args.reader, args.numbers, args.hold)
        return

    print(f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs")
    print(f"Python {platform.python_version()} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="smartswitch-lookup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "bench.idx"
    start = time.perf_counter()
    keys, periods = generate(args.prefixes, args.seed)
    took = time.perf_counter() - start
    print(f"generated {len(keys):,} prefixes, {sum(map(len, periods)):,} periods in {took:.1f} s")
    numbers_path = workdir / "numbers.txt"
    numbers_path.write_text("\n".join(numbers_for(keys, args.lookups, args.seed)))
    start = time.perf_counter()
    stats = write_index(path, zip(keys, periods, strict=True))
    build = time.perf_counter() - start
    print(
        f"build: {build:.1f} s · file {stats.size / 1e6:.1f} MB · {stats.records:,} distinct periods, "
        f"{stats.tariffs:,} tariffs, {stats.destinations:,} destination names"
    )
    del keys, periods

    first, a = run_reader(path, numbers_path, hold=True)
    second, b = run_reader(path, numbers_path, hold=False)
    first.communicate("\n")
    second.communicate()
    for label, fig in (("first reader", a), ("second reader", b)):
        cold, warm = (fig[key] / fig["lookups"] * 1e6 for key in ("cold", "warm"))
        opened = f"+{fig['open_rss_kb'] / 1024:.1f} MB RSS / +{fig['open_pss_kb'] / 1024:.1f} MB PSS"
        print(
            f"{label}: open {opened}; "
            f"after 2 x {fig['lookups']:,.0f} lookups ({fig['found'] / fig['lookups']:.0%} found) "
            f"+{fig['rss_kb'] / 1024:.1f} MB RSS / +{fig['pss_kb'] / 1024:.1f} MB PSS; "
            f"cold {cold:.2f} µs, warm {warm:.2f} µs per lookup ({1e6 / warm:,.0f} lookups/s)"
        )
    with open_index(path) as index:
        number = numbers_path.read_text().split()[0]
        print(f"sample: {number} -> {index.match(number, NOW)}")
    if not args.dir:
        path.unlink()
        numbers_path.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
