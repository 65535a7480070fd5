"""What call control keeps in memory: peers, addresses, plans, routes, blocklists, nodes.

A snapshot is built from the database in a few queries and then read by every call
without touching the ORM. Each process checks at most once a second whether it is still
current (one tiny query on the generation counter, apps.callcontrol.generation, which every
committed transaction that announced a change to what is read here has bumped: see
apps.core.changes) and rebuilds it when not; meanwhile other threads keep answering from
the previous one.
In-force fraud alerts (apps.fraud) are configuration too: raising, ending or undoing one
announces it. They also end by time alone, so each carries its end and the decision compares
it with the call's moment rather than waiting for the rebuild at the end.
Things that move without a configuration change, the live calls per route and the money
of prepaid suppliers, are refreshed on their own short clocks; prices come from the
rate tables' memory-mapped indexes (apps.rates.lookup).
"""

import bisect
import gc
import ipaddress
import logging
import re
import threading
import time
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal

from django.db.models import Count, F, Q
from django.utils import timezone

from apps.billing.models import Account, Reservation
from apps.bundles.services.usage import offers_for
from apps.callcontrol.generation import current_generation
from apps.capture.models import CaptureSettings
from apps.dids.models import Did, DidTarget
from apps.fraud.models import Action, Alert, Controller, Kind, Metric
from apps.media.announcements import announcement_map
from apps.nodes.models import ClusterSettings, Node
from apps.peers.models import (
    Blocklist,
    BlocklistEntry,
    Endpoint,
    Gateway,
    Peer,
    RewriteRule,
    SipAccount,
    parse_codecs,
)
from apps.rates.models import RateTable, TimeProfile
from apps.rates.tariffs import Tariff
from apps.rates.time_windows import TimeProfiles, Windows
from apps.routing.models import QualityStat, Route, RoutingPlan, RoutingRule
from apps.tenancy.models import Reseller

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how stale configuration may be
LIVE_SECONDS = 1.0  # live calls per route
SUPPLIER_MONEY_SECONDS = 5.0  # prepaid suppliers out of money
LIVE_NODES_SECONDS = 5.0  # which nodes beat: they share each peer's calls per second
QUALITY_SECONDS = 60.0
MIN_QUALITY_ATTEMPTS = 10  # below this, a supplier's ASR/ACD says too little to sort by
UTC_ZONE = zoneinfo.ZoneInfo("UTC")


@dataclass(slots=True)
class Rewrite:
    pattern: re.Pattern
    replacement: str

    def apply(self, value: str) -> str:
        return self.pattern.sub(self.replacement, value, count=1)


@dataclass(slots=True)
class PeerInfo:
    id: int
    name: str
    role: str
    reseller_id: int | None
    reseller_active: bool
    enabled: bool
    suspended_reason: str | None
    tech_prefix: str
    node_ids: frozenset
    max_calls: int | None
    max_cps: int | None
    sell_table_id: int | None
    buy_table_id: int | None
    currency: str | None  # of its sell or buy price list
    profit_control: str
    plan_id: int | None  # its own, else its reseller's, else the cluster default
    plan_source: str
    account_id: int | None
    record: bool
    blocklist_ids: tuple
    capture: bool = False
    codecs: tuple = ()  # the codecs it takes (a supplier's), () for any
    rewrites: dict = field(default_factory=dict)  # (direction, field) -> [Rewrite]
    # Its clock: routing windows and its price list's time periods are read on it.
    zone: tzinfo = UTC_ZONE
    max_price: Decimal | None = None  # the dearest sell price per minute it may call at
    # Its account or its reseller has a daily or monthly spend limit: the reservation reads
    # what was spent (docs/FRAUD.md, spend limits).
    spend_limited: bool = False

    def rewrite(self, direction: str, what: str, value: str) -> str:
        for rule in self.rewrites.get((direction, what), ()):
            value = rule.apply(value)
        return value


@dataclass(slots=True)
class GatewayInfo:
    id: int
    peer_id: int
    name: str
    uri: str
    strip_digits: int
    prefix: str
    enabled: bool
    host: str = ""  # as written: an address, or a name


