"""The decision for one call: who pays, may it go, where, and for how long.

`decide` reads only the in-memory snapshot and the rate indexes; `settle` adds the money
(one database transaction that reserves it, or a read when only checking). Call control
and check routing run exactly this code, so what the tool explains is what a call gets.
Every step is written down as it is taken; the explanation costs a few small objects
per call, which is cheaper than a second code path that could disagree.
"""

import ipaddress
import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

from apps.billing.services import reservations
from apps.bundles.offers import first_offer
from apps.callcontrol.snapshot import (
    MIN_QUALITY_ATTEMPTS,
    AlertInfo,
    DidInfo,
    GatewayInfo,
    NodeInfo,
    PeerInfo,
    RouteInfo,
    RuleInfo,
    Snapshot,
)
from apps.capture.policy import sampled
from apps.fraud.models import Alert
from apps.media.announcements import announcement_for, refusal_kind
from apps.peers.models import Blocklist, ProfitControl
from apps.rates.lookup import rate_for
from apps.rates.prefix_index import Match
from apps.rates.tariffs import Tariff
from apps.rates.time_windows import local_label, second_of_week
from apps.routing.models import Method, QualityMetric

CUSTOMER_ROLES = ("customer", "user")
SUPPLIER = "supplier"
ON_NET = "On-net"
# What a Call-ID may keep in a recording's file name.
RECORDING_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class CallRequest:
    call_id: str
    node: str
    caller: str
    callee: str
    source_ip: str | None = None
    peer_id: int | None = None
    auth_user: str | None = None
    source_port: int | None = None
    transport: str | None = None
    # The request URI's host: names the account of an on-net call ("alice@b.example"), unless
    # it is one of our nodes' addresses.
    callee_domain: str | None = None
    # The address the INVITE reached ($socket_in(ip)): the shared IP when the cluster
    # distributes calls sent to it, else a node's socket address (0.0.0.0 for a wildcard).
    local_ip: str | None = None


@dataclass(slots=True)
class Step:
    name: str
    ok: bool
    detail: str


@dataclass(slots=True)
class Candidate:
    """One route of the matched rule, with what was learned about it."""

    route: RouteInfo
    supplier: str
    price: Decimal | None = None
    currency: str | None = None
    prefix: str = ""
    buy: Match | None = None  # the supplier's buy rate for the number, if it has one
    quality: float | None = None  # ASR % or ACD s, None when too few attempts
    rank: float | None = None  # quality rounded to the rule's tolerance
    excluded: str = ""  # why it is out; empty when it is in
    alert_id: int | None = None  # the fraud alert that excludes it (or admitted it on trial)


@dataclass(frozen=True, slots=True)
class Target:
    """One attempt OpenSIPS may make: a gateway and the numbers to send it, or a SIP
    account (`aor`) that OpenSIPS looks up where it is registered."""

    route_id: int | None
    supplier_id: int | None  # who charges us for the call: none on-net
    gateway_id: int | None
    uri: str
    caller: str
    callee: str
    setup_timeout: int | None
    max_calls: int | None
    stop_hunting: bool
    aor: str = ""
    ring: tuple = ()  # SIP accounts (user@domain) rung at once, a DID's ring group
    # The route's wishes: record its calls, keep their SIP messages, the codecs it takes
    # (() for any: a caller offering none of them is transcoded by FreeSWITCH).
    record: bool = False
    capture: bool = False
    codecs: tuple = ()


