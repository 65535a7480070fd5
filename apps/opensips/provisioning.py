"""Bring OpenSIPS's provisioned tables in step with our models: the only writer of them.

Each `sync_*` function computes the rows a table must hold from our models, compares them
with the rows it holds, and inserts, updates and deletes by a natural key, in the
caller's transaction. It first locks the table's `version` row, so that two writers on
one server take turns (the comparison then reads what the other committed: the product
runs READ COMMITTED). On Galera row locks are not shared between nodes; two nodes syncing
at the same instant can both insert a row, and the next sync (or
`sync_opensips_tables`) deletes the duplicate.

The `address` table also holds the sources banned for SIP brute force (group
settings.OPENSIPS_BAN_GROUP, one row per open BAN_ADDRESS alert's address, apps.fraud):
written when the alert opens, in its transaction, and deleted when it ends or is undone.

Which OpenSIPS module reads which table decides what a node must reload:
address -> permissions ("address"), dr_gateways -> drouting ("drouting"),
registrant -> uac_registrant ("registrant"). subscriber (auth_db) is read per request.
"""

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Model

from apps.core.changes import Change
from apps.fraud.models import Alert
from apps.nodes.models import ClusterSettings, Node
from apps.opensips import dialogs
from apps.opensips.models import TABLE_VERSIONS, Address, DrGateway, Registrant, Subscriber, Version
from apps.peers.models import Endpoint, Gateway, Peer, Registration, SipAccount, Transport

logger = logging.getLogger(__name__)

# context_info of a ban row: its key, distinct from a customer's or a supplier's (a peer id).
BAN_CONTEXT = "ban"
# Rows per statement: under every backend's parameter limit (SQLite: 999).
BATCH = 500
GATEWAY_TYPE = 1
GATEWAY_ENABLED, GATEWAY_DISABLED = 0, 1
# The sharing tag keepalived's notify script activates on the node that holds the shared IP
# ("vip" in the clusterer cluster apps.opensips.config.CLUSTER_ID renders).
SHARED_IP_TAG = "vip/1"
SUBSCRIBER_DOMAIN_LENGTH = Subscriber._meta.get_field("domain").max_length


@dataclass
class SyncResult:
    """What one table's sync did, and what it could not write (named, never dropped)."""

    table: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    refused: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)

    def __str__(self) -> str:
        text = f"{self.table}: +{self.inserted} ~{self.updated} -{self.deleted}"
        return text + (f", {len(self.refused)} refused" if self.refused else "")


def _diff(
    model: type[Model],
    key_fields: tuple[str, ...],
    wanted_rows: Callable[[], dict[tuple, dict]],
    *,
    table: str,
    dry_run: bool = False,
) -> SyncResult:
    """Make `model`'s rows equal `wanted_rows()` ({natural key: other columns}); return the counts.

    The wanted rows are read after the table's lock is taken: read before it, a writer that
    waited for another would delete the rows the other just committed.
    """
    result = SyncResult(table)
    Version.objects.select_for_update().filter(table_name=table).first()
    wanted = wanted_rows()
    value_fields = tuple(next(iter(wanted.values()), {}).keys())
    held: dict[tuple, list] = {}
    for row in model.objects.select_for_update().order_by("pk"):
        held.setdefault(tuple(getattr(row, name) for name in key_fields), []).append(row)
    surplus = []
    for key, rows in held.items():
        surplus += rows[1:]  # duplicates (see the module docstring): keep the oldest
        if key not in wanted:
            surplus.append(rows[0])
    result.deleted = len(surplus)
    changed = []
    for key, values in wanted.items():
        rows = held.get(key)
        if rows is None:
            continue
        row = rows[0]
        if any(getattr(row, name) != values[name] for name in value_fields):
            for name in value_fields:
                setattr(row, name, values[name])
            changed.append(row)
    result.updated = len(changed)
    new = [
        model(**dict(zip(key_fields, key, strict=True)), **values)
        for key, values in wanted.items()
        if key not in held
    ]
    result.inserted = len(new)
    if dry_run:
        return result
    for start in range(0, len(surplus), BATCH):
        model.objects.filter(pk__in=[row.pk for row in surplus[start : start + BATCH]]).delete()
    if changed:
        model.objects.bulk_update(changed, value_fields, batch_size=BATCH)
    if new:
        model.objects.bulk_create(new, batch_size=BATCH)
    return result


