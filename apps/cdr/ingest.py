"""CDRs in: OpenSIPS's `acc` and `missed_calls` rows become `Cdr` rows, each exactly once.

What OpenSIPS writes (acc with `do_accounting("db", "cdr|missed|failed")`, our columns
through `extra_fields`):

- `acc`: one row per call, at its end: the answered call's CDR (`time` = answer time,
  `setuptime` = answer - arming time in seconds, `ms_duration` exact) or, for a call that
  failed, the final negative reply (`time` = when it was sent).
- `missed_calls`: one row per failed branch, the last one included: one supplier attempt.
  (OpenSIPS writes one too when the script rejects the call itself, with no supplier:
  that outcome is the call's acc row, so such a row is deleted without a CDR.)

What we make of them:

- every `acc` row becomes the call's customer-side CDR (customer = `peer_id`), unrated:
  the billing loop prices it, charges it if it was answered and releases the call's
  reservation. An answered call's CDR carries the supplier and gateway that answered. A
  failed call's CDR carries none: its attempts do, one CDR per `missed_calls` row;
- every `missed_calls` row becomes a supplier-only attempt: no customer (the customer's CDR
  list shows each call once, and nothing is charged or released twice), the supplier,
  gateway and SIP code of the branch, and already rated at zero cost, so the rater never
  takes it. Quality statistics (ASR per supplier and destination) count every attempt:
  the failed branches from these rows, the answered one from the call's CDR.

A row that cannot be mapped (an unknown customer or supplier id, a SIP code that is not
one, no time) still becomes a CDR, in the rating-error state with the reason: the admin
lists it and nothing is dropped. An unknown node or a malformed source address is stored
empty and logged; it changes no money.

Exactly once, on one server and across Galera nodes: a batch claims rows with SELECT … FOR
UPDATE SKIP LOCKED (another ingester skips them instead of waiting), inserts their CDRs
and deletes the rows in one transaction. Auto-increment ids are not in commit order across
Galera nodes, so "the last id seen" would lose rows; deleting what was imported cannot.
Galera does not share row locks: two nodes may claim the same row; both then delete it and
insert a CDR with the same `source_ref` (unique), so the second commit fails certification
and retry_on_conflict replays its batch without that row. A replayed row whose CDR exists
is only deleted.

Times: OpenSIPS writes DATETIME in the node's local time; nodes run in UTC (deploy/), and
the columns are read as UTC like every other datetime of the product. acc cuts `time` and
`created` to the second; only `ms_duration` is exact. The config also writes `setup_ms` (the
INVITE's arrival) and `answer_ms` (the first 200 OK), Unix epoch milliseconds, and where a
row has them the CDR's times are exact to the millisecond: created_at = setup_ms,
answered_at = answer_ms, ended_at = answered_at + ms_duration (a failure's ended_at stays
its final reply's whole second, never before created_at). Rows of a config before those
columns have NULL there and map from the whole seconds as before. A value more than a day
from the row's own `time` is no epoch-ms of this call (seconds or microseconds, garbage),
and an INVITE cannot follow its answer or final reply: either is a rating error with the
reason, the row's whole seconds standing in.
"""

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from apps.cdr.models import Cdr
from apps.core.db import batches, insert_rows, retry_on_conflict
from apps.core.money import money
from apps.nodes.models import Node
from apps.opensips.models import Acc, AccountingRow, MissedCall
from apps.peers.models import Gateway, Peer
from apps.reports import rollups

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# A backlog import waits this many seconds times the batches in a row that gave up on write
# conflicts, and stops after GIVE_UP_LIMIT of them (as the rater does).
CONFLICT_PAUSE = 0.5
GIVE_UP_LIMIT = 10
# Rows of a node whose heartbeat is older than this are imported by any node.
TAKEOVER_AFTER = timedelta(minutes=2)
ERROR_LENGTH = Cdr._meta.get_field("rating_error").max_length
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
SECOND = timedelta(seconds=1)
# How far an exact time may lie from the row's whole-second `time` (a long ringing, a chain
# of failovers): further, the value is not this call's epoch milliseconds.
EXACT_TIME_REACH = timedelta(days=1)
# A ring later than this after the INVITE is a clock or config fault, not a delay (tm gives
# up an unanswered INVITE far sooner): such a CDR gets no post-dial delay.
MAX_POST_DIAL_DELAY_MS = 10 * 60 * 1000