@dataclass
class Decision:
    request: CallRequest
    at: datetime
    action: str = "reject"  # route | reject | redirect
    code: int = 403
    reason: str = ""
    peer: PeerInfo | None = None
    node_id: int | None = None
    caller: str = ""
    caller_before: str = ""  # as received
    callee_before: str = ""  # as received, without the tech prefix
    callee: str = ""
    sell: Match | None = None
    plan: str = ""
    rule: RuleInfo | None = None
    candidates: list[Candidate] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    redirect_uri: str = ""
    max_duration: int = 0
    amount: Decimal | None = None
    available: Decimal | None = None
    reservation: int | None = None
    # "off-net" (to a supplier), "on-net" (to an account or DID of ours) or "did" (a
    # supplier's call to one of our DIDs: `peer` is the DID's customer, who pays).
    kind: str = "off-net"
    did: DidInfo | None = None
    # The buy tariffs the reservation carries when they do not come from `candidates`.
    buy: dict | None = None
    cps_node: int | None = None  # the asking node's share of the peer's calls per second
    recording_stereo: bool = True  # caller and callee on a channel each (ClusterSettings)
    capture: bool = False  # keep the call's SIP messages (settled by `settle`)
    # (peer id or None, refusal kind) -> file: what a refusal plays first (apps.media.announcements)
    announcements: dict = field(default_factory=dict)
    node: NodeInfo | None = None  # the node asking, once known
    ringing_timeout: int = 60  # seconds a call may ring (OPENSIPS_RINGING_TIMEOUT)
    # Repeated-number controllers whose alert for this call's number is already open: not
    # counted again (the alert refuses, or has warned, until it ends).
    alerted: set = field(default_factory=set)
    steps: list[Step] = field(default_factory=list)

    def step(self, name: str, detail: str, *, ok: bool = True) -> None:
        self.steps.append(Step(name, ok, detail))

    def reject(self, code: int, reason: str, step: str, detail: str = "") -> "Decision":
        self.action, self.code, self.reason = "reject", code, reason
        self.step(step, detail or reason, ok=False)
        return self

    @property
    def routed(self) -> bool:
        return self.action == "route"

    @property
    def local_time(self) -> str:
        """The call's moment on the customer's clock ('Sat 23:10 Europe/Berlin'), which its
        routing windows and sell price periods are read on; "" before it is identified."""
        return local_label(self.at, self.peer.zone) if self.peer else ""

    def records(self, target: Target) -> bool:
        """Whether the call is recorded when it goes to `target`: the paying peer's or the route's wish."""
        return bool(self.peer and self.peer.record) or target.record

    def recording(self) -> dict | None:
        """Where the call's recording goes (below each node's recordings directory), and how.

        Named after the Call-ID and the reservation: a Call-ID seen twice on one node a day
        (a retried call) does not overwrite the first recording.
        """
        if not self.routed or not any(self.records(target) for target in self.targets):
            return None
        name = RECORDING_NAME_UNSAFE.sub("_", self.request.call_id)[:100]
        return {
            "path": f"{self.request.node}/{self.at:%Y/%m/%d}/{name}-{self.reservation or 0}.wav",
            "stereo": self.recording_stereo,
        }

    def media_leg(self, target: Target) -> str | None:
        """FreeSWITCH's dial string for `target` when the call goes through it (docs/MEDIA.md).

        A call that needs media reaches FreeSWITCH once, with the legs of every target left
        (OpenSIPS joins them with "|"): FreeSWITCH tries them in turn, each sent back through
        this node's OpenSIPS, so that hunting never offers FreeSWITCH the same INVITE twice
        (it would answer 482 Request merged). Each leg carries the route's setup timeout
        (leg_progress_timeout: until it rings), the ringing time, the route's codecs and,
        in X-SS-Route, whom OpenSIPS must name in the CDR when it answers. A SIP account of
        ours (`aor`, `ring`) is looked up by OpenSIPS and never gets a leg.
        """
        if not target.uri or target.aor or target.ring or self.node is None:
            return None
        variables = [f"leg_timeout={self.ringing_timeout}"]
        if target.setup_timeout:
            variables.append(f"leg_progress_timeout={target.setup_timeout}")
        if target.codecs:
            variables.append(f"absolute_codec_string='{','.join(target.codecs)}'")
        variables.append(
            f"sip_h_X-SS-Route={target.supplier_id or 0}:{target.gateway_id or 0}:{target.callee}"
        )
        host = target.uri.removeprefix("sip:")
        opensips = f"[{self.node.sip_address}]" if ":" in self.node.sip_address else self.node.sip_address
        return (
            f"[{','.join(variables)}]sofia/smartswitch/{target.callee}@{host}"
            f";fs_path=sip:{opensips}:{self.node.sip_port}"
        )

    def announcement(self) -> dict | None:
        """What FreeSWITCH plays before this refusal (183 with audio, then the code), if anything."""
        if self.action != "reject" or not self.steps or self.node is None or not self.node.media_enabled:
            return None
        kind = refusal_kind(self.steps[-1].name, self.code)
        name = announcement_for(self.announcements, self.peer.id if self.peer else None, kind)
        if name is None:
            return None
        return {"file": name, "code": self.code, "reason": self.reason}

    def as_response(self) -> dict:
        """The JSON body OpenSIPS reads (docs/CALL_CONTROL.md)."""
        peer = self.peer
        return {
            "action": self.action,
            "code": self.code,
            "reason": self.reason,
            "call_id": self.request.call_id,
            "peer_id": peer.id if peer else None,
            "max_duration": self.max_duration,
            "reservation": self.reservation,
            "caller": self.caller,
            "callee": self.callee,
            "destination": self.sell.destination if self.sell else "",
            "kind": self.kind,
            "routes": [
                {
                    "route_id": target.route_id,
                    "supplier_id": target.supplier_id,
                    "gateway_id": target.gateway_id,
                    "uri": target.uri,
                    "caller": target.caller,
                    "callee": target.callee,
                    "setup_timeout": target.setup_timeout,
                    "max_calls": target.max_calls,
                    "stop_hunting": target.stop_hunting,
                    "aor": target.aor or None,
                    "ring": list(target.ring) or None,
                    "record": self.records(target),
                    # The codecs as FreeSWITCH offers them to the route, and as a POSIX
                    # regular expression for OpenSIPS's codec_exists_re on the caller's offer.
                    "codecs": ",".join(target.codecs) or None,
                    "codecs_re": f"^({'|'.join(target.codecs)})$" if target.codecs else None,
                    "leg": self.media_leg(target),
                }
                for target in self.targets
            ],
            "redirect": self.redirect_uri or None,
            "record": bool(peer and peer.record and self.routed),
            "recording": self.recording(),
            "capture": self.capture,
            "announce": self.announcement(),
            "limits": {
                "max_calls": peer.max_calls if peer else None,
                "cps": peer.max_cps if peer else None,
                "cps_node": self.cps_node,
            },
        }