@dataclass(slots=True)
class RouteInfo:
    id: int
    supplier_id: int
    gateway_id: int | None
    priority: int
    weight: int
    max_calls: int | None
    setup_timeout: int | None
    stop_hunting: bool
    enabled: bool
    record: bool = False
    capture: bool = False
    codecs: tuple = ()  # () for the supplier's


@dataclass(slots=True)
class RuleInfo:
    id: int
    plan_id: int
    prefix: str
    destination: str  # lower case
    method: str
    quality_metric: str
    quality_tolerance: int
    position: int
    routes: list
    # The time profile it routes in, compiled (None: at any time); a profile whose text no
    # longer reads covers nothing rather than everything.
    window: Windows | None = None
    window_name: str = ""

    def matches_destination(self, destination: str) -> bool:
        return not self.destination or destination.lower().startswith(self.destination)


@dataclass(slots=True)
class PlanInfo:
    id: int
    name: str
    parent_id: int | None
    rules: dict  # prefix -> [RuleInfo], most specific first


@dataclass(slots=True)
class NodeInfo:
    id: int
    name: str
    enabled: bool
    sip_address: str
    sip_port: int
    secret: str
    media_enabled: bool = True  # the node runs FreeSWITCH


@dataclass(slots=True)
class DidTargetInfo:
    """One target of a DID: a SIP account (its AOR, reached where it is registered) or a gateway."""

    aor: str  # "user@domain", or "" for a gateway
    gateway: GatewayInfo | None
    setup_timeout: int | None


@dataclass(slots=True)
class DidInfo:
    id: int
    number: str  # the first number of a block
    last_number: str  # "" for one number
    supplier_id: int | None
    customer_id: int | None
    sell: Tariff
    buy: Tariff
    targets: list  # [DidTargetInfo] in order
    ring_all: bool = False  # its accounts ring at once (a ring group), its gateways after


class DidIndex:
    """Number -> DID: one dict for single numbers, and per length the blocks in order."""

    def __init__(self) -> None:
        self._single: dict[str, DidInfo] = {}
        self._blocks: dict[int, list[tuple[int, int, DidInfo]]] = defaultdict(list)

    def add(self, did: DidInfo) -> None:
        if did.last_number:
            self._blocks[len(did.number)].append((int(did.number), int(did.last_number), did))
        else:
            self._single[did.number] = did

    def freeze(self) -> None:
        for blocks in self._blocks.values():
            blocks.sort(key=lambda block: block[0])
        self._blocks = dict(self._blocks)

    def get(self, number: str) -> DidInfo | None:
        found = self._single.get(number)
        if found is not None or not number.isdigit():
            return found
        blocks = self._blocks.get(len(number))
        if not blocks:
            return None
        value = int(number)
        # Blocks do not overlap (Did.clean): the last one starting at or below the number.
        index = bisect.bisect_right(blocks, value, key=lambda block: block[0]) - 1
        if index >= 0 and blocks[index][1] >= value:
            return blocks[index][2]
        return None

    def __len__(self) -> int:
        return len(self._single) + sum(len(blocks) for blocks in self._blocks.values())


@dataclass(slots=True)
class BlocklistInfo:
    id: int
    name: str
    kind: str
    prefixes: frozenset
    longest: int

    def match(self, number: str) -> str | None:
        for end in range(min(len(number), self.longest), 0, -1):
            if number[:end] in self.prefixes:
                return number[:end]
        return None