def address_rows() -> dict[tuple, dict]:
    """permissions rows: every enabled endpoint of every enabled customer (grp 1), and the
    address of every enabled gateway of an enabled supplier (grp 2: calls to our DIDs).

    A gateway named by a host name has no row: OpenSIPS compares source addresses, and a
    name resolved here would go stale. A user peer's gateway at one of its own endpoints
    is already a customer row; call control tells its DID calls apart (decision._inbound).
    """
    # A suspended customer keeps its addresses: call control refuses its calls with a
    # reason, where an unknown address would only get a bare 403.
    endpoints = Endpoint.objects.filter(
        enabled=True, peer__enabled=True, peer__role__in=(Peer.Role.CUSTOMER, Peer.Role.USER)
    ).values_list("ip", "mask", "port", "transport", "peer_id")
    rows = {
        (ip, mask, port, transport, str(peer_id)): {"grp": Address.CUSTOMER_GROUP, "pattern": None}
        for ip, mask, port, transport, peer_id in endpoints
    }
    gateways = Gateway.objects.filter(
        enabled=True, peer__enabled=True, peer__role__in=(Peer.Role.SUPPLIER, Peer.Role.USER)
    ).values_list("host", "peer_id")
    for host, peer_id in gateways:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        key = (str(address), address.max_prefixlen, 0, "any", str(peer_id))
        rows.setdefault(key, {"grp": Address.SUPPLIER_GROUP, "pattern": None})
    rows.update(ban_rows())
    return rows


def ban_rows() -> dict[tuple, dict]:
    """permissions rows of group OPENSIPS_BAN_GROUP: every address an open alert bans.

    Open, not only in force: the row goes when the alert ends (the sweep's end_alert, or a
    person's undo), which announces it; an alert past its end is ended within a minute.
    """
    addresses = (
        Alert.objects.open()
        .filter(effect=Alert.Effect.BAN_ADDRESS, source_ip__isnull=False)
        .values_list("source_ip", flat=True)
        .distinct()
    )
    rows = {}
    for source_ip in addresses:
        address = ipaddress.ip_address(source_ip)
        key = (str(address), address.max_prefixlen, 0, "any", BAN_CONTEXT)
        rows[key] = {"grp": settings.OPENSIPS_BAN_GROUP, "pattern": None}
    return rows


def sync_addresses(*, dry_run: bool = False) -> SyncResult:
    """Write the `address` table from customers' endpoints, suppliers' gateways and bans."""
    return _diff(
        Address,
        ("ip", "mask", "port", "proto", "context_info"),
        address_rows,
        table="address",
        dry_run=dry_run,
    )


def subscriber_rows(refused: list[str]) -> dict[tuple, dict]:
    """auth_db rows: every enabled SIP account of every enabled customer, digests only.

    A locked account (SIP brute force, apps.fraud) has no row: its next digest fails as an
    unknown user's until the lock ends.
    """
    rows = {}
    accounts = SipAccount.objects.filter(
        enabled=True, locked_at__isnull=True, peer__enabled=True
    ).values_list("username", "domain", "ha1", "ha1_sha256")
    for username, domain, ha1, ha1_sha256 in accounts:
        if len(domain) > SUBSCRIBER_DOMAIN_LENGTH:
            refused.append(
                f"{username}@{domain}: OpenSIPS's subscriber.domain holds "
                f"{SUBSCRIBER_DOMAIN_LENGTH} characters."
            )
            continue
        rows[username, domain] = {"password": "", "ha1": ha1, "ha1_sha256": ha1_sha256, "ha1_sha512t256": ""}
    return rows


def sync_subscribers(*, dry_run: bool = False) -> SyncResult:
    """Write the `subscriber` table from SIP accounts."""
    refused: list[str] = []
    result = _diff(
        Subscriber,
        ("username", "domain"),
        lambda: subscriber_rows(refused),
        table="subscriber",
        dry_run=dry_run,
    )
    result.refused = refused
    for reason in refused:
        logger.warning("subscriber not provisioned: %s", reason)
    return result


def gateway_address(gateway: Gateway) -> str:
    """host:port as drouting parses it (a SIP URI without "sip:"), with the transport if not UDP."""
    host = f"[{gateway.host}]" if ":" in gateway.host else gateway.host
    suffix = "" if gateway.transport == Transport.UDP else f";transport={gateway.transport}"
    return f"{host}:{gateway.port}{suffix}"