def decide(snapshot: Snapshot, request: CallRequest, *, at: datetime) -> Decision:
    """Everything but the money: identification, checks, rate, routes in order."""
    decision = Decision(request, at)
    node = snapshot.nodes.get(request.node)
    if node is None:
        return decision.reject(403, f"Unknown node {request.node}", "node")
    decision.node_id = node.id
    decision.node = node
    decision.announcements = snapshot.announcements
    decision.recording_stereo = snapshot.recording_stereo
    decision.ringing_timeout = settings.OPENSIPS_RINGING_TIMEOUT
    if not node.enabled:
        return decision.reject(503, f"Node {node.name} is disabled", "node")
    if snapshot.banned and request.source_ip and _banned(snapshot, request.source_ip, decision):
        return decision

    peer = _identify(snapshot, request, decision)
    if peer is None:
        return decision
    if peer.role == SUPPLIER:
        return _inbound(snapshot, peer, decision)
    if not _may_call(snapshot, peer, node, decision):
        return decision

    decision.caller = peer.rewrite("ingress", "caller", decision.caller_before)
    decision.callee = peer.rewrite("ingress", "callee", decision.callee_before)
    decision.step(
        "rewrite",
        f"caller {decision.caller_before or '(none)'} → {decision.caller or '(none)'}, "
        f"callee {decision.callee_before} → {decision.callee}",
    )
    if _blocked(snapshot, peer, request, decision):
        return decision
    if snapshot.numbers and _refused_number(snapshot, peer, decision):
        return decision

    did = snapshot.dids.get(decision.callee)
    if did is not None and did.supplier_id == peer.id:
        # A user peer delivering a call to one of our DIDs it supplies.
        return _inbound(snapshot, peer, decision)
    if did is not None or not decision.callee.isdigit():
        return _on_net(snapshot, peer, did, decision)

    if peer.sell_table_id is None:
        return decision.reject(404, "No sell price list", "sell rate")
    sell = rate_for(peer.sell_table_id, decision.callee, at, zone=peer.zone)
    if sell is None:
        return decision.reject(404, f"No rate for {decision.callee}", "sell rate")
    decision.sell = sell
    decision.step(
        "sell rate",
        f"{sell.prefix} {sell.destination}: {sell.tariff.price}/min {peer.currency}, "
        f"fee {sell.tariff.connection_fee}, {sell.tariff.min_seconds}/{sell.tariff.increment_seconds}"
        f"/{sell.tariff.free_seconds}"
        + (f", period {sell.period} at {decision.local_time}" if sell.period else ""),
    )
    if _too_dear(peer, sell.tariff.price, decision):
        return decision

    rule = _find_rule(snapshot, peer, decision)
    if rule is None:
        return decision
    if rule.method == Method.BLOCK:
        return decision.reject(403, "Blocked by routing", "routing")
    _order_routes(snapshot, peer, rule, decision)
    if not decision.targets:
        return decision.reject(503, "No route", "routes")
    return _routed(snapshot, decision)


def _routed(snapshot: Snapshot, decision: Decision) -> Decision:
    decision.action, decision.code, decision.reason = "route", 200, "OK"
    decision.cps_node = cps_share(snapshot, decision.peer, decision.node_id)
    return decision


def cps_share(snapshot: Snapshot, peer: PeerInfo, node_id: int) -> int | None:
    """The calls per second of `peer` that node `node_id` admits (docs/CALL_CONTROL.md).

    The peer's limit is split among the live nodes that serve it (its assigned nodes, else
    every node): each gets the quotient and the first ones by id one more each, so that
    the shares add up to the limit exactly and no node asks another per call. A limit
    below the number of nodes cannot be split so: each node then admits one a second.
    """
    if peer.max_cps is None:
        return None
    live = snapshot.live_node_ids
    serving = [n for n in live if n in peer.node_ids] if peer.node_ids else list(live)
    if node_id not in serving:
        return peer.max_cps  # a node nobody counts on (disabled, silent): the whole limit
    share, rest = divmod(peer.max_cps, len(serving))
    return max(1, share + (1 if serving.index(node_id) < rest else 0))


def _identify(snapshot: Snapshot, request: CallRequest, decision: Decision) -> PeerInfo | None:
    callee = request.callee
    if request.auth_user:
        peer_id = snapshot.sip_logins.get(request.auth_user.lower())
        if peer_id is None:
            decision.reject(403, f"Unknown SIP account {request.auth_user}", "identify")
            return None
        candidates, how = [peer_id], f"SIP account {request.auth_user}"
    else:
        candidates = []
        if request.source_ip:
            candidates = snapshot.addresses.peers(request.source_ip, request.source_port, request.transport)
        how = f"source address {request.source_ip}"
        if request.peer_id is not None:
            if request.peer_id not in snapshot.peers:
                decision.reject(403, f"Unknown peer {request.peer_id}", "identify")
                return None
            # OpenSIPS's address table names one peer per address; peers sharing the
            # address are told apart below by their tech prefix.
            candidates = [request.peer_id, *(p for p in candidates if p != request.peer_id)]
            how = f"address table (peer {request.peer_id})"
    known = [snapshot.peers[p] for p in candidates if p in snapshot.peers]
    peers = [p for p in known if p.role in CUSTOMER_ROLES]
    if not peers:
        # A supplier (OpenSIPS's address group 2: its gateways) may only deliver calls to
        # our DIDs (_inbound).
        supplier = next((p for p in known if p.role == SUPPLIER), None)
        if supplier is None:
            decision.reject(403, "Unknown peer", "identify")
            return None
        decision.caller_before, decision.callee_before = request.caller, callee
        decision.step("identify", f"supplier {supplier.name} (#{supplier.id}) by {how}")
        return supplier
    matching = [p for p in peers if not p.tech_prefix or callee.startswith(p.tech_prefix)]
    if not matching:
        decision.reject(403, "The number lacks the peer's tech prefix", "identify")
        return None
    peer = max(matching, key=lambda p: len(p.tech_prefix))  # the first of the longest
    decision.peer = peer
    decision.caller_before = request.caller
    decision.callee_before = callee[len(peer.tech_prefix) :]
    detail = f"{peer.name} (#{peer.id}) by {how}"
    if peer.tech_prefix:
        detail += f", tech prefix {peer.tech_prefix} removed"
    decision.step("identify", detail)
    return peer