class AddressIndex:
    """Source address -> customer peers, most specific network first (first match wins)."""

    def __init__(self) -> None:
        # (version, mask length) -> network as int -> [(peer id, port, transport)]
        self._by_mask: dict[tuple[int, int], dict[int, list]] = defaultdict(lambda: defaultdict(list))
        self._masks: list[tuple[int, int]] = []

    def add(self, ip: str, mask: int, port: int, transport: str, peer_id: int) -> None:
        network = ipaddress.ip_network(f"{ip}/{mask}", strict=False)
        key = (network.version, mask)
        self._by_mask[key][int(network.network_address)].append((peer_id, port, transport))

    def freeze(self) -> None:
        self._masks = sorted(self._by_mask, key=lambda key: -key[1])
        self._by_mask = {key: dict(networks) for key, networks in self._by_mask.items()}

    def peers(self, source_ip: str, port: int | None = None, transport: str | None = None) -> list[int]:
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return []
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers this way
        value, bits = int(address), address.max_prefixlen
        found: list[int] = []
        for version, mask in self._masks:
            if version != address.version:
                continue
            for peer_id, want_port, want_transport in self._by_mask[version, mask].get(
                value >> (bits - mask) << (bits - mask), ()
            ):
                if want_port and port and want_port != port:
                    continue
                if want_transport != "any" and transport and want_transport != transport.lower():
                    continue
                if peer_id not in found:
                    found.append(peer_id)
        return found


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """An open fraud alert as call control applies it (apps.fraud.models.Alert)."""

    id: int
    text: str  # what was measured: "ASR 10 % < 30 %"
    ends_at: datetime | None  # None: until a person ends it
    trial_until: datetime | None = None
    trial_share: int = 100
    effect: str = Alert.Effect.BLOCK_NUMBER
    controller_id: int | None = None
    peer_id: int | None = None  # a number's customer; None: every customer's calls
    caller_side: bool = False  # a number refused as the caller, not the callee
    reseller_id: int | None = None  # a number refused for every customer: of this reseller

    def covers(self, peer: "PeerInfo") -> bool:
        """A refused number applies to this customer's calls."""
        if self.peer_id is not None:
            return self.peer_id == peer.id
        return self.reseller_id is None or self.reseller_id == peer.reseller_id

    def blocks(self, at: datetime) -> bool:
        """The action holds in full at `at`."""
        return self.ends_at is None or at < self.ends_at

    def in_trial(self, at: datetime) -> bool:
        """Past the block, in the trial that re-admits part of the calls."""
        return (
            self.ends_at is not None
            and self.ends_at <= at
            and self.trial_until is not None
            and at < self.trial_until
        )


@dataclass(frozen=True, slots=True)
class RepeatRule:
    """An enabled repeated-number controller (apps.fraud, kind repeated_number)."""

    id: int
    reseller_id: int | None  # the owner: None is the operator, for every customer
    peer_id: int | None  # one customer only
    caller_side: bool
    min_count: int
    window_minutes: int
    cluster_wide: bool
    acts: bool  # refuses (action block) rather than only warns

    def applies_to(self, peer: "PeerInfo") -> bool:
        if self.peer_id is not None:
            return self.peer_id == peer.id
        return self.reseller_id is None or self.reseller_id == peer.reseller_id


@dataclass(frozen=True, slots=True)
class ResellerLimits:
    """A reseller's spend limits and its customers' accounts, whose spending they sum; and
    its own account with the operator, whose money bounds what they hold together."""

    daily: Decimal | None
    monthly: Decimal | None
    account_ids: tuple
    credit_account_id: int | None = None


@dataclass
class Snapshot:
    generation: int
    built_at: float
    peers: dict[int, PeerInfo]
    addresses: AddressIndex
    sip_logins: dict[str, int]  # "user@domain" and, when unambiguous, "user" -> peer id
    # Enabled SIP accounts as on-net targets: "user@domain" and, when unambiguous, "user"
    # -> (AOR "user@domain" as registered, the owner's peer id).
    sip_targets: dict[str, tuple[str, int]]
    dids: DidIndex
    on_net_prices: dict[int, object]  # sell table id -> on-net price per minute (Decimal)
    node_hosts: frozenset  # the nodes' SIP addresses: a request to one names no domain
    gateways: dict[int, list[GatewayInfo]]  # supplier id -> gateways in try order
    gateway_by_id: dict[int, GatewayInfo]
    plans: dict[int, PlanInfo]
    nodes: dict[str, NodeInfo]
    blocklists: dict[int, BlocklistInfo]
    global_blocklist_ids: tuple
    redirect_to_assigned_node: bool
    serve_when_assigned_nodes_down: bool
    distributor_ip: str | None  # the shared IP, when calls sent to it are distributed
    max_call_duration: int
    reservation_grace: int
    quality_window: int
    live_calls: dict[int, int] = field(default_factory=dict)  # route id -> live calls
    # Enabled nodes with a fresh heartbeat (all enabled nodes when none beats: a node
    # without the heartbeat task). Each peer's calls per second are shared among them.
    live_node_ids: tuple = ()
    live_nodes_checked: float = 0.0
    # Open reservations per node id at the last count, plus the calls distributed to each
    # since (decision._distribute): the distributor's loads.
    node_loads: dict[int, int] = field(default_factory=dict)
    suppliers_without_money: frozenset = frozenset()
    quality: dict[tuple[int, str], tuple[int, int, int]] = field(default_factory=dict)
    # (peer id or None, refusal kind) -> announcement file (apps.media.announcements)
    announcements: dict = field(default_factory=dict)
    # Fraud control: open alerts (each checked against the call's moment) and rules.
    excluded_routes: dict = field(default_factory=dict)  # (supplier id, destination or "") -> AlertInfo
    numbers: dict = field(default_factory=dict)  # number -> [AlertInfo] of repeated-number alerts
    banned: dict = field(default_factory=dict)  # source address -> AlertInfo
    repeat_rules: tuple = ()  # RepeatRule
    reseller_limits: dict = field(default_factory=dict)  # reseller id -> ResellerLimits
    bundles: dict = field(default_factory=dict)  # account id -> (apps.bundles.offers.Offer, ...)
    capture_percent: int = 0  # the sampled share of calls captured (apps.capture)
    recording_stereo: bool = True
    live_checked: float = 0.0
    money_checked: float = 0.0
    quality_checked: float = 0.0
    checked_at: float = 0.0

    def node_by_id(self, node_id: int) -> NodeInfo | None:
        return next((node for node in self.nodes.values() if node.id == node_id), None)


