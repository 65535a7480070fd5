"""Origination control: customers whose traffic looks like fraud (a hacked PBX, a stolen
SIP password), judged every round from the CDRs of the window and the live calls.

- burst: calls (or spend) in the window against the customer's own baseline, the same
  minutes of each of the previous `baseline_days` days; it offends at `threshold` times
  the baseline and at least `floor` (a customer with no history is judged against the
  floor alone; with no floor it is not judged until it has a history).
- new_destination: at least `min_count` calls in the window to a destination whose sell
  price per minute is `threshold` or more, which the customer never called in the
  `baseline_days` before the window.
- sequential: short calls (under `short_seconds`, answered or not) to at least `min_count`
  consecutive numbers (4420712345001, …002, …003): someone scanning a range.

Live calls count as they stand: a reservation made in the window whose CDR is not yet
written is a call, and its spend is the share of its reserved amount its time so far used
(online billing's `used_so_far`; the whole amount, granted for the longest call the money
allows, would make every customer with calls up look like a burst against a baseline of
what calls really cost).

One alert per customer episode (services.raise_alert keys it on the customer): blocking
suspends the customer, and `end_suspended_calls` then ends its live calls on every node
(apps.fraud.hangup), each round while the suspension holds, so that a call that slipped
in before call control heard of the suspension, or whose node was down, is ended too.
"""

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Max, Q, Sum

from apps.billing.models import Reservation
from apps.billing.services.online import used_so_far
from apps.cdr.models import Cdr
from apps.core.changes import announce
from apps.core.db import chunks, retry_on_conflict
from apps.fraud import hangup
from apps.fraud.controllers.common import Tally, undone_since, window
from apps.fraud.models import Alert, Controller, Kind, Metric
from apps.fraud.services import ALERT, Subject, raise_alert
from apps.peers.models import Peer

ZERO = Decimal(0)
PLACES = Decimal("0.0001")
KINDS = (Kind.BURST, Kind.NEW_DESTINATION, Kind.SEQUENTIAL)
HANGUP_NOTE = "Hang-up "  # lines of an alert's detail that a refresh keeps


@dataclass(frozen=True)
class Finding:
    """What a controller found against one customer."""

    measured: Decimal
    threshold: Decimal | None
    attempts: int | None
    what: str  # the subject's words after the customer's name
    detail: str


# analyse(controller, start, end, customer_id or None) -> {customer id: finding}
Analysis = Callable[[Controller, datetime, datetime, int | None], dict[int, Finding]]


def _scope(controller: Controller, customer_id: int | None, field: str = "customer") -> Q:
    """The customers a controller watches: one, its reseller's, or every one."""
    if customer_id is not None:
        return Q(**{f"{field}_id": customer_id})
    if controller.peer_id:
        return Q(**{f"{field}_id": controller.peer_id})
    if controller.reseller_id:
        return Q(**{f"{field}__reseller_id": controller.reseller_id})
    return Q(**{f"{field}__isnull": False})


def _live(controller: Controller, start: datetime, end: datetime, customer_id: int | None) -> list[dict]:
    """The live calls set up in [start, end) whose CDR is not rated yet, each with `cdr`
    (whether its CDR exists). Read through the live-reservation index (released_at NULL)."""
    live = list(
        Reservation.objects.filter(released_at__isnull=True, created_at__gte=start, created_at__lt=end)
        .filter(_scope(controller, customer_id))
        .values(
            "customer_id", "call_id", "amount", "max_duration", "created_at", "destination", "sell_tariff"
        )
        .order_by()
    )
    if not live:
        return []
    written = {}
    for chunk in chunks([row["call_id"] for row in live]):  # through the Call-ID index
        written.update(Cdr.objects.filter(call_id__in=chunk).values_list("call_id", "sell_cost").order_by())
    unrated = []
    for row in live:
        if row["call_id"] in written and written[row["call_id"]] is not None:
            continue  # its CDR is rated: counted with the CDRs
        row["cdr"] = row["call_id"] in written
        unrated.append(row)
    return unrated


# --- burst ----------------------------------------------------------------------------------


def _traffic(controller: Controller, ranges, customer_id: int | None) -> dict[int, Decimal]:
    """Calls (or rated spend) per customer over the CDRs of `ranges`, one query per range.

    One query with the ranges OR-ed together reads the same rows, but MariaDB's planner
    then prefers scanning (customer, created_at) as a covering index from end to end: 8.5 s
    on 10 M CDRs, against 0.2 s per range on created_at (docs/BENCHMARKS.md).
    """
    value = Sum("sell_cost") if controller.metric == Metric.SPEND else Count("id")
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for start, end in ranges:
        rows = (
            Cdr.objects.filter(created_at__gte=start, created_at__lt=end)
            .filter(_scope(controller, customer_id))
            .values("customer_id")
            .annotate(value=value)
            .order_by()
        )
        for row in rows:
            totals[row["customer_id"]] += Decimal(row["value"] or 0)
    return dict(totals)


