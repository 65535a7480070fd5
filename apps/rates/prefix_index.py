"""A longest-prefix price index in one memory-mapped file, shared by every process of a node.

Pure Python plus marisa-trie, no ORM: `write_index` turns (prefix, periods) pairs into a
file, `open_index` maps it read-only. Every process that opens the same file shares its
pages through the page cache, so ten million prefixes cost the node one copy (tens of MB)
instead of a dict per process (~1.3 GB each).

File layout (little-endian, every section 8-byte aligned):

    header      magic, format, key/record/tariff/destination counts, table version,
                file size, then (offset, length) of each section below
    trie        marisa-trie bytes; each prefix gets a key id 0..keys-1
    refs        uint32 per key id: a record id when the prefix has one period (the common
                case), else MULTI | offset into `multi`
    multi       uint32: count, then that many record ids, newest start first
    rec_*       per record (a distinct period): from and to (int64 µs since the epoch, to
                open-ended = INT64 max), tariff id, destination id (uint32 each)
    rec_period  per record, the time profile it applies in (uint32 id into `per_*`, 0 = any
                time); empty when no row of the table names one
    tar_*       per distinct tariff: price and connection fee (int64 micro-units, exact),
                min/increment/free seconds (uint32)
    dest_*      destination names: uint32 offsets (count + 1) into a UTF-8 blob
    per_*       time profile names, the same way; name 0 is "" (any time)

Records, tariffs and names are deduplicated: a deck has few distinct (price, fee, terms)
combinations and few destination names, so the per-prefix cost is the trie plus 4 bytes.

Time-of-week prices (a rate's period: weekend, offpeak) are records of the same prefix that
name a time profile. A lookup given the profiles in force (apps.rates.time_windows.InForce)
takes, among the prefix's records whose dates contain the moment, the one of the most
specific profile in force, else the one without a profile; a prefix with neither at that
moment is passed over for a shorter one, as a closed code is. Only the profiles' names are
in the file: what "weekend" means is read at lookup time, so a profile's new hours apply
without a rebuild. A table without periods is looked up by the same code as before
(`_find`), so periods cost it nothing.
"""

import contextlib
import mmap
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import marisa_trie

from apps.core.money import MONEY_PLACES
from apps.rates.tariffs import Tariff
from apps.rates.time_windows import ANY_TIME, InForce

MAGIC = b"SSPFXIDX"
FORMAT = 2  # 2: time-of-week periods (rec_period, per_*)
MULTI = 0x8000_0000
OPEN_END = 2**63 - 1
UINT32_MAX = 2**32 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

# (name, array typecode) in file order; the header lists their offsets in the same order.
SECTIONS = (
    ("trie", "B"),
    ("refs", "I"),
    ("multi", "I"),
    ("rec_from", "q"),
    ("rec_to", "q"),
    ("rec_tariff", "I"),
    ("rec_dest", "I"),
    ("rec_period", "I"),
    ("tar_price", "q"),
    ("tar_fee", "q"),
    ("tar_min", "I"),
    ("tar_inc", "I"),
    ("tar_free", "I"),
    ("dest_offsets", "I"),
    ("dest_blob", "B"),
    ("per_offsets", "I"),
    ("per_blob", "B"),
)
# magic, format, sections, keys, records, tariffs, dests, periods, version, size
HEADER = struct.Struct("<8sIIQQQQQQQ")
SECTION = struct.Struct("<QQ")
HEADER_SIZE = HEADER.size + SECTION.size * len(SECTIONS)

# The arrays are written and mapped in native order; the magic alone would not catch a
# big-endian reader, so refuse to run there rather than return wrong prices.
if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("The prefix index file format is little-endian.")


class IndexFormatError(Exception):
    """The file is not a complete prefix index of a format this code reads."""


@dataclass(frozen=True, slots=True)
class Period:
    """One price of a prefix over [effective_from, effective_to); `to` None is open-ended.

    `period` names the time profile (weekend, offpeak) it applies in; "" is any time.
    """

    tariff: Tariff
    effective_from: datetime
    effective_to: datetime | None = None
    destination: str = ""
    period: str = ""


@dataclass(frozen=True, slots=True)
class Match:
    """What applies to a number at a moment: the prefix that matched, its dates and its
    time period ("" for a price of any time)."""

    prefix: str
    tariff: Tariff
    destination: str
    effective_from: datetime
    effective_to: datetime | None
    period: str = ""


@dataclass(frozen=True, slots=True)
class BuildStats:
    keys: int
    records: int
    tariffs: int
    destinations: int
    size: int  # bytes
    periods: int = 0  # distinct time profiles named


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way), of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("Price periods are compared in UTC; pass an aware datetime.")
    return (moment - EPOCH) // ONE_MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def to_micro_units(amount: Decimal, what: str) -> int:
    """An amount as an integer count of micro-units; refuses what would not round-trip."""
    scaled = Decimal(amount).scaleb(MONEY_PLACES)
    if scaled != scaled.to_integral_value() or not 0 <= scaled < 2**63:
        raise ValueError(f"{what} {amount} is not a non-negative amount with {MONEY_PLACES} decimals.")
    return int(scaled)


