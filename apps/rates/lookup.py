"""Which rate applies to a number: the rate tables' prefix indexes on this node.

Each table version gets one file, `table-<id>-v<version>.idx` under PREFIX_INDEX_DIR,
built from the rows readers see at that version and memory-mapped by every process of the
node (see prefix_index for the format). Naming files by version makes a switch cheap to
notice: a process asks the database for the table's live_version at most every
RECHECK_SECONDS and opens the matching file when the number moved.

After an import activates a version, `rebuild_index` (a task) writes the new file; until it
is there, processes keep answering from the version they have (a call-control answer
cannot wait a minute for ten million rows). A process with no file at all builds one
itself, and so does one whose newer file has not appeared within STALE_GRACE_SECONDS, which
covers a node that missed the task. A file of an older format (written before an upgrade)
is rebuilt in place.

Time-of-week prices (a rate's period: weekend, offpeak) are chosen on the clock of the
peer whose price list it is (`zone`: the customer's for sell prices, the supplier's for buy
prices). What each period's hours are is read from the time profiles, which this module
keeps per process and re-reads every RECHECK_SECONDS; the index files hold only the names.
"""

import fcntl
import logging
import threading
import time
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from django.conf import settings
from django.db.models import Q

from apps.rates.models import Rate, RateTable, TimeProfile
from apps.rates.prefix_index import (
    FORMAT,
    MAGIC,
    IndexFormatError,
    Match,
    Period,
    PrefixIndex,
    open_index,
    write_index,
)
from apps.rates.tariffs import Tariff
from apps.rates.time_windows import InForce, TimeProfiles

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0
STALE_GRACE_SECONDS = 120.0
ROWS_PER_FETCH = 20_000


def index_dir() -> Path:
    return Path(settings.PREFIX_INDEX_DIR)


def index_path(table_id: int, version: int) -> Path:
    return index_dir() / f"table-{table_id}-v{version}.idx"


def live_version(table_id: int) -> int:
    return RateTable.objects.values_list("live_version", flat=True).get(pk=table_id)


COLUMNS = (
    "prefix",
    "destination",
    "price",
    "connection_fee",
    "min_seconds",
    "increment_seconds",
    "free_seconds",
    "effective_from",
    "effective_to",
    "period",
)


def periods_at_version(table_id: int, version: int) -> Iterator[tuple[str, list[Period]]]:
    """The table's rows as Rate.objects.live() shows them at `version`, grouped by prefix.

    The version is pinned rather than read through the join to the table: the rows of one
    version never change (an import only adds rows of the next one and ends replaced rows
    at it), so the pages below, each its own query, add up to one consistent version even
    if a switch happens during a long build. Pages follow the prefix (keyset, on the lookup
    index) because the MySQL driver would otherwise hold the whole result in memory.
    """
    rows = (
        Rate.objects.filter(table_id=table_id, version_from__lte=version)
        .filter(Q(version_to__isnull=True) | Q(version_to__gt=version))
        .order_by("prefix", "effective_from")
    )
    tariffs: dict[tuple, Tariff] = {}  # one object per distinct tariff keeps the build small
    after = ""
    while True:
        page = list(rows.filter(prefix__gt=after).values_list(*COLUMNS)[:ROWS_PER_FETCH])
        if not page:
            return
        if len(page) == ROWS_PER_FETCH:
            # The last prefix may go on in the next page: leave it whole to the next one.
            last = page[-1][0]
            page = [row for row in page if row[0] != last] or list(
                rows.filter(prefix=last).values_list(*COLUMNS)
            )
        for prefix, group in groupby(page, key=itemgetter(0)):
            periods = []
            for _prefix, destination, price, fee, minimum, increment, free, start, end, period in group:
                key = (price, fee, minimum, increment, free)
                tariff = tariffs.get(key)
                if tariff is None:
                    tariff = tariffs[key] = Tariff(price, fee, minimum, increment, free)
                periods.append(Period(tariff, start, end, destination, period))
            yield prefix, periods
        after = page[-1][0]


@contextmanager
def _build_lock(table_id: int) -> Iterator[None]:
    """One builder per table on this node; the others wait and then find the file made."""
    directory = index_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"table-{table_id}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rebuild_index(table_id: int) -> Path:
    """Write this node's index file of the table's live version unless it exists; drop older ones.

    Idempotent, so the import job may enqueue it on every node and retries are harmless.
    Processes that still map an older file keep reading it (unlinking leaves its inode)
    until they notice the new version.
    """
    with _build_lock(table_id):
        version = live_version(table_id)
        path = index_path(table_id, version)
        if not path.exists() or not is_current_format(path):
            started = time.monotonic()
            stats = write_index(path, periods_at_version(table_id, version), version=version)
            logger.info(
                "Built the prefix index of rate table %s v%s: %s prefixes, %.1f MB in %.1f s",
                table_id,
                version,
                stats.keys,
                stats.size / 1e6,
                time.monotonic() - started,
            )
        for old in index_dir().glob(f"table-{table_id}-v*.idx"):
            if old != path and _version_of(old) < version:
                old.unlink(missing_ok=True)
    return path