def analyse_burst(controller: Controller, start: datetime, end: datetime, customer_id: int | None) -> dict:
    spend = controller.metric == Metric.SPEND
    current = defaultdict(Decimal, _traffic(controller, [(start, end)], customer_id))
    for row in _live(controller, start, end, customer_id):
        if spend:
            current[row["customer_id"]] += used_so_far(
                row["amount"], row["max_duration"], end - row["created_at"]
            )
        elif not row["cdr"]:
            current[row["customer_id"]] += 1
    if not current:
        return {}
    days = controller.baseline_days
    history = _traffic(
        controller,
        [(start - timedelta(days=d), end - timedelta(days=d)) for d in range(1, days + 1)],
        customer_id,
    )
    unit = "spend" if spend else "calls"
    findings = {}
    for customer, value in current.items():
        baseline = (history.get(customer, ZERO) / days).quantize(PLACES)
        if value <= 0 or (baseline == 0 and controller.floor is None):
            continue
        limit = max(controller.threshold * baseline, controller.floor or ZERO)
        if value < limit:
            continue
        factor = f"{value / baseline:.1f} times" if baseline else "no history"
        findings[customer] = Finding(
            measured=value,
            threshold=limit,
            attempts=None if spend else int(value),
            what=f"{unit} burst",
            detail=(
                f"{unit.capitalize()} {value.normalize():f} in the last {controller.window_minutes} minutes "
                f"({factor}) against a baseline of {baseline.normalize():f} (the same minutes of the "
                f"previous {days} days): threshold {controller.threshold.normalize():f} times the baseline, "
                f"floor {(controller.floor or ZERO).normalize():f}."
            ),
        )
    return findings


# --- new destination ------------------------------------------------------------------------


def _price(tariff) -> Decimal | None:
    try:
        return Decimal(str(tariff["price"]))
    except (TypeError, KeyError, ArithmeticError, ValueError):
        return None


def analyse_new_destination(
    controller: Controller, start: datetime, end: datetime, customer_id: int | None
) -> dict:
    groups = (
        Cdr.objects.filter(created_at__gte=start, created_at__lt=end)
        .filter(_scope(controller, customer_id))
        .exclude(destination="")
        .values("customer_id", "destination")
        .annotate(
            calls=Count("id"), sample=Max("call_id"), cost=Sum("sell_cost"), seconds=Sum("billable_seconds")
        )
        .order_by()
    )
    calls: dict[tuple[int, str], int] = defaultdict(int)
    prices: dict[tuple[int, str], Decimal] = {}
    samples: dict[str, tuple[int, str]] = {}
    billed: dict[tuple[int, str], Decimal] = {}
    for row in groups:
        key = (row["customer_id"], row["destination"])
        calls[key] += row["calls"]
        samples[row["sample"]] = key
        if row["seconds"]:
            billed[key] = Decimal(row["cost"] or 0) * 60 / row["seconds"]
    for row in _live(controller, start, end, customer_id):
        if not row["destination"]:
            continue
        key = (row["customer_id"], row["destination"])
        if not row["cdr"]:
            calls[key] += 1
        price = _price(row["sell_tariff"])
        if price is not None:
            prices[key] = max(price, prices.get(key, price))
    candidates = {key for key, count in calls.items() if count >= controller.min_count}
    # The price the customer pays per minute: the sell tariff its call carried (one call of
    # each destination, by the Call-ID index), or what its rated calls cost per minute.
    wanted = [call_id for call_id, key in samples.items() if key in candidates and key not in prices]
    carried = Reservation.objects.values_list("call_id", "sell_tariff").order_by()
    tariffs = (row for chunk in chunks(wanted) for row in carried.filter(call_id__in=chunk))
    for call_id, tariff in tariffs:
        price = _price(tariff)
        if price is not None:
            key = samples[call_id]
            prices[key] = max(price, prices.get(key, price))
    costly = {
        key: price
        for key in candidates
        if (price := prices.get(key, billed.get(key))) is not None and price >= controller.threshold
    }
    since = start - timedelta(days=controller.baseline_days)
    found: dict[int, list[tuple[str, int, Decimal]]] = defaultdict(list)
    for (customer, destination), price in sorted(costly.items()):
        # One probe of the (customer, destination, created_at) index per candidate.
        known = Cdr.objects.filter(
            customer_id=customer, created_at__gte=since, created_at__lt=start, destination=destination
        ).exists()
        if not known:
            found[customer].append((destination, calls[(customer, destination)], price))
    findings = {}
    for customer, destinations in found.items():
        total = sum(count for _, count, _ in destinations)
        listed = ", ".join(
            f"{name} ({count} calls at {price.quantize(PLACES).normalize():f}/min)"
            for name, count, price in destinations
        )
        findings[customer] = Finding(
            measured=Decimal(total),
            threshold=Decimal(controller.min_count),
            attempts=total,
            what="calls to new high-cost destinations",
            detail=(
                f"In the last {controller.window_minutes} minutes: {listed}; none called in the "
                f"{controller.baseline_days} days before, price threshold "
                f"{controller.threshold.normalize():f}/min."
            ),
        )
    return findings


