"""The live figures: what the database holds now (`read`), and each audience's view of it (`view`).

`read` is the only part that touches the database: one pass of a handful of queries whose
rows are keyed by customer id. `view` is a pure function of those rows and an `Audience`
(the set of customer ids a scope may see, computed once from `Peer.objects.visible_to`):
it sums over that set and nothing else, so that a reseller's view is built from its own
customers' rows only and can carry no other reseller's numbers, calls, alerts or Call-IDs.
The hub (apps.live.hub) reads once per tick for every socket of the process and computes
each distinct audience's view once; the pages render the same view server-side.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q, Sum

from apps.tenancy.scope import Kind, Scope

# Calls per second: reservations created in this many seconds, divided by it.
CPS_SECONDS = 10
# ASR and ACD over the last 5, 15 and 60 minutes.
WINDOWS = (5, 15, 60)
# The customer's own list of calls in progress is cut here (the counts are not).
CALLS_SHOWN = 200
ALERTS_SHOWN = 5


@dataclass(frozen=True)
class CallRow:
    """One call in progress: an open reservation (ringing until answered)."""

    id: int
    call_id: str
    customer_id: int
    node_id: int | None
    caller: str
    callee: str
    destination: str
    created_at: datetime
    answered_at: datetime | None


@dataclass(frozen=True)
class Active:
    """How many calls of one customer are in progress on one node, and how many are answered."""

    customer_id: int
    node_id: int | None
    calls: int
    answered: int


@dataclass(frozen=True)
class Quality:
    """Attempts, answered calls and answered milliseconds in one window."""

    attempts: int = 0
    answered: int = 0
    duration_ms: int = 0

    def __add__(self, other: "Quality") -> "Quality":
        return Quality(
            self.attempts + other.attempts,
            self.answered + other.answered,
            self.duration_ms + other.duration_ms,
        )


@dataclass(frozen=True)
class AlertRow:
    """An alert in force, with the two fields its visibility follows (AlertQuerySet.visible_to)."""

    id: int
    reseller_id: int | None
    peer_id: int | None
    subject: str
    effect: str
    started_at: datetime


@dataclass
class Snapshot:
    """Everything the live views show, for everyone, read at `at`."""

    at: datetime
    # Counts of every customer's calls in progress, by node (one grouped query).
    active: list[Active] = field(default_factory=list)
    # The calls themselves, only of the customers watching their own (customer sockets).
    calls: list[CallRow] = field(default_factory=list)
    watched: frozenset[int] = frozenset()  # the customers whose calls were read
    # customer id -> reservations created in the last CPS_SECONDS (open or closed)
    recent: dict[int, int] = field(default_factory=dict)
    # customer id -> {window minutes -> Quality}
    quality: dict[int, dict[int, Quality]] = field(default_factory=dict)
    alerts: list[AlertRow] = field(default_factory=list)
    nodes: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Audience:
    """Whom a view is for: a scope's kind and owner, and the customers it may see (None: all)."""

    kind: Kind
    reseller_id: int | None = None
    peer_id: int | None = None
    customers: frozenset[int] | None = frozenset()

    @property
    def key(self) -> tuple:
        return (self.kind, self.reseller_id, self.peer_id)

    def sees_customer(self, customer_id: int | None) -> bool:
        if self.kind is Kind.OPERATOR:
            return True
        return customer_id is not None and self.customers is not None and customer_id in self.customers

    def sees_alert(self, alert: AlertRow) -> bool:
        # The rule of AlertQuerySet.visible_to: the operator all, a reseller the alerts of
        # its own (alert.reseller), a customer those about itself (alert.peer).
        if self.kind is Kind.OPERATOR:
            return True
        if self.kind is Kind.RESELLER:
            return alert.reseller_id is not None and alert.reseller_id == self.reseller_id
        if self.kind is Kind.CUSTOMER:
            return alert.peer_id is not None and alert.peer_id == self.peer_id
        return False


def audience_key(scope: Scope) -> tuple:
    """What makes two scopes see the same: sockets of one key share one view."""
    return (scope.kind, scope.reseller_id, scope.peer_id)