def _uint32(value: int, what: str) -> int:
    if not 0 <= value <= UINT32_MAX:
        raise ValueError(f"{what} {value} does not fit the index.")
    return value


class _Builder:
    """Deduplicates tariffs, names and periods while the (prefix, periods) pairs stream in."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.refs = array("I")
        self.multi = array("I")
        self.records: dict[tuple[int, int, int, int, int], int] = {}
        self.tariffs: dict[tuple[int, int, int, int, int], int] = {}
        self.destinations: dict[str, int] = {}
        self.periods: dict[str, int] = {"": 0}
        self.tariff_ids: dict[Tariff, int] = {}
        self.moments: dict[datetime, int] = {}

    def add(self, prefix: str, periods: Iterable[Period]) -> None:
        if not prefix or not prefix.isascii() or not prefix.isdigit():
            raise ValueError(f"Prefix {prefix!r} is not a string of digits.")
        periods = list(periods)
        if len(periods) > 1:
            # Newest start first: a lookup takes the first period that contains the moment,
            # which is also what the database's (prefix, -effective_from) order gives.
            periods.sort(key=_start, reverse=True)
        ids = [self.record(period) for period in periods]
        if not ids:
            return
        if len(ids) == 1:
            self.refs.append(ids[0])
        else:
            if len(self.multi) >= MULTI:
                raise ValueError("Too many multi-period prefixes for one index.")
            self.refs.append(MULTI | len(self.multi))
            self.multi.append(len(ids))
            self.multi.extend(ids)
        self.keys.append(prefix)

    def record(self, period: Period) -> int:
        # Tariffs and start times repeat across most rows of a deck: converting each distinct
        # one once (Decimal scaling, datetime arithmetic) is most of what makes a build fast.
        tariff = self.tariff_ids.get(period.tariff)
        if tariff is None:
            tariff = self.tariff_ids[period.tariff] = self.tariff(period.tariff)
        start = self.moment(period.effective_from)
        end = OPEN_END if period.effective_to is None else self.moment(period.effective_to)
        if end <= start:
            raise ValueError(f"A period ends ({period.effective_to}) before it starts.")
        destination = self.destinations.get(period.destination)
        if destination is None:
            destination = self.destinations[period.destination] = len(self.destinations)
        profile = self.periods.get(period.period)
        if profile is None:
            profile = self.periods[period.period] = len(self.periods)
        key = (start, end, tariff, destination, profile)
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = len(self.records)
        return record

    def tariff(self, tariff: Tariff) -> int:
        key = (
            to_micro_units(tariff.price, "Price"),
            to_micro_units(tariff.connection_fee, "Connection fee"),
            _uint32(tariff.min_seconds, "Minimum seconds"),
            _uint32(tariff.increment_seconds, "Increment seconds"),
            _uint32(tariff.free_seconds, "Free seconds"),
        )
        return self.tariffs.setdefault(key, len(self.tariffs))

    def moment(self, value: datetime) -> int:
        found = self.moments.get(value)
        if found is None:
            found = self.moments[value] = micros(value)
        return found

    def sections(self) -> dict[str, bytes | array]:
        trie = marisa_trie.Trie(self.keys)
        if len(trie) != len(self.keys):
            raise ValueError("The same prefix was given twice; pass all its periods together.")
        # marisa numbers keys in its own order: move each prefix's ref to its key id.
        refs = array("I", bytes(4 * len(self.keys)))
        key_id = trie.key_id
        for prefix, ref in zip(self.keys, self.refs, strict=True):
            refs[key_id(prefix)] = ref
        columns = {name: array(code) for name, code in SECTIONS if code != "B"}
        with_periods = len(self.periods) > 1
        for start, end, tariff, destination, profile in self.records:
            columns["rec_from"].append(start)
            columns["rec_to"].append(end)
            columns["rec_tariff"].append(tariff)
            columns["rec_dest"].append(destination)
            if with_periods:
                columns["rec_period"].append(profile)
        for price, fee, minimum, increment, free in self.tariffs:
            columns["tar_price"].append(price)
            columns["tar_fee"].append(fee)
            columns["tar_min"].append(minimum)
            columns["tar_inc"].append(increment)
            columns["tar_free"].append(free)
        blobs = {}
        for section, names in (("dest", self.destinations), ("per", self.periods)):
            blob = blobs[section] = bytearray()
            columns[f"{section}_offsets"].append(0)
            for name in names:
                blob += name.encode()
                columns[f"{section}_offsets"].append(_uint32(len(blob), "Names size"))
        return {
            **columns,
            "trie": trie.tobytes(),
            "refs": refs,
            "multi": self.multi,
            "dest_blob": blobs["dest"],
            "per_blob": blobs["per"],
        }


def _start(period: Period) -> datetime:
    return period.effective_from


def _align(offset: int) -> int:
    return -(-offset // 8) * 8


def write_index(
    path: Path | str, items: Iterable[tuple[str, Iterable[Period]]], *, version: int = 0
) -> BuildStats:
    """Write the index of `items` to `path`, atomically: readers see the old file or the new one.

    Each prefix comes once with all its periods. The file is written beside `path` under a
    temporary name, flushed, and renamed over `path`; a process that has the old file open
    keeps reading it (its inode lives on) until it re-opens.
    """
    path = Path(path)
    builder = _Builder()
    for prefix, periods in items:
        builder.add(prefix, periods)
    sections = builder.sections()
    layout, offset = [], _align(HEADER_SIZE)
    for name, _code in SECTIONS:
        data = sections[name]
        length = len(data) * (data.itemsize if isinstance(data, array) else 1)
        layout.append((offset, length))
        offset = _align(offset + length)
    size = offset
    header = HEADER.pack(
        MAGIC,
        FORMAT,
        len(SECTIONS),
        len(builder.keys),
        len(builder.records),
        len(builder.tariffs),
        len(builder.destinations),
        len(builder.periods),
        version,
        size,
    ) + b"".join(SECTION.pack(*entry) for entry in layout)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(header)
            for (name, _code), (start, _length) in zip(SECTIONS, layout, strict=True):
                out.seek(start)
                out.write(sections[name])
            out.truncate(size)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; the web and worker users both read it
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return BuildStats(
        len(builder.keys),
        len(builder.records),
        len(builder.tariffs),
        len(builder.destinations),
        size,
        len(builder.periods) - 1,
    )


class PrefixIndex:
    """A read-only, memory-mapped prefix index; cheap to open, safe to share between processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with self.path.open("rb") as handle:
            # An empty file cannot be mapped; it is also not an index.
            if os.fstat(handle.fileno()).st_size < HEADER_SIZE:
                raise IndexFormatError(f"{self.path} is too short to be a prefix index.")
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        magic, fmt, count, keys, records, tariffs, dests, periods, version, size = HEADER.unpack_from(
            self._map
        )
        if magic != MAGIC or fmt != FORMAT or count != len(SECTIONS):
            raise IndexFormatError(f"{self.path} is not a prefix index of format {FORMAT}.")
        if size != len(self._map):
            raise IndexFormatError(f"{self.path} is {len(self._map)} bytes, its header says {size}.")
        self.version, self.key_count = version, keys
        self.record_count, self.tariff_count, self.destination_count = records, tariffs, dests
        whole = memoryview(self._map)
        self._views = [whole]
        for number, (name, code) in enumerate(SECTIONS):
            start, length = SECTION.unpack_from(self._map, HEADER.size + number * SECTION.size)
            view = whole[start : start + length]
            if code != "B":
                view = view.cast(code)
            self._views.append(view)
            setattr(self, f"_{name}", view)
        # map() reads the trie in place: its pages stay in the shared page cache.
        self._trie_map = marisa_trie.Trie()
        self._trie_map.map(self._trie)
        self._iter_prefixes = self._trie_map.iter_prefixes_with_ids
        self._tariff_cache: dict[int, Tariff] = {}
        # The time profiles named by the table's rows, by id (0: any time); a table without
        # any keeps the lookup of format 1.
        self.periods = tuple(self._name(self._per_offsets, self._per_blob, n) for n in range(periods))
        self.has_periods = len(self.periods) > 1 and len(self._rec_period) == records

    def __len__(self) -> int:
        return self.key_count

    def __enter__(self) -> "PrefixIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Unmap the file; lookups after this fail."""
        self._trie_map = self._iter_prefixes = None
        for view in reversed(getattr(self, "_views", [])):
            view.release()
        self._views = []
        # A caller may still hold a view; the map then goes when the last reference does.
        with contextlib.suppress(BufferError):
            self._map.close()

    def _find(self, number: str, at: int) -> tuple[str, int] | None:
        """(prefix, record id) of the longest prefix of `number` with a period containing `at`."""
        refs, rec_from, rec_to = self._refs, self._rec_from, self._rec_to
        # marisa yields prefixes shortest first; the longest that is in force wins.
        for prefix, key_id in reversed(list(self._iter_prefixes(number))):
            ref = refs[key_id]
            if ref < MULTI:
                if rec_from[ref] <= at < rec_to[ref]:
                    return prefix, ref
                continue
            start = ref - MULTI
            multi = self._multi
            for record in multi[start + 1 : start + 1 + multi[start]]:
                if rec_from[record] <= at < rec_to[record]:
                    return prefix, record
        return None

    def tariff(self, tariff_id: int) -> Tariff:
        tariff = self._tariff_cache.get(tariff_id)
        if tariff is None:
            # Cached per process: distinct tariffs are few, and Decimal building is the slow part.
            tariff = self._tariff_cache[tariff_id] = Tariff(
                price=Decimal(self._tar_price[tariff_id]).scaleb(-MONEY_PLACES),
                connection_fee=Decimal(self._tar_fee[tariff_id]).scaleb(-MONEY_PLACES),
                min_seconds=self._tar_min[tariff_id],
                increment_seconds=self._tar_inc[tariff_id],
                free_seconds=self._tar_free[tariff_id],
            )
        return tariff

    @staticmethod
    def _name(offsets, blob, name_id: int) -> str:
        return bytes(blob[offsets[name_id] : offsets[name_id + 1]]).decode()

    def destination_name(self, destination_id: int) -> str:
        return self._name(self._dest_offsets, self._dest_blob, destination_id)

    # `periods`, the time profiles in force (PeriodIndex), is ignored by a table without periods.

    def lookup(self, number: str, at: datetime, periods: InForce | None = None) -> Tariff | None:
        """The tariff of the longest prefix of `number` in force at `at`, or None."""
        found = self._find(number, micros(at))
        return None if found is None else self.tariff(self._rec_tariff[found[1]])

    def destination(self, number: str, at: datetime, periods: InForce | None = None) -> str | None:
        """The destination name of the prefix that `lookup` would use, or None."""
        found = self._find(number, micros(at))
        return None if found is None else self.destination_name(self._rec_dest[found[1]])

    def match(self, number: str, at: datetime, periods: InForce | None = None) -> Match | None:
        """Everything about the rate that applies: prefix, tariff, destination, dates, period."""
        found = self._find(number, micros(at))
        return None if found is None else self._match(*found)

    def _match(self, prefix: str, record: int) -> Match:
        end = self._rec_to[record]
        return Match(
            prefix=prefix,
            tariff=self.tariff(self._rec_tariff[record]),
            destination=self.destination_name(self._rec_dest[record]),
            effective_from=from_micros(self._rec_from[record]),
            effective_to=None if end == OPEN_END else from_micros(end),
            period=self.periods[self._rec_period[record]] if self.has_periods else "",
        )


