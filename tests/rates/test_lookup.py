"""The node's prefix indexes: built from live rows, swapped whole, re-opened on a new version."""

import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from apps.rates import lookup
from apps.rates.models import Rate, RateTable
from apps.rates.prefix_index import open_index
from tests.factories import make_rate_table

START = timezone.now().replace(microsecond=0) - timedelta(days=30)


@pytest.fixture(autouse=True)
def index_dir(tmp_path, settings):
    settings.PREFIX_INDEX_DIR = tmp_path / "prefix-index"
    lookup.forget_indexes()
    yield settings.PREFIX_INDEX_DIR
    lookup.forget_indexes()


def add(table, prefix, price, *, version_from=0, version_to=None, start=START, end=None, destination=""):
    return Rate.objects.create(
        table=table,
        prefix=prefix,
        destination=destination,
        price=Decimal(price),
        connection_fee=Decimal("0.01"),
        min_seconds=30,
        increment_seconds=6,
        effective_from=start,
        effective_to=end,
        version_from=version_from,
        version_to=version_to,
    )


def switch(table, version):
    RateTable.objects.filter(pk=table.pk).update(live_version=version)


def test_rate_for_returns_tariff_and_destination_of_the_longest_live_prefix(db):
    table = make_rate_table("Lookup")
    add(table, "44", "0.02", destination="United Kingdom")
    add(table, "447", "0.08", destination="United Kingdom Mobile")
    now = timezone.now()
    match = lookup.rate_for(table, "447700900123", now)
    assert (match.prefix, match.destination, match.tariff.price) == (
        "447",
        "United Kingdom Mobile",
        Decimal("0.08"),
    )
    assert (match.tariff.connection_fee, match.tariff.min_seconds, match.tariff.increment_seconds) == (
        Decimal("0.01"),
        30,
        6,
    )
    assert lookup.rate_for(table.pk, "33123", now) is None


def test_the_index_agrees_with_the_live_rows_in_force(db):
    table = make_rate_table("Agrees")
    close = START + timedelta(days=10)
    add(table, "49", "0.02", end=close, destination="Germany")
    add(table, "49", "0.025", start=close, destination="Germany")
    add(table, "4915", "0.09", end=close, destination="Germany Mobile")  # closed code
    index = lookup.get_index(table.pk)
    for at in (START, close - timedelta(seconds=1), close, timezone.now()):
        in_force = Rate.objects.live().effective_at(at).filter(table=table)
        expected = max((r for r in in_force if "4915123".startswith(r.prefix)), key=lambda r: len(r.prefix))
        found = index.match("4915123", at)
        assert (found.prefix, found.tariff.price, found.destination) == (
            expected.prefix,
            expected.price,
            expected.destination,
        )


def test_staged_rows_of_the_next_version_are_invisible_until_the_switch(db):
    table = make_rate_table("Staged")
    add(table, "33", "0.01", version_to=1)  # replaced by version 1
    add(table, "33", "0.03", version_from=1)  # staged by an import
    add(table, "336", "0.07", version_from=1)  # a new code in version 1
    now = timezone.now()

    lookup.rebuild_index(table.pk)
    assert lookup.rate_for(table, "33612345", now).tariff.price == Decimal("0.01")

    switch(table, 1)
    path = lookup.rebuild_index(table.pk)
    assert path.name == f"table-{table.pk}-v1.idx"
    assert [p.name for p in path.parent.glob("*.idx")] == [path.name]  # the old version is dropped
    with open_index(path) as index:
        assert index.match("33612345", now).prefix == "336"
        assert index.lookup("3312", now).price == Decimal("0.03")


def test_an_open_process_picks_up_a_rebuilt_version(db):
    table = make_rate_table("Rebuilt")
    add(table, "1", "0.01", version_to=1)
    add(table, "1", "0.02", version_from=1)
    now = timezone.now()
    before = lookup.get_index(table.pk)  # no file yet: built on first use
    assert (before.version, before.lookup("1212", now).price) == (0, Decimal("0.01"))

    switch(table, 1)
    lookup.rebuild_index(table.pk)
    assert lookup.get_index(table.pk) is before  # within the re-check period: no query, same map
    after = lookup.get_index(table.pk, max_age=0)
    assert (after.version, after.lookup("1212", now).price) == (1, Decimal("0.02"))
    # The old map still answers for whoever holds it, though its file is gone.
    assert before.lookup("1212", now).price == Decimal("0.01")