def gateway_rows() -> dict[tuple, dict]:
    """drouting rows: every supplier gateway, disabled (state 1) when it or its peer may not be used."""
    rows = {}
    for gateway in Gateway.objects.select_related("peer").order_by("pk"):
        usable = gateway.enabled and gateway.peer.enabled and not gateway.peer.is_suspended
        rows[(str(gateway.pk),)] = {
            "type": GATEWAY_TYPE,
            "address": gateway_address(gateway),
            "strip": 0,
            # Call control hands OpenSIPS each target's final number: no rewriting here.
            "pri_prefix": "",
            "attrs": None,
            "probe_mode": 1 if gateway.probing else 0,
            "state": GATEWAY_ENABLED if usable else GATEWAY_DISABLED,
            "socket": None,
            "description": f"{gateway.peer.name} / {gateway.name}"[:128],
        }
    return rows


def sync_gateways(*, dry_run: bool = False) -> SyncResult:
    """Write the `dr_gateways` table from suppliers' gateways."""
    return _diff(DrGateway, ("gwid",), gateway_rows, table="dr_gateways", dry_run=dry_run)


def registrant_rows(refused: list[str]) -> dict[tuple, dict]:
    """uac_registrant rows: every enabled registration of an enabled supplier, as its node sends it."""
    cluster = ClusterSettings.load()
    shared = cluster.origination_mode == ClusterSettings.OriginationMode.SHARED
    nodes = list(Node.objects.filter(enabled=True).order_by("name"))
    rows = {}
    registrations = Registration.objects.filter(enabled=True, peer__enabled=True).select_related(
        "node", "peer"
    )
    for registration in registrations.order_by("pk"):
        try:
            socket = registration.socket(cluster, nodes)
        except ValueError as exc:
            refused.append(f"{registration}: {exc}")
            continue
        if shared and registration.node_id is not None:
            # Left from dedicated-IP origination: N accounts would all register from the one
            # shared IP. The operator keeps one (without a node) and removes the others.
            refused.append(f"{registration}: shared-IP origination registers once, without a node.")
            continue
        if shared:
            tag = SHARED_IP_TAG
        elif registration.node_id is None or not registration.node.enabled:
            refused.append(f"{registration}: dedicated-IP origination needs an enabled node.")
            continue
        else:
            tag = None
        host, port = socket.split(":", 1)[1].rsplit(":", 1)
        binding = f"sip:{registration.username or 'registrant'}@{host}:{port}"
        key = (registration.aor, binding, registration.registrar)
        if key in rows:
            refused.append(f"{registration}: another registration sends the same AOR from the same socket.")
            continue
        rows[key] = {
            "proxy": registration.proxy or None,
            "third_party_registrant": None,
            "username": registration.username or None,
            "password": registration.password or None,
            "binding_params": None,
            "expiry": registration.expiry,
            "forced_socket": socket,
            "cluster_shtag": tag,
        }
    return rows


def sync_registrants(*, dry_run: bool = False) -> SyncResult:
    """Write the `registrant` table (uac_registrant) from suppliers' registrations."""
    refused: list[str] = []
    result = _diff(
        Registrant,
        ("aor", "binding_uri", "registrar"),
        lambda: registrant_rows(refused),
        table="registrant",
        dry_run=dry_run,
    )
    result.refused = refused
    for reason in refused:
        logger.warning("registration not provisioned: %s", reason)
    return result


def sync_versions(*, dry_run: bool = False) -> SyncResult:
    """Write the `version` rows OpenSIPS checks at startup (a restored or emptied table)."""

    def wanted() -> dict[tuple, dict]:
        rows = {(table,): {"table_version": version} for table, version in TABLE_VERSIONS.items()}
        # The rows of the nodes' own dialog tables are apps.opensips.dialogs' (which makes the
        # tables): kept at the dialog version while their node exists, dropped after.
        names = [dialogs.table_name(node_id) for node_id in Node.objects.values_list("pk", flat=True)]
        for name in Version.objects.filter(table_name__in=names).values_list("table_name", flat=True):
            rows[(name,)] = {"table_version": TABLE_VERSIONS["dialog"]}
        return rows

    return _diff(Version, ("table_name",), wanted, table="version", dry_run=dry_run)