@dataclass
class IngestResult:
    calls: int = 0  # acc rows -> customer-side CDRs
    attempts: int = 0  # missed_calls rows -> supplier attempts
    errors: int = 0  # of those, CDRs in the rating-error state
    replayed: int = 0  # rows whose CDR already existed: deleted only
    unrouted: int = 0  # missed_calls rows of no supplier (the call's acc row tells it): deleted only
    full: bool = False  # a table had a whole batch: more may be waiting

    @property
    def rows(self) -> int:
        return self.calls + self.attempts + self.replayed + self.unrouted

    def add(self, other: "IngestResult") -> None:
        for name in ("calls", "attempts", "errors", "replayed", "unrouted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.full = other.full


@dataclass
class Directory:
    """What mapping needs to know of our objects, read once per batch."""

    nodes: dict[str, int] = field(default_factory=dict)
    customers: set[int] = field(default_factory=set)
    suppliers: set[int] = field(default_factory=set)
    gateways: dict[int, int] = field(default_factory=dict)  # gateway id -> its peer id

    @classmethod
    def load(cls, rows: list[AccountingRow]) -> "Directory":
        peer_ids = {r.peer_id for r in rows} | {r.supplier_id for r in rows}
        peers = Peer.objects.filter(pk__in=peer_ids - {None}).values_list("pk", "role")
        return cls(
            nodes=dict(Node.objects.filter(name__in={r.node for r in rows}).values_list("name", "pk")),
            customers={pk for pk, role in peers if role in (Peer.Role.CUSTOMER, Peer.Role.USER)},
            suppliers={pk for pk, role in peers if role in (Peer.Role.SUPPLIER, Peer.Role.USER)},
            gateways=dict(
                Gateway.objects.filter(pk__in={r.gateway_id for r in rows} - {None}).values_list(
                    "pk", "peer_id"
                )
            ),
        )


def source_ref(row: AccountingRow) -> str:
    kind = "acc" if isinstance(row, Acc) else "missed"
    return f"{kind}:{row.pk}:{row.time:%Y%m%d%H%M%S}" if row.time else f"{kind}:{row.pk}:-"


def _source_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip())) if value.strip() else None
    except ValueError:
        logger.warning("accounting row with a malformed source address %r", value)
        return None


