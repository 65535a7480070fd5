"""Check routing: run the real decision for given inputs without reserving, and explain it.

Used by `manage.py check_routing` and the admin page; both print `report_lines`.
"""

from dataclasses import dataclass
from datetime import datetime

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.callcontrol import snapshot as snapshots
from apps.callcontrol.decision import CallRequest, Decision, decide, settle
from apps.core.errors import DomainError
from apps.nodes.models import Node
from apps.peers.models import Peer


@dataclass(frozen=True)
class CheckInput:
    callee: str
    caller: str = ""
    peer: Peer | None = None
    source_ip: str | None = None
    auth_user: str | None = None
    node: Node | None = None
    at: datetime | None = None
    call_id: str = "check-routing"


def check_routing(inputs: CheckInput) -> Decision:
    """The decision call control would take for these inputs, with the money only estimated."""
    if inputs.peer is None and not inputs.source_ip and not inputs.auth_user:
        raise DomainError("Name the peer, its source IP or its SIP user.", field="peer")
    node = inputs.node or Node.objects.enabled().order_by("name").first()
    if node is None:
        raise DomainError("There is no node to check on.", field="node")
    request = CallRequest(
        call_id=inputs.call_id or "check-routing",
        node=node.name,
        caller=inputs.caller,
        callee=inputs.callee,
        source_ip=inputs.source_ip or None,
        peer_id=inputs.peer.pk if inputs.peer else None,
        auth_user=inputs.auth_user or None,
    )
    snapshot = snapshots.current()
    decision = decide(snapshot, request, at=inputs.at or timezone.now())
    return settle(snapshot, decision, reserve=False)


def candidate_rows(decision: Decision) -> list[dict]:
    """Every route of the matched rule: price, quality, and its place or why it is out."""
    order = {}
    for target in decision.targets:
        order.setdefault(target.route_id, len(order) + 1)
    rows = []
    for candidate in decision.candidates:
        rows.append(
            {
                "route_id": candidate.route.id,
                "supplier": candidate.supplier,
                "price": ""
                if candidate.price is None
                else f"{candidate.price} {candidate.currency or ''}".strip(),
                "prefix": candidate.prefix,
                # The supplier's time period whose price applied ("" for its price of any time).
                "period": candidate.buy.period if candidate.buy is not None else "",
                "quality": "" if candidate.quality is None else f"{candidate.quality:.1f}",
                "position": order.get(candidate.route.id),
                "verdict": candidate.excluded or f"#{order.get(candidate.route.id)}",
                # The fraud alert that excludes the route (or admitted it in its trial).
                "alert_id": candidate.alert_id,
                "alert_url": _alert_url(candidate.alert_id),
            }
        )
    rows.sort(key=lambda row: (row["position"] is None, row["position"] or 0))
    return rows


def _alert_url(alert_id: int | None) -> str:
    if alert_id is None:
        return ""
    try:
        return reverse("admin:fraud_alert_change", args=[alert_id])
    except NoReverseMatch:  # the alerts' admin is not installed
        return ""


def report_lines(decision: Decision) -> list[str]:
    """The decision as text, one step per line, then candidates, routes and the answer."""
    request = decision.request
    lines = [
        f"Check routing {request.caller or '(no caller)'} → {request.callee} on {request.node} "
        f"at {decision.at.isoformat(timespec='seconds')}"
        + (f" ({decision.local_time} for {decision.peer.name})" if decision.peer else ""),
        "",
    ]
    for step in decision.steps:
        lines.append(f"  {'ok ' if step.ok else 'NO '} {step.name:<11} {step.detail}")
    if decision.candidates:
        lines += ["", "Candidates:"]
        lines.append(f"  {'supplier':<28} {'price':<18} {'prefix':<12} {'quality':>8}  verdict")
        for row in candidate_rows(decision):
            period = f" ({row['period']})" if row["period"] else ""
            lines.append(
                f"  {row['supplier'][:28]:<28} {row['price']:<18} {row['prefix']:<12} "
                f"{row['quality']:>8}  {row['verdict']}{period}"
            )
    if decision.targets:
        lines += ["", "Attempts in order:"]
        for number, target in enumerate(decision.targets, 1):
            extras = []
            if target.setup_timeout:
                extras.append(f"setup timeout {target.setup_timeout} s")
            if target.stop_hunting:
                extras.append("stop hunting")
            suffix = f" ({', '.join(extras)})" if extras else ""
            lines.append(f"  {number}. {target.uri} callee {target.callee} caller {target.caller}{suffix}")
    lines.append("")
    if decision.routed:
        lines.append(
            f"Answer: route, max duration {decision.max_duration} s "
            f"({decision.amount} of {decision.available} available would be reserved)"
        )
    elif decision.action == "redirect":
        lines.append(f"Answer: redirect 302 to {decision.redirect_uri}")
    else:
        lines.append(f"Answer: reject {decision.code} {decision.reason}")
    return lines