def _inbound(snapshot: Snapshot, supplier: PeerInfo, decision: Decision) -> Decision:
    """A supplier's call to one of our DIDs: its customer pays, the supplier charges us."""
    decision.caller = supplier.rewrite("ingress", "caller", decision.caller_before)
    decision.callee = supplier.rewrite("ingress", "callee", decision.callee_before)
    did = snapshot.dids.get(decision.callee)
    if did is None or did.supplier_id != supplier.id:
        detail = f"{decision.callee} is no DID of {supplier.name}"
        return decision.reject(404, "Unknown number", "DID", detail)
    decision.did = did
    if did.customer_id is None:
        return decision.reject(404, "Number not in service", "DID", f"DID {did.number} is in stock")
    owner = snapshot.peers.get(did.customer_id)
    why = _cannot_receive(owner)
    if why:
        return decision.reject(480, "Temporarily unavailable", "DID", f"DID {did.number}: {why}")
    decision.peer, decision.kind = owner, "did"
    decision.targets = _did_targets(did, decision, supplier_id=supplier.id)
    if not decision.targets:
        return decision.reject(480, "Temporarily unavailable", "DID", f"DID {did.number} has no target")
    decision.sell = Match(did.number, did.sell, f"DID {did.number}", decision.at, None)
    decision.buy = {supplier.id: (did.number, did.buy)}
    decision.step(
        "DID",
        f"{did.number} of {owner.name}: {did.sell.price}/min to {owner.name}, {did.buy.price}/min "
        f"from {supplier.name}; {len(decision.targets)} target(s)",
    )
    return _routed(snapshot, decision)


def _on_net(snapshot: Snapshot, peer: PeerInfo, did: DidInfo | None, decision: Decision) -> Decision:
    """A customer's call to one of our DIDs or SIP accounts, priced at its list's on-net price."""
    if did is not None:
        if did.customer_id is None:
            return decision.reject(404, "Number not in service", "on-net", f"DID {did.number} is in stock")
        owner_id, what = did.customer_id, f"DID {did.number}"
        targets = _did_targets(did, decision, supplier_id=None)
    else:
        account = _account(snapshot, decision)
        if account is None:
            return decision.reject(404, "Not found", "on-net", f"no number or SIP account {decision.callee}")
        aor, owner_id = account
        what = f"SIP account {aor}"
        targets = [_own_target(decision, None, aor=aor)]
    decision.kind, decision.did = "on-net", did
    owner = snapshot.peers.get(owner_id)
    why = _cannot_receive(owner)
    if why or not targets:
        return decision.reject(480, "Temporarily unavailable", "on-net", f"{what}: {why or 'no target'}")
    price = snapshot.on_net_prices.get(peer.sell_table_id) if peer.sell_table_id else None
    if price is None:
        return decision.reject(404, "No sell price list", "on-net")
    if _too_dear(peer, price, decision):
        return decision
    decision.sell = Match("", Tariff(price), ON_NET, decision.at, None)
    decision.buy = {}
    decision.targets = targets
    decision.step("on-net", f"{what} of {owner.name}: {price}/min {peer.currency}")
    return _routed(snapshot, decision)


def _account(snapshot: Snapshot, decision: Decision) -> tuple[str, int] | None:
    """The SIP account a call is to: (AOR, owner's peer id), or None.

    By "user@domain" when the request names a domain that is not a node's address; else in
    the caller's own domain; else, for a name that is not a number, the one account of that
    name. A number is never taken for an account of another domain: that would let an
    account named like a popular number take that number's calls.
    """
    request, user = decision.request, decision.callee.lower()
    domain = (request.callee_domain or "").lower()
    if domain and domain not in snapshot.node_hosts:
        return snapshot.sip_targets.get(f"{user}@{domain}")
    if request.auth_user and "@" in request.auth_user:
        own = request.auth_user.rpartition("@")[2].lower()
        found = snapshot.sip_targets.get(f"{user}@{own}")
        if found is not None:
            return found
    return None if user.isdigit() else snapshot.sip_targets.get(user)


def _cannot_receive(owner: PeerInfo | None) -> str:
    if owner is None:
        return "its customer is gone"
    if not owner.enabled:
        return f"{owner.name} is disabled"
    if owner.suspended_reason is not None:
        return f"{owner.name} is suspended: {owner.suspended_reason}"
    if not owner.reseller_active:
        return f"{owner.name}'s reseller is inactive"
    return ""


def _did_targets(did: DidInfo, decision: Decision, *, supplier_id: int | None) -> list[Target]:
    """The DID's targets in order; a ring group's accounts are one target, first, rung at once."""
    targets = []
    if did.ring_all:
        accounts = [t for t in did.targets if t.aor]
        if accounts:
            timeout = max((t.setup_timeout for t in accounts if t.setup_timeout), default=None)
            ring = tuple(t.aor for t in accounts)
            targets.append(_own_target(decision, supplier_id, setup_timeout=timeout, ring=ring))
    for target in did.targets:
        if target.aor and not did.ring_all:
            targets.append(
                _own_target(decision, supplier_id, setup_timeout=target.setup_timeout, aor=target.aor)
            )
        elif not target.aor and target.gateway.enabled:
            gateway = target.gateway
            targets.append(
                _own_target(
                    decision,
                    supplier_id,
                    setup_timeout=target.setup_timeout,
                    gateway_id=gateway.id,
                    uri=gateway.uri,
                    callee=gateway.prefix + decision.callee[gateway.strip_digits :],
                )
            )
    return targets


def _own_target(decision: Decision, supplier_id: int | None, **fields) -> Target:
    """A target of ours (an account, a ring group, a DID customer's gateway): no route of a
    plan, no route limits; the callee as call control settled it unless given."""
    values = {
        "route_id": None,
        "supplier_id": supplier_id,
        "gateway_id": None,
        "uri": "",
        "caller": decision.caller,
        "callee": decision.callee,
        "setup_timeout": None,
        "max_calls": None,
        "stop_hunting": False,
    }
    return Target(**{**values, **fields})