def audience_for(scope: Scope) -> Audience:
    """The audience of `scope`, with the customers `Peer.objects.visible_to(scope)` holds (database)."""
    from apps.peers.models import Peer
    from apps.tenancy.models import Reseller

    if scope.is_operator:
        return Audience(Kind.OPERATOR, customers=None)
    if scope.kind is Kind.NOBODY:
        return Audience(Kind.NOBODY)
    if scope.reseller_id and not Reseller.objects.filter(pk=scope.reseller_id, is_active=True).exists():
        # A reseller switched off since the socket opened: its staff and customers stand for
        # nobody (Scope.of_user), and their open sockets see nothing from the next refresh.
        return Audience(Kind.NOBODY)
    ids = frozenset(Peer.objects.visible_to(scope).values_list("pk", flat=True))
    return Audience(scope.kind, scope.reseller_id, scope.peer_id, ids)


# --- the pure part ------------------------------------------------------------------------


def ratio(part: int, whole: int, places: str = "0.1") -> str | None:
    if not whole:
        return None
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def summarise(quality: Quality) -> dict:
    """ASR (% answered of attempts) and ACD (mean answered seconds) of one window, as strings."""
    acd = None
    if quality.answered:
        acd = str(
            (Decimal(quality.duration_ms) / 1000 / quality.answered).quantize(
                Decimal("1"), rounding=ROUND_HALF_UP
            )
        )
    return {
        "attempts": quality.attempts,
        "answered": quality.answered,
        "asr": ratio(quality.answered, quality.attempts),
        "acd": acd,
    }


def seconds_between(start: datetime | None, end: datetime) -> int:
    return max(0, int((end - start).total_seconds())) if start else 0


def view(snapshot: Snapshot, audience: Audience) -> dict:
    """The figures `audience` may see, JSON-ready: sums over its customers' rows only.

    The customer also gets its calls in progress; nobody gets a supplier, and only the
    operator gets more than counts for customers other than its own.
    """
    active = [row for row in snapshot.active if audience.sees_customer(row.customer_id)]
    per_node: dict[str, int] = {}
    for row in active:
        name = snapshot.nodes.get(row.node_id, "-") if row.node_id is not None else "-"
        per_node[name] = per_node.get(name, 0) + row.calls
    concurrent = sum(row.calls for row in active)
    answered = sum(row.answered for row in active)
    recent = sum(n for customer, n in snapshot.recent.items() if audience.sees_customer(customer))
    windows = {minutes: Quality() for minutes in WINDOWS}
    for customer, by_window in snapshot.quality.items():
        if audience.sees_customer(customer):
            for minutes, quality in by_window.items():
                windows[minutes] = windows.get(minutes, Quality()) + quality
    alerts = [alert for alert in snapshot.alerts if audience.sees_alert(alert)]
    alerts.sort(key=lambda alert: (alert.started_at, alert.id), reverse=True)
    figures = {
        "concurrent": concurrent,
        "answered": answered,
        "ringing": concurrent - answered,
        "cps": str((Decimal(recent) / CPS_SECONDS).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)),
        "nodes": [{"name": name, "calls": count} for name, count in sorted(per_node.items())],
        "quality": {str(minutes): summarise(windows[minutes]) for minutes in WINDOWS},
        "alerts": {
            "count": len(alerts),
            "latest": [
                {"id": a.id, "subject": a.subject, "effect": a.effect, "started_at": a.started_at.isoformat()}
                for a in alerts[:ALERTS_SHOWN]
            ],
        },
    }
    if audience.kind is Kind.CUSTOMER:
        calls = [call for call in snapshot.calls if call.customer_id == audience.peer_id]
        mine = sorted(calls, key=lambda call: (call.created_at, call.id), reverse=True)[:CALLS_SHOWN]
        figures["calls"] = [call_dict(call, snapshot.at) for call in mine]
    return figures


def call_dict(call: CallRow, now: datetime) -> dict:
    """One call in progress as the customer sees it (no supplier, no route, no money)."""
    return {
        "id": call.id,
        "caller": call.caller,
        "callee": call.callee,
        "destination": call.destination,
        "started_at": call.created_at.isoformat(),
        "answered_at": call.answered_at.isoformat() if call.answered_at else None,
        "duration": seconds_between(call.answered_at, now),
    }


# --- the database part --------------------------------------------------------------------


def window_sums(since: Iterable[tuple[int, datetime]]) -> dict:
    """Conditional counts and sums for each (minutes, since) window, for one grouped query."""
    sums = {}
    for minutes, start in since:
        recent = Q(created_at__gte=start)
        done = recent & Q(answered_at__isnull=False)
        sums[f"attempts_{minutes}"] = Count("id", filter=recent)
        sums[f"answered_{minutes}"] = Count("id", filter=done)
        sums[f"duration_{minutes}"] = Sum("duration_ms", filter=done)
    return sums