def build() -> Snapshot:
    """Read everything the decision needs from the database."""
    started = time.monotonic()
    generation = current_generation()
    settings = ClusterSettings.load()
    nodes = {
        node.name: NodeInfo(
            node.pk,
            node.name,
            node.enabled,
            node.sip_address,
            node.sip_port,
            node.call_control_secret,
            node.media_enabled,
        )
        for node in Node.objects.all()
    }
    currencies = dict(RateTable.objects.values_list("pk", "currency"))
    accounts, limited = {}, set()
    for peer_id, account_id, daily, monthly in Account.objects.filter(peer__isnull=False).values_list(
        "peer_id", "pk", "daily_spend_limit", "monthly_spend_limit"
    ):
        accounts[peer_id] = account_id
        if daily is not None or monthly is not None:
            limited.add(peer_id)
    # Resellers whose customers' spending is bounded together: by a spend limit, or by the
    # money of the reseller's own account with the operator.
    limited_resellers = {
        pk: (daily, monthly, credit_account)
        for pk, daily, monthly, credit_account in Reseller.objects.filter(
            Q(daily_spend_limit__isnull=False)
            | Q(monthly_spend_limit__isnull=False)
            | Q(account__isnull=False)
        ).values_list("pk", "daily_spend_limit", "monthly_spend_limit", "account")
    }
    node_ids: dict[int, set] = defaultdict(set)
    for peer_id, node_id in Peer.nodes.through.objects.values_list("peer_id", "node_id"):
        node_ids[peer_id].add(node_id)
    peer_blocklists: dict[int, list] = defaultdict(list)
    for peer_id, blocklist_id in Peer.blocklists.through.objects.values_list("peer_id", "blocklist_id"):
        peer_blocklists[peer_id].append(blocklist_id)
    rewrites: dict[int, dict] = defaultdict(lambda: defaultdict(list))
    for rule in RewriteRule.objects.filter(enabled=True).order_by("peer_id", "position", "id"):
        rewrites[rule.peer_id][rule.direction, rule.field].append(
            Rewrite(re.compile(rule.pattern), rule.replacement)
        )
    peers = {}
    zones: dict[str, tzinfo] = {}
    for row in Peer.objects.values(
        "pk",
        "name",
        "role",
        "reseller_id",
        "enabled",
        "suspended_at",
        "suspended_reason",
        "tech_prefix",
        "max_calls",
        "max_cps",
        "sell_rate_table_id",
        "buy_rate_table_id",
        "profit_control",
        "routing_plan_id",
        "record_calls",
        "capture_calls",
        "codecs",
        "time_zone",
        "max_price",
        reseller_active=F("reseller__is_active"),
        reseller_plan_id=F("reseller__routing_plan_id"),
    ):
        plan_id, source = row["routing_plan_id"], "peer"
        if plan_id is None and row["reseller_plan_id"] is not None:
            plan_id, source = row["reseller_plan_id"], "reseller"
        if plan_id is None and settings.default_routing_plan_id is not None:
            plan_id, source = settings.default_routing_plan_id, "cluster default"
        table_id = row["sell_rate_table_id"] or row["buy_rate_table_id"]
        peers[row["pk"]] = PeerInfo(
            id=row["pk"],
            name=row["name"],
            role=row["role"],
            reseller_id=row["reseller_id"],
            reseller_active=row["reseller_active"] is not False,
            enabled=row["enabled"],
            suspended_reason=(row["suspended_reason"] or "suspended") if row["suspended_at"] else None,
            tech_prefix=row["tech_prefix"],
            node_ids=frozenset(node_ids.get(row["pk"], ())),
            max_calls=row["max_calls"],
            max_cps=row["max_cps"],
            sell_table_id=row["sell_rate_table_id"],
            buy_table_id=row["buy_rate_table_id"],
            currency=currencies.get(table_id),
            profit_control=row["profit_control"],
            plan_id=plan_id,
            plan_source=source if plan_id is not None else "",
            account_id=accounts.get(row["pk"]),
            record=row["record_calls"],
            capture=row["capture_calls"],
            codecs=_codecs(row["codecs"]),
            blocklist_ids=tuple(peer_blocklists.get(row["pk"], ())),
            rewrites={key: list(rules) for key, rules in rewrites.get(row["pk"], {}).items()},
            zone=_zone(row["time_zone"], zones),
            max_price=row["max_price"],
            spend_limited=row["pk"] in limited or row["reseller_id"] in limited_resellers,
        )
    reseller_accounts: dict[int, list] = defaultdict(list)
    for peer in peers.values():
        if peer.reseller_id in limited_resellers and peer.account_id is not None:
            reseller_accounts[peer.reseller_id].append(peer.account_id)

    addresses = AddressIndex()
    for ip, mask, port, transport, peer_id in Endpoint.objects.filter(enabled=True).values_list(
        "ip", "mask", "port", "transport", "peer_id"
    ):
        addresses.add(ip, mask, port, transport, peer_id)
    addresses.freeze()

    sip_logins: dict[str, int] = {}
    sip_targets: dict[str, tuple[str, int]] = {}
    by_user: dict[str, list] = defaultdict(list)
    aors: dict[int, str] = {}
    for account_id, username, domain, peer_id, enabled in SipAccount.objects.values_list(
        "pk", "username", "domain", "peer_id", "enabled"
    ):
        aors[account_id] = aor = f"{username}@{domain}"
        if not enabled:
            continue
        sip_logins[aor.lower()] = peer_id
        sip_targets[aor.lower()] = (aor, peer_id)
        by_user[username.lower()].append((aor, peer_id))
    for username, accounts in by_user.items():
        if len({peer_id for _aor, peer_id in accounts}) == 1:
            sip_logins.setdefault(username, accounts[0][1])
        if len(accounts) == 1:
            sip_targets.setdefault(username, accounts[0])

    gateways: dict[int, list] = defaultdict(list)
    gateway_by_id = {}
    for gateway in Gateway.objects.order_by("peer_id", "priority", "name"):
        info = GatewayInfo(
            gateway.pk,
            gateway.peer_id,
            gateway.name,
            gateway.uri,
            gateway.strip_digits,
            gateway.prefix,
            gateway.enabled,
            gateway.host.lower(),
        )
        gateways[gateway.peer_id].append(info)
        gateway_by_id[gateway.pk] = info

    dids = _dids(aors, gateway_by_id)

    plans = {
        plan_id: PlanInfo(plan_id, name, parent_id, defaultdict(list))
        for plan_id, name, parent_id in RoutingPlan.objects.values_list("pk", "name", "parent_id")
    }
    routes_by_rule: dict[int, list] = defaultdict(list)
    for route in Route.objects.order_by("priority", "id"):
        routes_by_rule[route.rule_id].append(
            RouteInfo(
                route.pk,
                route.supplier_id,
                route.gateway_id,
                route.priority,
                route.weight,
                route.max_calls,
                route.setup_timeout,
                route.stop_hunting,
                route.enabled,
                route.record_calls,
                route.capture_calls,
                _codecs(route.codecs),
            )
        )
    profiles = TimeProfiles(TimeProfile.objects.values_list("pk", "name", "windows"))
    for rule in RoutingRule.objects.filter(enabled=True).order_by("position", "id"):
        profile = profiles.by_id.get(rule.time_profile_id)
        window = profile.windows if profile else None
        if rule.time_profile_id is not None and profile is None:
            window = Windows("", ())
        info = RuleInfo(
            rule.pk,
            rule.plan_id,
            rule.prefix,
            rule.destination.lower(),
            rule.method,
            rule.quality_metric,
            rule.quality_tolerance,
            rule.position,
            routes_by_rule.get(rule.pk, []),
            window,
            profile.name if profile else ("?" if window is not None else ""),
        )
        plans[rule.plan_id].rules[rule.prefix].append(info)
    for plan in plans.values():
        # A rule naming a destination is more specific than one that does not; then one with
        # a window (tried first, used only in its hours) than one for any time.
        for rules in plan.rules.values():
            rules.sort(key=lambda rule: (not rule.destination, rule.window is None, rule.position, rule.id))
        plan.rules = dict(plan.rules)

    prefixes: dict[int, set] = defaultdict(set)
    for blocklist_id, prefix in BlocklistEntry.objects.values_list("blocklist_id", "prefix"):
        prefixes[blocklist_id].add(prefix)
    blocklists = {}
    global_ids = []
    for blocklist_id, name, kind, applies_to_all in Blocklist.objects.values_list(
        "pk", "name", "kind", "applies_to_all"
    ):
        entries = frozenset(prefixes.get(blocklist_id, ()))
        blocklists[blocklist_id] = BlocklistInfo(
            blocklist_id, name, kind, entries, max((len(p) for p in entries), default=0)
        )
        if applies_to_all:
            global_ids.append(blocklist_id)

    snapshot = Snapshot(
        generation=generation,
        built_at=time.monotonic(),
        peers=peers,
        addresses=addresses,
        sip_logins=sip_logins,
        sip_targets=sip_targets,
        dids=dids,
        on_net_prices=dict(
            RateTable.objects.filter(purpose=RateTable.Purpose.SELL).values_list("pk", "on_net_price")
        ),
        node_hosts=frozenset(node.sip_address.lower() for node in nodes.values()),
        gateways=dict(gateways),
        gateway_by_id=gateway_by_id,
        plans=plans,
        nodes=nodes,
        blocklists=blocklists,
        global_blocklist_ids=tuple(global_ids),
        redirect_to_assigned_node=settings.redirect_to_assigned_node,
        serve_when_assigned_nodes_down=settings.serve_when_assigned_nodes_down,
        distributor_ip=settings.shared_ip if settings.distribute_shared_ip else None,
        max_call_duration=settings.max_call_duration,
        reservation_grace=settings.reservation_grace,
        quality_window=settings.quality_window,
        announcements=announcement_map(),
        capture_percent=CaptureSettings.load().sample_percent,
        recording_stereo=settings.recording_stereo,
        repeat_rules=_repeat_rules(),
        reseller_limits={
            pk: ResellerLimits(daily, monthly, tuple(sorted(reseller_accounts.get(pk, ()))), credit_account)
            for pk, (daily, monthly, credit_account) in limited_resellers.items()
        },
        # A day's margin: a customer's clock may be behind the server's.
        bundles=offers_for(ended_after=timezone.localdate() - timedelta(days=2)),
    )
    _load_alerts(snapshot)
    refresh_live_calls(snapshot)
    refresh_live_nodes(snapshot)
    refresh_supplier_money(snapshot)
    refresh_quality(snapshot)
    logger.info(
        "Call-control snapshot at generation %s: %s peers, %s plans in %.3f s",
        generation,
        len(peers),
        len(plans),
        time.monotonic() - started,
    )
    return snapshot