def _may_call(snapshot: Snapshot, peer: PeerInfo, node, decision: Decision) -> bool:
    if not peer.enabled:
        decision.reject(403, "Peer disabled", "status")
        return False
    if peer.suspended_reason is not None:
        decision.reject(403, f"Peer suspended: {peer.suspended_reason}", "status")
        return False
    if not peer.reseller_active:
        decision.reject(403, "Reseller inactive", "status")
        return False
    decision.step("status", "enabled")
    if snapshot.distributor_ip and decision.request.local_ip == snapshot.distributor_ip:
        _distribute(snapshot, peer, decision)
        return False
    if peer.node_ids and node.id not in peer.node_ids:
        # The peer's own nodes that are up: enabled, with a fresh heartbeat (all enabled nodes
        # count as up where no node beats), in name order.
        live = set(snapshot.live_node_ids)
        assigned = sorted(
            (n for n in snapshot.nodes.values() if n.id in peer.node_ids and n.enabled and n.id in live),
            key=lambda n: n.name,
        )
        if not assigned and snapshot.serve_when_assigned_nodes_down:
            decision.step("node", f"served on {node.name} while the peer's own nodes are down")
            return True
        if snapshot.redirect_to_assigned_node and assigned:
            target = assigned[0]
            _redirect(decision, target)
            decision.step("node", f"not served on {node.name}: redirect to {target.name}", ok=False)
        else:
            decision.reject(403, f"Not served on node {node.name}", "node")
        return False
    decision.step("node", f"served on {node.name}" if peer.node_ids else "served on every node")
    return True


def _distribute(snapshot: Snapshot, peer: PeerInfo, decision: Decision) -> None:
    """Redirect a call sent to the shared IP to the live node with the fewest calls.

    The peer's own nodes if it has some up (else, with service-level HA, any live node);
    each node's load is its open reservations as last counted (every LIVE_NODES_SECONDS)
    plus the calls this process sent it since, so that calls between two counts spread
    instead of all going to the node that was least loaded at the count.
    """
    up = set(snapshot.live_node_ids)
    live = [n for n in snapshot.nodes.values() if n.enabled and n.id in up]
    own = [n for n in live if n.id in peer.node_ids]
    if peer.node_ids and not own and not snapshot.serve_when_assigned_nodes_down:
        decision.reject(503, "No node of this peer is up", "node")
        return
    candidates = own or live
    if not candidates:
        decision.reject(503, "No node is up", "node")
        return
    target = min(candidates, key=lambda n: (snapshot.node_loads.get(n.id, 0), n.name))
    snapshot.node_loads[target.id] = snapshot.node_loads.get(target.id, 0) + 1
    _redirect(decision, target)
    decision.step("node", f"distributed to {target.name}", ok=False)


def _redirect(decision: Decision, target) -> None:
    """Answer 302 to the callee at node `target`'s own address."""
    decision.action, decision.code, decision.reason = "redirect", 302, f"Served by {target.name}"
    host = f"[{target.sip_address}]" if ":" in target.sip_address else target.sip_address
    decision.redirect_uri = f"sip:{decision.request.callee}@{host}:{target.sip_port}"


def _blocked(snapshot: Snapshot, peer: PeerInfo, request: CallRequest, decision: Decision) -> bool:
    """Peer's and global blocklists, on the numbers as received and as rewritten.

    "As received" is after the tech prefix is removed: the prefix names a product of the
    customer, not a destination, and must not be read as one.
    """
    callees = {decision.callee, decision.callee_before}
    numbers = {
        Blocklist.Kind.DESTINATION: callees,
        Blocklist.Kind.CALLEE: callees,
        Blocklist.Kind.CALLER: {decision.caller, decision.caller_before},
    }
    for blocklist_id in (*peer.blocklist_ids, *snapshot.global_blocklist_ids):
        blocklist = snapshot.blocklists.get(blocklist_id)
        if blocklist is None:
            continue
        for number in numbers[blocklist.kind]:
            hit = blocklist.match(number)
            if hit is not None:
                decision.reject(403, f"Blocked by {blocklist.name} ({blocklist.kind} {hit})", "blocklists")
                return True
    decision.step("blocklists", "not blocked")
    return False


def _find_rule(snapshot: Snapshot, peer: PeerInfo, decision: Decision) -> RuleInfo | None:
    """The rule of the longest prefix (then destination) in force at the call's moment.

    A rule with a window is in force in its hours on the customer's clock only; it is tried
    before a rule of the same prefix without one, so in its hours it wins. The clock is
    read once, and only when a window is met: plans without windows pay nothing for them.
    """
    if peer.plan_id is None:
        decision.reject(503, "No routing plan", "routing")
        return None
    callee, destination = decision.callee, decision.sell.destination
    plan, seen = snapshot.plans.get(peer.plan_id), set()
    decision.plan = plan.name if plan else ""
    second, outside = None, []
    while plan is not None and plan.id not in seen:
        seen.add(plan.id)
        for end in range(len(callee), -1, -1):
            for rule in plan.rules.get(callee[:end], ()):
                if not rule.matches_destination(destination):
                    continue
                if rule.window is not None:
                    if second is None:
                        second = second_of_week(decision.at, peer.zone)
                    if not rule.window.covers(second):
                        outside.append(rule)
                        continue
                decision.rule = rule
                what = f"prefix {rule.prefix or '(any)'}" + (
                    f", destination {rule.destination}" if rule.destination else ""
                )
                if rule.window is not None:
                    what += f", window {_window(rule)} at {decision.local_time}"
                decision.step(
                    "routing",
                    f"plan {plan.name} ({peer.plan_source}), rule #{rule.id} {what}: {rule.method}"
                    + _outside(outside, decision),
                )
                return rule
        plan = snapshot.plans.get(plan.parent_id)
    decision.reject(503, "No route", "routing", "No route" + _outside(outside, decision))
    return None


def _window(rule: RuleInfo) -> str:
    return f"{rule.window_name} ({rule.window.text})"