def _exact_time(row: AccountingRow, column: str, near: datetime, problems: list[str]) -> datetime | None:
    """The row's `column` (Unix epoch ms, NULL from an older config) as an aware UTC datetime."""
    value = getattr(row, column)
    if value is None:
        return None
    try:
        ms = int(value)
    except (TypeError, ValueError):
        ms = None
    # Compared as integers first: an absurd value would overflow datetime.
    if ms is None or abs(ms - (near - EPOCH) // MILLISECOND) > EXACT_TIME_REACH // MILLISECOND:
        problems.append(f"{column} {value!r} is not epoch milliseconds near the row's time")
        return None
    return EPOCH + ms * MILLISECOND


def _post_dial_delay(row: AccountingRow) -> int | None:
    """Milliseconds from the INVITE to its first ringing or answer; None when not known.

    Only a statistic (reports' PDD): a missing or odd ring time never makes a rating error.
    """
    setup, ring = row.setup_ms, getattr(row, "ring_ms", None)
    if setup is None or ring is None or not 0 <= ring - setup <= MAX_POST_DIAL_DELAY_MS:
        return None
    return ring - setup


def to_cdr(row: AccountingRow, directory: Directory, *, now: datetime) -> Cdr:
    """Map one acc or missed_calls row to its CDR (not saved); problems go to rating_error."""
    attempt = isinstance(row, MissedCall)
    problems = []
    try:
        code = int(row.sip_code)
        if not 100 <= code <= 699:
            raise ValueError
    except ValueError:
        problems.append(f"SIP code {row.sip_code!r} is not one")
        code = 0
    final = row.time
    if final is None:
        problems.append("the row has no time")
        final = row.created or now
    answered = 200 <= code < 300 and not attempt
    setup = timedelta(seconds=row.setuptime or 0)
    setup_at = _exact_time(row, "setup_ms", final, problems)
    answer_at = _exact_time(row, "answer_ms", final, problems) if answered else None
    if answer_at is not None:
        # The config reads its seconds from time(), a clock that can lag a second boundary
        # by a tick, and its microseconds from gettimeofday(); acc's `time` is the 200's
        # exact second: the answer is that second plus the config's milliseconds.
        answer_at = final.replace(microsecond=0) + (answer_at - EPOCH) % SECOND
    # `time` is cut to its second (acc writes tv_sec): the event it stamps came before
    # final + 1 s, so an INVITE stamped later than that, or after the exact answer, is wrong.
    if setup_at and (setup_at > answer_at if answer_at else setup_at >= final + SECOND):
        problems.append(f"setup_ms {row.setup_ms} is after the {'answer' if answered else 'final reply'}")
        setup_at = None
    if answered:
        # The exact INVITE may fall in the answer's own (cut) second: the answer was no earlier.
        answered_at = answer_at or max(final, setup_at or final)
        duration_ms = getattr(row, "ms_duration", 0) or 0
        created_at = setup_at or min(final - setup, answered_at)
        ended_at = answered_at + duration_ms * MILLISECOND
    else:
        # A failure's time is its final reply; without a setup time the dialog's creation
        # (if the row has it) is the best INVITE arrival we know.
        answered_at, duration_ms = None, 0
        if setup_at:
            created_at = setup_at
        elif row.setuptime:
            created_at = final - setup
        else:
            created_at = min(row.created or final, final)
        ended_at = max(final, created_at)
    customer_id = None
    if not attempt and row.peer_id is not None:
        if row.peer_id in directory.customers:
            customer_id = row.peer_id
        else:
            problems.append(f"unknown customer peer {row.peer_id}")
    elif not attempt:
        problems.append("the row names no customer peer")
    supplier_id = gateway_id = None
    if attempt or answered:
        if row.supplier_id is not None and row.supplier_id not in directory.suppliers:
            problems.append(f"unknown supplier peer {row.supplier_id}")
        elif row.supplier_id is not None:
            supplier_id = row.supplier_id
            if directory.gateways.get(row.gateway_id) == supplier_id:
                gateway_id = row.gateway_id
    node_id = directory.nodes.get(row.node)
    if row.node and node_id is None:
        logger.warning("accounting row %s names unknown node %r", source_ref(row), row.node)
    cdr = Cdr(
        call_id=row.callid,
        from_tag=row.from_tag,
        to_tag=row.to_tag or "",
        node_id=node_id,
        customer_id=customer_id,
        supplier_id=supplier_id,
        gateway_id=gateway_id,
        source_ip=_source_ip(row.source_ip),
        caller=row.caller,
        callee=row.callee,
        callee_out=row.callee_out,
        destination=row.destination,
        created_at=created_at,
        answered_at=answered_at,
        ended_at=ended_at,
        duration_ms=duration_ms,
        sip_code=code,
        sip_reason=row.sip_reason,
        source_ref=source_ref(row),
        pdd_ms=_post_dial_delay(row),
    )
    if problems:
        kind = "missed_calls" if attempt else "acc"
        cdr.rating_state = Cdr.RatingState.ERROR
        cdr.rating_error = f"OpenSIPS {kind} row {row.pk}: {'; '.join(problems)}."[:ERROR_LENGTH]
        cdr.rated_at = now
    elif attempt:
        # A failed branch costs nothing and holds no reservation: rated as it is made.
        cdr.rating_state = Cdr.RatingState.RATED
        cdr.sell_cost = cdr.buy_cost = money(0)
        cdr.rated_at = now
    return cdr


def _claim(model: type[AccountingRow], limit: int, node: str | None, now: datetime) -> list[AccountingRow]:
    rows = model.objects.select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)
    if node is not None:
        # This node's rows, and those of nodes that are gone (no recent heartbeat).
        live = Node.objects.filter(enabled=True, last_heartbeat__gte=now - TAKEOVER_AFTER).exclude(name=node)
        rows = rows.filter(Q(node=node) | ~Q(node__in=list(live.values_list("name", flat=True))))
    return list(rows.order_by("pk")[:limit])