def test_a_switched_table_answers_from_the_old_version_until_its_index_is_built(db, monkeypatch):
    table = make_rate_table("Pending")
    add(table, "1", "0.01", version_to=1)
    add(table, "1", "0.02", version_from=1)
    now = timezone.now()
    lookup.get_index(table.pk)
    switch(table, 1)
    assert lookup.get_index(table.pk, max_age=0).version == 0  # the rebuild task has not run yet
    # A node that never gets the task builds the file itself once the grace period is over.
    monkeypatch.setattr(lookup, "STALE_GRACE_SECONDS", 0)
    index = lookup.get_index(table.pk, max_age=0)
    assert (index.version, index.lookup("1", now).price) == (1, Decimal("0.02"))


def test_readers_never_open_a_partial_file_while_versions_are_rebuilt(db, index_dir):
    table = make_rate_table("Swap")
    for number in range(300):
        add(table, f"44{number:03d}", "0.01", version_to=1)
        add(table, f"44{number:03d}", "0.02", version_from=1, version_to=2)
        add(table, f"44{number:03d}", "0.03", version_from=2)
    lookup.rebuild_index(table.pk)
    opened, failures, done = [], [], threading.Event()

    def read():
        while not done.is_set():
            for path in index_dir.glob("table-*.idx"):
                try:
                    with open_index(path) as index:
                        opened.append((index.version, len(index)))
                except FileNotFoundError:
                    pass  # an older version unlinked between glob and open: fine
                except Exception as exc:
                    failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in (1, 2):
            switch(table, version)
            lookup.rebuild_index(table.pk)
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert opened and all(keys == 300 for _version, keys in opened)
    assert [p.name for p in index_dir.iterdir() if p.suffix != ".lock"] == [f"table-{table.pk}-v2.idx"]


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from apps.rates.prefix_index import open_index

    path, number, at = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
    index = open_index(path)
    price = index.lookup(number, at).price
    for key in index._trie_map.iterkeys():  # touch every page the lookups could
        index.lookup(key, at)
    shared = 0
    with open("/proc/self/smaps") as smaps:
        inside = False
        for line in smaps:
            if "-" in line.split(" ", 1)[0]:
                inside = line.rstrip().endswith(path)
            elif inside and line.startswith("Shared_Clean:"):
                shared += int(line.split()[1])
    print(price, shared)
    """
)


def test_two_processes_share_one_index_file(db):
    table = make_rate_table("Shared")
    for number in range(5000):
        add(table, f"1{number:04d}", f"0.{number:04d}")
    now = timezone.now()
    index = lookup.get_index(table.pk)
    for number in range(5000):
        index.lookup(f"1{number:04d}55", now)  # map its pages in this process too
    path = str(lookup.index_path(table.pk, 0))
    child = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", CHILD, path, "1123499", now.isoformat()],
        capture_output=True,
        text=True,
        check=True,
        cwd=django_settings.BASE_DIR,
    )
    price, shared_kb = child.stdout.split()
    assert Decimal(price) == index.lookup("1123499", now).price == Decimal("0.1234")
    # Pages the other process maps too are counted as shared: one copy for both.
    assert int(shared_kb) > 0


def test_a_build_read_in_small_pages_keeps_every_prefix_whole(db, monkeypatch):
    table = make_rate_table("Pages")
    for number in range(7):
        for day in range(number % 4 + 1):  # 1 to 4 periods per prefix, crossing page ends
            add(table, f"4{number}", f"0.0{day}", start=START + timedelta(days=day))
    monkeypatch.setattr(lookup, "ROWS_PER_FETCH", 3)
    built = dict(lookup.periods_at_version(table.pk, 0))
    assert sorted(built) == [f"4{number}" for number in range(7)]
    assert [len(built[f"4{number}"]) for number in range(7)] == [1, 2, 3, 4, 1, 2, 3]
    # The prefix with more periods than a page holds is read in one go.
    assert [p.tariff.price for p in built["43"]] == [Decimal(f"0.0{day}") for day in range(4)]