def _outside(rules: list[RuleInfo], decision: Decision) -> str:
    """What check routing says of rules passed over because their window was not open."""
    if not rules:
        return ""
    named = ", ".join(f"#{rule.id} {_window(rule)}" for rule in rules)
    return f"; not in force at {decision.local_time}: {named}"


def _order_routes(snapshot: Snapshot, peer: PeerInfo, rule: RuleInfo, decision: Decision) -> None:
    sell = decision.sell
    destination = sell.destination.lower()
    for route in rule.routes:
        supplier = snapshot.peers.get(route.supplier_id)
        candidate = Candidate(route, supplier.name if supplier else f"#{route.supplier_id}")
        decision.candidates.append(candidate)
        candidate.excluded = _exclusion(snapshot, peer, supplier, route, candidate, decision)
        stats = snapshot.quality.get((route.supplier_id, destination))
        if stats is not None and stats[0] >= MIN_QUALITY_ATTEMPTS:
            attempts, answered, seconds = stats
            if rule.quality_metric == QualityMetric.ACD:
                candidate.quality = seconds / answered if answered else 0.0
            else:
                candidate.quality = 100.0 * answered / attempts
            step = rule.quality_tolerance or 1
            candidate.rank = candidate.quality // step * step

    chosen = [c for c in decision.candidates if not c.excluded]
    chosen = _sort(chosen, rule, decision.request.call_id)
    for position, candidate in enumerate(chosen):
        if candidate.route.stop_hunting and position + 1 < len(chosen):
            for dropped in chosen[position + 1 :]:
                dropped.excluded = f"after {candidate.supplier}, which stops hunting"
            chosen = chosen[: position + 1]
            break
    for candidate in chosen:
        decision.targets.extend(_targets(snapshot, candidate, decision))
    order = ", ".join(f"{c.supplier} {c.price}" for c in chosen) or "none"
    decision.step("routes", f"{rule.method}: {order}", ok=bool(chosen))


def _exclusion(snapshot, peer, supplier, route, candidate, decision) -> str:
    """Why the route cannot take this call, or "" when it can.

    The buy price is looked up first so that check routing shows it for excluded routes too.
    """
    if supplier is None:
        return "unknown supplier"
    callee = decision.callee
    # A supplier's time periods are read on its own clock: they are its prices.
    buy = (
        rate_for(supplier.buy_table_id, callee, decision.at, zone=supplier.zone)
        if supplier.buy_table_id
        else None
    )
    if buy is not None:
        candidate.buy = buy
        candidate.price, candidate.currency, candidate.prefix = (
            buy.tariff.price,
            supplier.currency,
            buy.prefix,
        )
    if not route.enabled:
        return "route disabled"
    if not supplier.enabled:
        return "supplier disabled"
    if supplier.suspended_reason is not None:
        return f"supplier suspended: {supplier.suspended_reason}"
    if snapshot.excluded_routes:
        why = _excluded_by_alert(snapshot, peer, supplier, candidate, decision)
        if why:
            return why
    if supplier.id == peer.id:
        return "loop: the call came from this peer"
    for blocklist_id in (*supplier.blocklist_ids, *snapshot.global_blocklist_ids):
        blocklist = snapshot.blocklists.get(blocklist_id)
        if blocklist is not None and blocklist.kind != Blocklist.Kind.CALLER and blocklist.match(callee):
            return f"blocked by {blocklist.name}"
    if supplier.buy_table_id is None:
        return "no buy price list"
    if buy is None:
        return "no rate"
    if peer.profit_control != ProfitControl.ALLOW_LOSS:
        sell_price = decision.sell.tariff.price
        if supplier.currency != peer.currency:
            return f"margin unknown: buys in {supplier.currency}, sells in {peer.currency}"
        if peer.profit_control == ProfitControl.PROFIT_ONLY and buy.tariff.price >= sell_price:
            return f"margin: buys at {buy.tariff.price}, sells at {sell_price} (profit only)"
        if buy.tariff.price > sell_price:
            return f"margin: buys at {buy.tariff.price}, sells at {sell_price} (no loss)"
    if route.max_calls is not None and snapshot.live_calls.get(route.id, 0) >= route.max_calls:
        return f"limit: {route.max_calls} live calls"
    if supplier.id in snapshot.suppliers_without_money:
        return "supplier balance: our prepaid money there has run out"
    if not _gateways(snapshot, route):
        return "no enabled gateway"
    if not _gateways(snapshot, route, decision.request.source_ip):
        return f"loop: its gateway is the call's source address {decision.request.source_ip}"
    return ""


def _until(info: AlertInfo, moment: datetime | None, peer: PeerInfo) -> str:
    """ " until 14:05" on the customer's clock."""
    if moment is None:
        return " until a person ends it"
    return f" until {moment.astimezone(peer.zone):%H:%M}"


def _excluded_by_alert(snapshot, peer, supplier, candidate, decision) -> str:
    """A termination alert in force on the supplier (for this destination, or all of them).

    After the block, during the trial, the route takes `trial_share` % of calls: which
    ones is a stable hash of the Call-ID and the alert, so every process and check routing
    admit the same calls, and a retried request gets the same answer.
    """
    destination = decision.sell.destination.lower()
    for key in ((supplier.id, destination), (supplier.id, "")):
        info = snapshot.excluded_routes.get(key)
        if info is None:
            continue
        if info.blocks(decision.at):
            candidate.alert_id = info.id
            return f"fraud control: {info.text} (alert #{info.id}){_until(info, info.ends_at, peer)}"
        if info.in_trial(decision.at):
            candidate.alert_id = info.id
            draw = zlib.crc32(f"{decision.request.call_id}:{info.id}".encode()) % 100
            if draw >= info.trial_share:
                return (
                    f"fraud control: in trial ({info.trial_share} % of calls"
                    f"{_until(info, info.trial_until, peer)}, alert #{info.id}): not this call"
                )
    return ""