def is_current_format(path: Path) -> bool:
    """True if the file at `path` is an index this code reads (not one of an older release)."""
    # Every format begins with the magic and the format number (HEADER's first two fields).
    with path.open("rb") as handle:
        head = handle.read(12)
    return len(head) == 12 and head[:8] == MAGIC and int.from_bytes(head[8:12], "little") == FORMAT


def _version_of(path: Path) -> int:
    return int(path.stem.rpartition("-v")[2])


@dataclass
class _Open:
    index: PrefixIndex
    checked_at: float
    stale_since: float | None = None


_open: dict[tuple, _Open] = {}
_refresh = threading.Lock()


def get_index(table_id: int, *, max_age: float = RECHECK_SECONDS) -> PrefixIndex:
    """This process's index of the table, re-checked against the live version every `max_age` s.

    Runs one small query per check; call it from synchronous code.
    """
    # Keyed by the setting as it is (tests move it): building a Path per call costs more
    # than the lookup itself.
    key = (settings.PREFIX_INDEX_DIR, table_id)
    entry = _open.get(key)
    if entry is not None and time.monotonic() - entry.checked_at < max_age:
        return entry.index
    with _refresh:
        entry = _open.get(key)
        now = time.monotonic()
        if entry is not None and now - entry.checked_at < max_age:
            return entry.index  # another thread refreshed it while we waited
        version = live_version(table_id)
        if entry is not None and entry.index.version == version:
            entry.checked_at, entry.stale_since = now, None
            return entry.index
        try:
            index = open_index(index_path(table_id, version))
        except IndexFormatError:
            # A file of the release before an upgrade: rebuilt in place, once, under the lock.
            index = open_index(rebuild_index(table_id))
        except FileNotFoundError:
            if entry is not None and now - (entry.stale_since or now) < STALE_GRACE_SECONDS:
                if entry.stale_since is None:
                    logger.warning(
                        "Rate table %s is at v%s; answering from v%s until its index is built",
                        table_id,
                        version,
                        entry.index.version,
                    )
                entry.checked_at, entry.stale_since = now, entry.stale_since or now
                return entry.index
            index = open_index(rebuild_index(table_id))
        # The replaced index is not closed: another thread may be inside a lookup on it.
        # Dropping the last reference unmaps it.
        _open[key] = _Open(index, checked_at=now)
        return index


def forget_indexes() -> None:
    """Drop this process's open indexes and time profiles (tests, and after PREFIX_INDEX_DIR
    changes)."""
    with _refresh:
        _open.clear()
    forget_time_profiles()


# --- time profiles ---------------------------------------------------------------------------


@dataclass
class _Profiles:
    profiles: TimeProfiles
    checked_at: float


_profiles: _Profiles | None = None
# Not _refresh: a process building a large index under that one must not hold calls' clocks up.
_profiles_lock = threading.Lock()


def time_profiles(*, max_age: float = RECHECK_SECONDS) -> TimeProfiles:
    """Every time profile, compiled; re-read from the database at most every `max_age` s."""
    global _profiles
    entry = _profiles
    now = time.monotonic()
    if entry is not None and now - entry.checked_at < max_age:
        return entry.profiles
    with _profiles_lock:
        entry = _profiles
        if entry is not None and now - entry.checked_at < max_age:
            return entry.profiles
        rows = TimeProfile.objects.values_list("pk", "name", "windows")
        _profiles = _Profiles(TimeProfiles(rows), checked_at=time.monotonic())
        return _profiles.profiles


def forget_time_profiles() -> None:
    """Drop this process's time profiles (tests; the next lookup reads them again)."""
    global _profiles
    _profiles = None


def default_zone() -> tzinfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def periods_at(index: PrefixIndex, at: datetime, zone: tzinfo | None) -> InForce | None:
    """The time profiles in force at `at` on `zone`'s clock, if `index` has periods (else None:
    a table without them costs no profile and no clock)."""
    if not index.has_periods:
        return None
    return time_profiles().at(at, zone or default_zone())


def rate_for(
    table: RateTable | int, number: str, at: datetime, *, zone: tzinfo | None = None
) -> Match | None:
    """The rate of `table` that applies to `number` at `at`: prefix, tariff, destination, dates
    and time period, this chosen on the clock of `zone` (the price list's peer; default: the
    installation's TIME_ZONE)."""
    table_id = table if isinstance(table, int) else table.pk
    index = get_index(table_id)
    return index.match(number, at, periods_at(index, at, zone))