class PeriodIndex(PrefixIndex):
    """The index of a table with time-of-week prices: lookups take the profiles in force.

    A subclass rather than a test in every lookup, so that a table without periods pays
    nothing for them (open_index picks the class).
    """

    def lookup(self, number: str, at: datetime, periods: InForce | None = None) -> Tariff | None:
        """The tariff of the longest prefix of `number` in force at `at` under `periods`, or None
        (None periods: prices of any time only)."""
        found = self._find_periods(number, micros(at), periods)
        return None if found is None else self.tariff(self._rec_tariff[found[1]])

    def destination(self, number: str, at: datetime, periods: InForce | None = None) -> str | None:
        found = self._find_periods(number, micros(at), periods)
        return None if found is None else self.destination_name(self._rec_dest[found[1]])

    def match(self, number: str, at: datetime, periods: InForce | None = None) -> Match | None:
        found = self._find_periods(number, micros(at), periods)
        return None if found is None else self._match(*found)

    def _find_periods(self, number: str, at: int, periods: InForce | None) -> tuple[str, int] | None:
        """_find for a table with time periods: of the records of a prefix whose dates contain
        `at`, the one whose profile is in force and most specific, else the one of any time."""
        refs, rec_from, rec_to, rec_period, names = (
            self._refs,
            self._rec_from,
            self._rec_to,
            self._rec_period,
            self.periods,
        )
        multi = self._multi
        for prefix, key_id in reversed(list(self._iter_prefixes(number))):
            ref = refs[key_id]
            if ref < MULTI:
                records = (ref,)
            else:
                start = ref - MULTI
                records = multi[start + 1 : start + 1 + multi[start]]
            best, best_rank = None, None
            for record in records:
                if not rec_from[record] <= at < rec_to[record]:
                    continue
                profile = rec_period[record]
                if profile == 0:
                    rank = ANY_TIME
                elif periods is None or (rank := periods.rank(names[profile])) is None:
                    continue
                # Newest start first: of one profile's overlapping dates, the first wins.
                if best is None or rank < best_rank:
                    best, best_rank = record, rank
            if best is not None:
                return prefix, best
        return None


def open_index(path: Path | str) -> PrefixIndex:
    """Map the index file at `path` read-only (a PeriodIndex if its table has time periods)."""
    index = PrefixIndex(path)
    if not index.has_periods:
        return index
    # Mapping a file is cheap; the trie is read in place, not loaded.
    index.close()
    return PeriodIndex(path)