def _banned(snapshot: Snapshot, source_ip: str, decision: Decision) -> bool:
    """The source address is banned by the SIP brute-force controller (OpenSIPS bans it at
    the edge too; this is the second line, for a request that got past it)."""
    info = snapshot.banned.get(source_ip)
    if info is None:
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return False
        mapped = address.ipv4_mapped if address.version == 6 else None
        info = snapshot.banned.get(str(mapped or address))
    if info is None or not info.blocks(decision.at):
        return False
    until = "" if info.ends_at is None else f" until {info.ends_at:%Y-%m-%d %H:%M} UTC"
    decision.reject(403, "Banned", "fraud", f"fraud control: {source_ip} banned (alert #{info.id}){until}")
    return True


def _refused_number(snapshot: Snapshot, peer: PeerInfo, decision: Decision) -> bool:
    """A repeated-number alert in force on the callee or the caller of this customer's call."""
    for number, caller_side in ((decision.callee, False), (decision.caller, True)):
        for info in snapshot.numbers.get(number, ()) if number else ():
            if info.caller_side != caller_side or not info.covers(peer) or not info.blocks(decision.at):
                continue
            decision.alerted.add(info.controller_id)
            if info.effect == Alert.Effect.BLOCK_NUMBER:
                side = "caller" if caller_side else "callee"
                decision.reject(
                    403,
                    "Repeated number",
                    "fraud",
                    f"fraud control: {side} {number} refused, {info.text} (alert #{info.id})"
                    f"{_until(info, info.ends_at, peer)}",
                )
                return True
    return False


def _too_dear(peer: PeerInfo, price: Decimal, decision: Decision) -> bool:
    """The sell price per minute is above the customer's maximum price (Peer.max_price)."""
    if peer.max_price is None or price <= peer.max_price:
        return False
    decision.reject(
        403,
        f"Price {_amount(price)}/min above the customer's maximum {_amount(peer.max_price)}",
        "price limit",
    )
    return True


def _amount(value: Decimal) -> str:
    """0.450000 as "0.45", 0.123400 as "0.1234": at least two places, no trailing zeros."""
    text = f"{value.normalize():f}"
    whole, _, places = text.partition(".")
    return f"{whole}.{places.ljust(2, '0')}"


def _sort(chosen: list[Candidate], rule: RuleInfo, call_id: str) -> list[Candidate]:
    def cost(c: Candidate):
        return (c.price, c.route.priority, c.route.id)

    if rule.method == Method.PRIORITY:
        return sorted(chosen, key=lambda c: (c.route.priority, c.price, c.route.id))
    if rule.method == Method.QUALITY:
        # Known quality first, best first; near-equal (same rounded value) by cost.
        return sorted(chosen, key=lambda c: (c.rank is None, -(c.rank or 0), *cost(c)))
    if rule.method == Method.WEIGHT:
        # Weighted random order without replacement (Efraimidis-Spirakis), seeded by the
        # Call-ID: a route with weight 70 is first on about 70 % of calls, every process
        # and check routing order the same call the same way.
        draw = random.Random(zlib.crc32(call_id.encode()))
        keyed = []
        for c in sorted(chosen, key=lambda c: c.route.id):
            u = draw.random()
            keyed.append((u ** (1.0 / c.route.weight) if c.route.weight else -1.0, c))
        return [c for _key, c in sorted(keyed, key=lambda pair: -pair[0])]
    return sorted(chosen, key=cost)


def _gateways(snapshot: Snapshot, route: RouteInfo, source_ip: str | None = None) -> list[GatewayInfo]:
    """The route's enabled gateways, less those at `source_ip`: a call is never sent back to
    the address it came from (two peers on one box, or a supplier's SBC that is also where
    a customer's calls come from)."""
    if route.gateway_id is not None:
        gateway = snapshot.gateway_by_id.get(route.gateway_id)
        found = [gateway] if gateway is not None and gateway.enabled else []
    else:
        found = [g for g in snapshot.gateways.get(route.supplier_id, ()) if g.enabled]
    if source_ip:
        found = [g for g in found if g.host != source_ip.lower()]
    return found


def _targets(snapshot: Snapshot, candidate: Candidate, decision: Decision) -> list[Target]:
    route = candidate.route
    supplier = snapshot.peers[route.supplier_id]
    caller = supplier.rewrite("egress", "caller", decision.caller)
    callee = supplier.rewrite("egress", "callee", decision.callee)
    return [
        Target(
            route.id,
            supplier.id,
            gateway.id,
            gateway.uri,
            caller,
            gateway.prefix + callee[gateway.strip_digits :],
            route.setup_timeout,
            route.max_calls,
            route.stop_hunting,
            record=route.record,
            capture=route.capture or supplier.capture,
            codecs=route.codecs or supplier.codecs,
        )
        for gateway in _gateways(snapshot, route, decision.request.source_ip)
    ]