# table -> (sync function, the OpenSIPS module whose cache must be reloaded, if any)
TABLES: dict[str, tuple[Callable[..., SyncResult], str | None]] = {
    "version": (sync_versions, None),
    "address": (sync_addresses, "address"),
    "subscriber": (sync_subscribers, None),
    "dr_gateways": (sync_gateways, "drouting"),
    "registrant": (sync_registrants, "registrant"),
}
ALL_TABLES = tuple(TABLES)


def sync_tables(tables: Iterable[str] = ALL_TABLES, *, dry_run: bool = False) -> list[SyncResult]:
    """Sync `tables` in the caller's transaction and mark the modules that changed for reload.

    The mark is written in the same transaction (a rollback leaves no reload pending);
    apps.nodes.sync queues each node's reload once the transaction commits.
    """
    results = [TABLES[table][0](dry_run=dry_run) for table in tables]
    if dry_run:
        return results
    modules = sorted({TABLES[r.table][1] for r in results if r.changed and TABLES[r.table][1]})
    if modules:
        request_reload(*modules)
    return results


# Where each table's rows come from: kind -> field (None: any field) -> tables. A kind or a
# field not named here is in no table.
ALL_PEER_TABLES = ("address", "subscriber", "dr_gateways", "registrant")
TABLE_SOURCES: dict[str, dict[str | None, tuple[str, ...]]] = {
    "peers.Endpoint": {None: ("address",)},
    "peers.SipAccount": {None: ("subscriber",)},
    "peers.Gateway": {None: ("address", "dr_gateways")},
    "peers.Registration": {None: ("registrant",)},
    # Disabling a peer takes its rows out of every table; the name and the suspension are
    # in its gateways' rows (description, state).
    "peers.Peer": {"enabled": ALL_PEER_TABLES, "name": ("dr_gateways",), "suspended_at": ("dr_gateways",)},
    # Registrations leave from a node's socket or from the shared IP.
    "nodes.Node": {"enabled": ("registrant",), "sip_address": ("registrant",), "sip_port": ("registrant",)},
    "nodes.ClusterSettings": {"origination_mode": ("registrant",), "shared_ip": ("registrant",)},
    # A ban opening, ending or undone (a refreshed episode only moves last_seen_at and its
    # end: no row changes). Alerts of other effects are left out below.
    "fraud.Alert": {"ended_at": ("address",), "effect": ("address",)},
}
# A peer's rows are its children's: a peer without any in a table cannot change that table.
PEER_ROWS: dict[str, tuple[type[Model], ...]] = {
    "address": (Endpoint, Gateway),
    "subscriber": (SipAccount,),
    "dr_gateways": (Gateway,),
    "registrant": (Registration,),
}


def tables_for(change: Change) -> list[str]:
    """The tables whose rows `change` can alter, in TABLES order."""
    sources = TABLE_SOURCES.get(change.kind, {})
    if None in sources or not change.fields:
        wanted = {table for tables in sources.values() for table in tables}
    else:
        wanted = {table for name in change.fields for table in sources.get(name, ())}
    if change.kind == "peers.Peer" and 0 < len(change.ids) <= BATCH:
        wanted = {
            table
            for table in wanted
            if any(model.objects.filter(peer_id__in=change.ids).exists() for model in PEER_ROWS[table])
        }
    if change.kind == "fraud.Alert" and wanted and change.ids:
        bans = Alert.objects.filter(pk__in=list(change.ids)[:BATCH], effect=Alert.Effect.BAN_ADDRESS)
        if len(change.ids) <= BATCH and not bans.exists():
            wanted = set()
    return [table for table in TABLES if table in wanted]


def provision_change(change: Change) -> None:
    """In-transaction consumer of apps.core.changes: sync the tables `change` can alter.

    In the service's transaction, not after it: the tables never disagree with the models
    once committed, a write conflict replays both (apps.core.db.retry_on_conflict), and a
    failed sync rolls the change back instead of leaving OpenSIPS behind.
    """
    tables = tables_for(change)
    if tables:
        sync_tables(tables)


def request_reload(*modules: str) -> None:
    """Ask every node to reload `modules` (apps.nodes.sync, which retries and shows status)."""
    from apps.nodes import sync

    sync.request_reload(*modules)


def check_tables(tables: Iterable[str] = ALL_TABLES) -> list[SyncResult]:
    """Report what a sync would change, writing nothing (drift between models and tables)."""
    with transaction.atomic():
        return sync_tables(tables, dry_run=True)