def _repeat_rules() -> tuple:
    return tuple(
        RepeatRule(
            c.pk,
            c.reseller_id,
            c.peer_id,
            c.metric == Metric.CALLER,
            c.min_count,
            c.window_minutes,
            c.cluster_wide,
            c.action == Action.BLOCK,
        )
        for c in Controller.objects.enabled().filter(kind=Kind.REPEATED_NUMBER).order_by("pk")
    )


ALERT_UNITS = {Metric.ASR: " %", Metric.FAS: " %", Metric.ACD: " s"}


def alert_text(metric: str, measured: Decimal, threshold: Decimal | None) -> str:
    """What an alert measured, in words: "ASR 10 % < 30 %", "FAS 40 % > 20 %", "6 calls"."""
    unit = ALERT_UNITS.get(metric, "")
    value = f"{measured.normalize():f}{unit}"
    if metric in ALERT_UNITS and threshold is not None:
        below = "<" if metric != Metric.FAS else ">"
        return f"{metric.upper()} {value} {below} {threshold.normalize():f}{unit}"
    if metric in (Metric.CALLEE, Metric.CALLER):
        return f"{value} calls to one {'caller' if metric == Metric.CALLER else 'callee'}"
    return value


def _load_alerts(snapshot: Snapshot) -> None:
    """The open alerts whose action call control applies: excluded routes, refused numbers,
    banned addresses. Open, not "in force now": one still open past its end is ignored by
    the decision (the sweep closes it within a minute)."""
    effects = (Alert.Effect.EXCLUDE_ROUTE, Alert.Effect.BAN_ADDRESS, Alert.Effect.BLOCK_NUMBER)
    rows = (
        Alert.objects.open()
        .filter(Q(effect__in=effects) | Q(kind=Kind.REPEATED_NUMBER))
        .order_by("pk")
        .values_list(
            "pk",
            "kind",
            "effect",
            "peer_id",
            "destination",
            "number",
            "source_ip",
            "measured",
            "threshold",
            "ends_at",
            "trial_until",
            "trial_share",
            "controller_id",
            "controller__metric",
            "reseller_id",
        )
    )
    for (
        pk,
        kind,
        effect,
        peer_id,
        destination,
        number,
        source_ip,
        measured,
        threshold,
        ends_at,
        trial_until,
        share,
        controller_id,
        metric,
        reseller_id,
    ) in rows:
        info = AlertInfo(
            pk,
            alert_text(metric or "", measured, threshold),
            ends_at,
            trial_until,
            share,
            effect,
            controller_id,
            peer_id,
            metric == Metric.CALLER,
            reseller_id,
        )
        if effect == Alert.Effect.EXCLUDE_ROUTE and peer_id is not None:
            snapshot.excluded_routes.setdefault((peer_id, destination.lower()), info)
        elif effect == Alert.Effect.BAN_ADDRESS and source_ip:
            snapshot.banned.setdefault(source_ip, info)
        elif kind == Kind.REPEATED_NUMBER and number:
            snapshot.numbers.setdefault(number, []).append(info)