def settle(snapshot: Snapshot, decision: Decision, *, reserve: bool = True) -> Decision:
    """Grant the longest call the customer's money pays for: reserve it, or only look."""
    if not decision.routed:
        return decision
    peer, first = decision.peer, decision.targets[0]
    if peer.account_id is None:
        return decision.reject(402, "No account", "money")
    node = decision.node
    if not node.media_enabled and any(decision.records(target) for target in decision.targets):
        decision.targets = []
        return decision.reject(
            503, "Media unavailable", "media", f"{node.name} runs no FreeSWITCH to record on"
        )
    if decision.kind != "did" and snapshot.repeat_rules and _repeated(snapshot, decision, reserve=reserve):
        decision.targets = []
        return decision
    spend_day = spend_month = None
    reseller_limits = None
    if peer.spend_limited:
        spend_day = decision.at.astimezone(peer.zone).date()
        spend_month = spend_day.replace(day=1)
        limits = snapshot.reseller_limits.get(peer.reseller_id)
        if limits is not None:
            reseller_limits = (limits.daily, limits.monthly, limits.account_ids, limits.credit_account_id)
    bundle = bundle_day = None
    if offers := snapshot.bundles.get(peer.account_id):
        # A bundle of the customer's that covers the call lets it last on the bundle's
        # seconds or money as well as the account's (apps.bundles).
        bundle_day = decision.at.astimezone(peer.zone).date()
        bundle = first_offer(offers, decision.callee, decision.sell.destination, bundle_day)
    hold = reservations.Hold(
        account_id=peer.account_id,
        customer_id=peer.id,
        call_id=decision.request.call_id,
        tariff=decision.sell.tariff,
        ceiling=snapshot.max_call_duration,
        grace=snapshot.reservation_grace,
        max_calls=peer.max_calls,
        node_id=decision.node_id,
        prefix=decision.sell.prefix,
        destination=decision.sell.destination,
        route_id=first.route_id,
        supplier_id=first.supplier_id,
        # What the rater will charge, whichever of the offered suppliers answers.
        callee=decision.callee,
        caller=decision.caller or None,
        spend_day=spend_day,
        spend_month=spend_month,
        reseller_limits=reseller_limits,
        bundle=bundle,
        bundle_day=bundle_day,
        sell_tariff=decision.sell.tariff,
        buy_tariffs=decision.buy
        if decision.buy is not None
        else {
            c.route.supplier_id: (c.buy.prefix, c.buy.tariff)
            for c in decision.candidates
            if not c.excluded and c.buy is not None
        },
    )
    try:
        grant = reservations.reserve(hold, now=decision.at) if reserve else reservations.estimate(hold)
    except reservations.TooManyCalls as exc:
        decision.targets = []
        return decision.reject(486, "Too many calls", "money", str(exc))
    except reservations.SpendLimitReached as exc:
        decision.targets = []
        return decision.reject(402, "Spend limit reached", "money", str(exc))
    except reservations.InsufficientFunds as exc:
        decision.targets = []
        return decision.reject(402, "Insufficient funds", "money", str(exc))
    decision.capture = (
        peer.capture
        or any(target.capture for target in decision.targets)
        or sampled(decision.request.call_id, snapshot.capture_percent)
    )
    decision.max_duration, decision.amount = grant.seconds, grant.amount
    decision.available, decision.reservation = grant.available, grant.reservation_id
    held = "reserved" if reserve else "would be reserved"
    if grant.available is None:
        before = "money for the maximum duration"
    else:
        before = f"available {grant.available} {peer.currency}, {grant.live_calls} live calls"
    capped = f" (capped by the {grant.limited_by})" if grant.limited_by else ""
    if grant.bundle:
        before = f"{before}; {grant.bundle}"
    decision.step("money", f"{before}: {grant.seconds} s granted{capped}, {grant.amount} {held}")
    return decision


def _repeated(snapshot: Snapshot, decision: Decision, *, reserve: bool) -> bool:
    """Count the customer's recent calls to this number for each repeated-number controller
    that watches it; past the controller's count, open its alert and refuse (or warn).

    A database query per controller that applies, none when no controller applies. Once the
    alert is open the snapshot refuses the number (`_refused_number`) without counting,
    until the alert ends. Check routing (`reserve=False`) counts but opens no alert.
    """
    peer = decision.peer
    for rule in snapshot.repeat_rules:
        if rule.id in decision.alerted or not rule.applies_to(peer):
            continue
        number = decision.caller if rule.caller_side else decision.callee
        if not number:
            continue
        count = reservations.recent_calls(
            number,
            caller=rule.caller_side,
            since=decision.at - timedelta(minutes=rule.window_minutes),
            customer_id=None if rule.cluster_wide else peer.id,
            reseller_id=rule.reseller_id if rule.cluster_wide else None,
            call_id=decision.request.call_id,
            up_to=rule.min_count,
        )
        side = "caller" if rule.caller_side else "callee"
        if count < rule.min_count:
            continue
        detail = (
            f"fraud control: {count} calls with {side} {number} in {rule.window_minutes} min"
            f"{' (all customers)' if rule.cluster_wide else ''}, {rule.min_count} allowed"
        )
        alert = _raise_repeated(rule, peer, number, side, count, decision) if reserve else None
        if alert is not None:
            detail += f" (alert #{alert.pk})"
        if rule.acts:
            decision.reject(403, "Repeated number", "fraud", detail)
            return True
        decision.step("fraud", f"{detail}: warned")
    return False


def _raise_repeated(rule, peer: PeerInfo, number: str, side: str, count: int, decision: Decision):
    from apps.fraud.models import Controller
    from apps.fraud.services import Subject, raise_alert

    whose = "every customer" if rule.cluster_wide else peer.name
    subject = Subject(
        text=f"{side} {number} ({whose})",
        peer_id=None if rule.cluster_wide else peer.id,
        reseller_id=rule.reseller_id if rule.cluster_wide else peer.reseller_id,
        number=number,
    )
    controller = Controller.objects.filter(pk=rule.id).first()
    if controller is None:
        return None  # deleted since the snapshot was built
    alert, _created = raise_alert(
        controller,
        subject,
        effect=Alert.Effect.BLOCK_NUMBER,
        measured=count + 1,
        threshold=rule.min_count,
        attempts=count + 1,
        detail=f"{count + 1} calls with {side} {number} within {rule.window_minutes} min",
        now=decision.at,
    )
    return alert