@retry_on_conflict
def _ingest(limit: int, node: str | None, now: datetime) -> IngestResult:
    """One batch: claim rows, insert their CDRs, delete the rows; one transaction."""
    result = IngestResult()
    calls = _claim(Acc, limit, node, now)
    attempts = _claim(MissedCall, limit, node, now)
    rows = [*calls, *attempts]
    if not rows:
        return result
    refs = {source_ref(row): row for row in rows}
    done: set[str] = set()
    wanted = list(refs)
    for start in range(0, len(wanted), BATCH_SIZE):  # under SQLite's 999 parameters
        chunk = wanted[start : start + BATCH_SIZE]
        done.update(Cdr.objects.filter(source_ref__in=chunk).values_list("source_ref", flat=True))
    # OpenSIPS also writes a missed_calls row when the script itself rejects the call (no
    # branch): no supplier was tried, and the call's acc row already has that outcome.
    unrouted = {ref for ref, row in refs.items() if isinstance(row, MissedCall) and row.supplier_id is None}
    directory = Directory.load(rows)
    cdrs = [to_cdr(row, directory, now=now) for ref, row in refs.items() if ref not in done | unrouted]
    insert_rows(cdrs)
    _add_rated_attempts_to_reports(cdrs)
    for model, claimed in ((Acc, calls), (MissedCall, attempts)):
        if claimed:
            model.objects.filter(pk__in=[row.pk for row in claimed]).delete()
    result.full = limit in (len(calls), len(attempts))
    result.replayed = len(done)
    result.unrouted = len(unrouted - done)
    result.calls = sum(1 for c in cdrs if c.source_ref.startswith("acc:"))
    result.attempts = len(cdrs) - result.calls
    result.errors = sum(1 for c in cdrs if c.rating_state == Cdr.RatingState.ERROR)
    for cdr in cdrs:
        if cdr.rating_error:
            logger.warning("CDR %s kept with an error: %s", cdr.source_ref, cdr.rating_error)
    return result


def _add_rated_attempts_to_reports(cdrs: list[Cdr]) -> None:
    """A failed branch's CDR is rated as it is made: into the reports' rollups with it.

    The rater adds every other CDR when it rates it; both in the transaction that rates,
    so that a rollup holds exactly the rated CDRs (apps.reports.rollups).
    """
    refs = [c.source_ref for c in cdrs if c.rating_state == Cdr.RatingState.RATED]
    ids = []
    for start in range(0, len(refs), BATCH_SIZE):  # under SQLite's 999 parameters
        chunk = refs[start : start + BATCH_SIZE]
        ids += Cdr.objects.filter(source_ref__in=chunk).values_list("pk", flat=True)
    rollups.add_rated(ids)


def ingest_batch(*, limit: int = BATCH_SIZE, node: str | None = None, now=None) -> IngestResult:
    """Import up to `limit` acc and `limit` missed_calls rows (of `node`, and of dead nodes).

    `node` None imports every node's rows. Safe to run anywhere, any number of times at
    once: every row becomes one CDR.
    """
    return _ingest(limit, node, now or timezone.now())


class IngestStalled(Exception):
    """Batch after batch lost on write conflicts: something else holds the same rows."""


def ingest_all(
    *, node: str | None = None, limit: int = BATCH_SIZE, until: float | None = None
) -> IngestResult:
    """Import batches until none is left (or `until`, a monotonic deadline, passes).

    A batch that outlasts its retries on write conflicts (two importers on the same rows)
    wrote nothing: it is taken again after a pause that grows with the batches lost in a
    row, and the import stops with IngestStalled after GIVE_UP_LIMIT of them (as the
    rater's rate_all does).
    """
    total = IngestResult()
    rounds = batches(
        lambda: ingest_batch(limit=limit, node=node),
        until=until,
        pause=CONFLICT_PAUSE,
        give_up=GIVE_UP_LIMIT,
        stalled=IngestStalled,
    )
    for result in rounds:
        total.add(result)
        if not result.full:
            break
    return total