def read_quality(now: datetime) -> dict[int, dict[int, Quality]]:
    """Per customer, attempts / answered / answered time over each window (one grouped query)."""
    from apps.cdr.models import Cdr

    starts = [(minutes, now - timedelta(minutes=minutes)) for minutes in WINDOWS]
    rows = (
        Cdr.objects.filter(created_at__gte=starts[-1][1], created_at__lte=now, customer__isnull=False)
        .order_by()
        .values("customer_id")
        .annotate(**window_sums(starts))
    )
    return {
        row["customer_id"]: {
            minutes: Quality(
                row[f"attempts_{minutes}"] or 0,
                row[f"answered_{minutes}"] or 0,
                int(row[f"duration_{minutes}"] or 0),
            )
            for minutes in WINDOWS
        }
        for row in rows
    }


def read_active() -> list[Active]:
    """Calls in progress per customer and node, answered or not: one grouped query."""
    from apps.billing.models import Reservation

    rows = (
        Reservation.objects.active()
        .order_by()
        .values("customer_id", "node_id")
        .annotate(calls=Count("id"), answered=Count("id", filter=Q(answered_at__isnull=False)))
    )
    return [Active(row["customer_id"], row["node_id"], row["calls"], row["answered"]) for row in rows]


def read_calls(customers: Iterable[int]) -> list[CallRow]:
    """The calls in progress of `customers` (those watching their own), newest first."""
    from apps.billing.models import Reservation

    customers = sorted(set(customers))
    if not customers:
        return []
    rows = (
        Reservation.objects.active()
        .filter(customer_id__in=customers)
        .order_by("-created_at", "-id")
        .values_list(
            "id",
            "call_id",
            "customer_id",
            "node_id",
            "caller",
            "callee",
            "destination",
            "created_at",
            "answered_at",
        )
    )
    return [
        CallRow(pk, call_id, customer, node, caller or "", callee or "", destination or "", created, answered)
        for pk, call_id, customer, node, caller, callee, destination, created, answered in rows
    ]


def read_recent(now: datetime) -> dict[int, int]:
    from apps.billing.models import Reservation

    rows = (
        Reservation.objects.filter(created_at__gt=now - timedelta(seconds=CPS_SECONDS), created_at__lte=now)
        .order_by()
        .values("customer_id")
        .annotate(n=Count("id"))
    )
    return {row["customer_id"]: row["n"] for row in rows}


def read_alerts(now: datetime) -> list[AlertRow]:
    from apps.fraud.models import Alert

    rows = (
        Alert.objects.in_force(now)
        .order_by()
        .values_list("id", "reseller_id", "peer_id", "subject", "effect", "started_at")
    )
    return [AlertRow(*row) for row in rows]


def read_nodes() -> dict[int, str]:
    from apps.nodes.models import Node

    return dict(Node.objects.values_list("pk", "name"))


def read(
    now: datetime, *, previous: Snapshot | None = None, slow: bool = True, watching: Iterable[int] = ()
) -> Snapshot:
    """Read the figures of everyone at `now`, and the calls of the customers `watching` theirs.

    `slow=False` keeps `previous`'s quality, alerts and nodes (they change slowly and are
    re-read every few seconds, or at once on a change)."""
    watching = frozenset(watching)
    snapshot = Snapshot(
        at=now, active=read_active(), calls=read_calls(watching), watched=watching, recent=read_recent(now)
    )
    if slow or previous is None:
        snapshot.quality = read_quality(now)
        snapshot.alerts = read_alerts(now)
        snapshot.nodes = read_nodes()
    else:
        snapshot.quality, snapshot.alerts, snapshot.nodes = previous.quality, previous.alerts, previous.nodes
    return snapshot


def figures_for(scope: Scope, now: datetime) -> dict:
    """One scope's figures read now, for a page's server-rendered first view."""
    watching = [scope.peer_id] if scope.is_customer else []
    return view(read(now, watching=watching), audience_for(scope))


def active_of(calls: Iterable[CallRow]) -> list[Active]:
    """The counts `read_active` would give for `calls` (for tests and tools that hold rows)."""
    counts: dict[tuple, list[int]] = {}
    for call in calls:
        entry = counts.setdefault((call.customer_id, call.node_id), [0, 0])
        entry[0] += 1
        entry[1] += call.answered_at is not None
    return [Active(customer, node, n, answered) for (customer, node), (n, answered) in counts.items()]