def _codecs(value: str) -> tuple:
    """A stored codec list; one that no longer reads (written around the form) means any codec."""
    try:
        return tuple(parse_codecs(value))
    except ValueError:
        logger.warning("ignoring the codec list %r: it does not read", value)
        return ()


def _zone(name: str, zones: dict[str, tzinfo]) -> tzinfo:
    """The peer's time zone (Peer.time_zone, validated when saved); UTC if this host lacks it."""
    found = zones.get(name)
    if found is None:
        try:
            found = zoneinfo.ZoneInfo(name)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            logger.warning("Time zone %r is unknown on this host; reading it as UTC", name)
            found = UTC_ZONE
        zones[name] = found
    return found


def _dids(aors: dict[int, str], gateway_by_id: dict[int, GatewayInfo]) -> DidIndex:
    """Enabled DIDs with their targets; a target whose account or gateway is gone is left out."""
    targets: dict[int, list] = defaultdict(list)
    for did_id, account_id, gateway_id, setup_timeout in DidTarget.objects.order_by(
        "did_id", "position", "id"
    ).values_list("did_id", "sip_account_id", "gateway_id", "setup_timeout"):
        if account_id is not None and account_id in aors:
            targets[did_id].append(DidTargetInfo(aors[account_id], None, setup_timeout))
        elif gateway_id is not None and gateway_id in gateway_by_id:
            targets[did_id].append(DidTargetInfo("", gateway_by_id[gateway_id], setup_timeout))
    index = DidIndex()
    for did in Did.objects.filter(enabled=True):
        index.add(
            DidInfo(
                did.pk,
                did.number,
                did.last_number,
                did.supplier_id,
                did.customer_id,
                did.sell_tariff(),
                did.buy_tariff(),
                targets.get(did.pk, []),
                did.hunting == Did.Hunting.ALL,
            )
        )
    index.freeze()
    return index