# --- sequential numbers ---------------------------------------------------------------------


def longest_run(numbers) -> list[str]:
    """The longest run of consecutive numbers (as integers of the same length) in `numbers`."""
    by_length: dict[int, set[int]] = defaultdict(set)
    for number in numbers:
        digits = re.sub(r"\D", "", number or "")
        if digits:
            by_length[len(digits)].add(int(digits))
    best: list[str] = []
    for length, values in by_length.items():
        ordered = sorted(values)
        run = [ordered[0]]
        for value in [*ordered[1:], None]:
            if value is not None and value == run[-1] + 1:
                run.append(value)
                continue
            if len(run) > len(best):
                best = [str(item).zfill(length) for item in run]
            run = [value]
    return best


def analyse_sequential(
    controller: Controller, start: datetime, end: datetime, customer_id: int | None
) -> dict:
    rows = (
        Cdr.objects.filter(
            created_at__gte=start, created_at__lt=end, duration_ms__lt=controller.short_seconds * 1000
        )
        .filter(_scope(controller, customer_id))
        .values_list("customer_id", "callee")
        .order_by()
    )
    numbers: dict[int, list[str]] = defaultdict(list)
    for customer, callee in rows:
        numbers[customer].append(callee)
    findings = {}
    for customer, called in numbers.items():
        run = longest_run(called)
        if len(run) < controller.min_count:
            continue
        findings[customer] = Finding(
            measured=Decimal(len(run)),
            threshold=Decimal(controller.min_count),
            attempts=len(called),
            what="short calls to sequential numbers",
            detail=(
                f"{len(run)} consecutive numbers, {run[0]} to {run[-1]}, called for under "
                f"{controller.short_seconds} s in the last {controller.window_minutes} minutes "
                f"({len(called)} short calls in all)."
            ),
        )
    return findings


ANALYSES: dict[str, Analysis] = {
    Kind.BURST: analyse_burst,
    Kind.NEW_DESTINATION: analyse_new_destination,
    Kind.SEQUENTIAL: analyse_sequential,
}


def run(controller: Controller, *, now: datetime) -> Tally:
    """Judge the controller's customers; warn about or suspend the ones it finds."""
    analyse = ANALYSES[controller.kind]
    start, end = window(controller, now)
    findings = analyse(controller, start, end, None)
    tally = Tally(judged=len(findings))
    for customer, since in undone_since(controller, start).items():
        peer_id = customer[0]
        if peer_id in findings:
            # A person resumed it inside the window: only what came after counts.
            later = analyse(controller, since, end, peer_id).get(peer_id)
            if later is None:
                del findings[peer_id]
            else:
                findings[peer_id] = later
    peers = {peer.pk: peer for peer in Peer.objects.filter(pk__in=findings).only("pk", "name", "reseller_id")}
    for customer, finding in findings.items():
        peer = peers[customer]
        subject = Subject(text=f"{peer.name}: {finding.what}", peer_id=peer.pk, reseller_id=peer.reseller_id)
        alert, created = raise_alert(
            controller,
            subject,
            effect=Alert.Effect.SUSPEND_PEER,
            measured=finding.measured,
            threshold=finding.threshold,
            attempts=finding.attempts,
            detail=_keep_hangup_notes(subject.key(controller), finding.detail),
            now=now,
        )
        tally.add(alert, created)
    return tally


def _keep_hangup_notes(key: str, detail: str) -> str:
    """The finding's detail, followed by what the open episode's hang-ups did so far."""
    before = Alert.objects.filter(open_key=key[:255]).values_list("detail", flat=True).first() or ""
    notes = [line for line in before.splitlines() if line.startswith(HANGUP_NOTE)]
    return "\n".join([detail, *notes])


def end_suspended_calls(*, now: datetime) -> dict[int, hangup.HangupReport]:
    """End the live calls of every customer an origination alert holds suspended; by alert."""
    alerts = {
        alert.peer_id: alert
        for alert in Alert.objects.in_force(now)
        .filter(effect=Alert.Effect.SUSPEND_PEER, kind__in=KINDS, peer__isnull=False)
        .order_by("started_at")
    }
    if not alerts:
        return {}
    calls: dict[int, list[Reservation]] = defaultdict(list)
    for call in hangup.live_calls(alerts):
        calls[call.customer_id].append(call)
    reports = {}
    for peer_id, live in calls.items():
        alert = alerts[peer_id]
        report = hangup.end_live_calls(peer_id, now=now, calls=live)
        _note(alert, f"{HANGUP_NOTE}{now:%Y-%m-%d %H:%M:%S}: {report.summary()}")
        reports[alert.pk] = report
    return reports


@retry_on_conflict
def _note(alert: Alert, line: str) -> None:
    """Add a line to the alert's detail, where whoever reads the alert sees what was done."""
    detail = Alert.objects.filter(pk=alert.pk).values_list("detail", flat=True).first() or ""
    Alert.objects.filter(pk=alert.pk).update(detail="\n".join(filter(None, [detail, line])))
    announce(ALERT, [alert.pk], fields=["detail"])