def refresh_live_calls(snapshot: Snapshot) -> None:
    rows = (
        Reservation.objects.active()
        .filter(route__isnull=False)
        .values_list("route_id")
        .annotate(calls=Count("id"))
        .order_by()
    )
    snapshot.live_calls = dict(rows)
    snapshot.live_checked = time.monotonic()


def refresh_live_nodes(snapshot: Snapshot) -> None:
    enabled = Node.objects.enabled()
    alive = tuple(enabled.alive().order_by("pk").values_list("pk", flat=True))
    snapshot.live_node_ids = alive or tuple(enabled.order_by("pk").values_list("pk", flat=True))
    if snapshot.distributor_ip:
        rows = Reservation.objects.active().values_list("node_id").annotate(calls=Count("id")).order_by()
        snapshot.node_loads = {node_id: calls for node_id, calls in rows if node_id is not None}
    snapshot.live_nodes_checked = time.monotonic()


def refresh_supplier_money(snapshot: Snapshot) -> None:
    """Prepaid suppliers (we pay them in advance) whose money with them has run out.

    Only pure suppliers: a user peer's account is its own money with us, not ours with it.
    """
    rows = Account.objects.filter(peer__role=Peer.Role.SUPPLIER, mode=Account.Mode.PREPAID, balance__lte=0)
    snapshot.suppliers_without_money = frozenset(rows.values_list("peer_id", flat=True))
    snapshot.money_checked = time.monotonic()


def refresh_quality(snapshot: Snapshot) -> None:
    snapshot.quality = {
        (supplier_id, destination.lower()): (attempts, answered, seconds)
        for supplier_id, destination, attempts, answered, seconds in QualityStat.objects.values_list(
            "supplier_id", "destination", "attempts", "answered", "answered_seconds"
        )
    }
    snapshot.quality_checked = time.monotonic()


_current: Snapshot | None = None
_refreshing = threading.Lock()


def current() -> Snapshot:
    """This process's snapshot, checked against the database at most every CHECK_SECONDS."""
    snapshot = _current
    now = time.monotonic()
    if snapshot is not None and now - snapshot.checked_at < CHECK_SECONDS:
        return snapshot
    # One thread refreshes; the others answer from what there is rather than queue up.
    if not _refreshing.acquire(blocking=snapshot is None):
        return snapshot
    try:
        return _refresh(_current, now)
    finally:
        _refreshing.release()


def _refresh(snapshot: Snapshot | None, now: float) -> Snapshot:
    global _current
    if snapshot is not None and now - snapshot.checked_at < CHECK_SECONDS:
        return snapshot  # refreshed while this thread waited for the lock
    if snapshot is None or current_generation() != snapshot.generation:
        snapshot = build()
        snapshot.checked_at = now
        _current = snapshot
        _settle_heap()
    else:
        if now - snapshot.live_checked >= LIVE_SECONDS:
            refresh_live_calls(snapshot)
        if now - snapshot.live_nodes_checked >= LIVE_NODES_SECONDS:
            refresh_live_nodes(snapshot)
        if now - snapshot.money_checked >= SUPPLIER_MONEY_SECONDS:
            refresh_supplier_money(snapshot)
        if now - snapshot.quality_checked >= QUALITY_SECONDS:
            refresh_quality(snapshot)
    snapshot.checked_at = now
    _current = snapshot
    return snapshot


def _settle_heap() -> None:
    """Take the long-lived objects (Django's, the new snapshot's) out of the collector's way.

    A full collection walks every tracked object: with 10,000 peers in the snapshot that
    paused the process for 60-80 ms every 20-30 s under load, which is where call control's
    p99 went. Frozen objects are skipped by collections and still freed by reference
    counting; unfreezing first lets the previous snapshot's cycles, if any, be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def forget() -> None:
    """Drop this process's snapshot (tests; after a database switch)."""
    global _current
    with _refreshing:
        _current = None
