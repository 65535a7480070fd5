"""The only write path for peers and what hangs off them."""

import hashlib
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db.models import Model
from django.utils import timezone

from apps.audit import services as audit
from apps.billing import services as billing
from apps.billing.models import Account
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError, NotAllowed
from apps.core.services import apply_changes, editable_fields, ensure_manages, field_changes, save_object
from apps.peers.models import (
    Blocklist,
    BlocklistEntry,
    Endpoint,
    Gateway,
    Peer,
    Registration,
    RewriteRule,
    SipAccount,
)
from apps.tenancy.scope import Scope

PEER_SETTINGS = (
    "name",
    "company",
    "enabled",
    "max_calls",
    "max_cps",
    "max_price",
    "tech_prefix",
    "sell_rate_table_id",
    "buy_rate_table_id",
    "routing_plan_id",
    "profit_control",
    "record_calls",
    "capture_calls",
    "codecs",
    "recording_retention_days",
    "time_zone",
    "notes",
    "billing_address",
    "tax_id",
)
# Routing is the operator's: which plan a customer routes by, and whether its calls may be
# sent to suppliers dearer than its price, are not for a reseller to choose.
OPERATOR_SETTINGS = ("routing_plan_id", "profit_control")


# Every write below ends with announce() (apps.core.changes): call control's snapshot, the
# OpenSIPS tables (synced in the same transaction) and live views follow from it.


def _announce_peer(peer: Peer, *fields: str) -> None:
    announce("peers.Peer", [peer.pk], fields=fields)


def _check_operator_settings(actor: Scope, settings: dict) -> None:
    if actor.is_operator:
        return
    for name in OPERATOR_SETTINGS:
        if name in settings:
            field = name.removesuffix("_id")
            raise NotAllowed(f"Only the operator sets {field.replace('_', ' ')}.", field=field)


@retry_on_conflict
def create_peer(
    *,
    actor: Scope,
    name: str,
    role: str,
    reseller_id: int | None = None,
    currency: str | None = None,
    account_mode: str | None = None,
    credit_limit=0,
    nodes=(),
    **settings,
) -> Peer:
    """Create a peer with its account; a reseller's staff always create for their reseller.

    Accounts are prepaid by default, except a supplier's: a prepaid supplier account means
    we pay that supplier in advance and routing stops sending it calls when our money
    there runs out, so it must be chosen, not fallen into.
    """
    if actor.is_reseller:
        reseller_id = actor.reseller_id
    ensure_manages(actor, reseller_id)
    _check_operator_settings(actor, settings)
    peer = apply_changes(Peer(name=name, role=role, reseller_id=reseller_id), settings, allowed=PEER_SETTINGS)
    save_object(peer, actor=actor, action="peer.created")
    account = billing.open_account(
        peer,
        actor=actor,
        currency=currency or _default_currency(peer),
        mode=account_mode or (Account.Mode.POSTPAID if role == Peer.Role.SUPPLIER else Account.Mode.PREPAID),
        credit_limit=credit_limit,
    )
    _check_price_list_currency(peer, account.currency)
    _announce_peer(peer)
    if nodes:
        assign_peer_to_nodes(peer, nodes, actor=actor)
    return peer


def _check_price_list_currency(peer: Peer, currency: str) -> None:
    # A call is rated in its price list's currency and charged to the account as is: the
    # two must agree, or a EUR price would be debited from a USD balance.
    for field in ("sell_rate_table", "buy_rate_table"):
        table = getattr(peer, field)
        if table is not None and table.currency != currency:
            raise DomainError(
                f"The price list is in {table.currency} but the account is in {currency}.", field=field
            )


def _default_currency(peer: Peer) -> str:
    table = peer.sell_rate_table or peer.buy_rate_table
    if table is not None:
        return table.currency
    return peer.reseller.currency if peer.reseller_id else "USD"


@retry_on_conflict
def update_peer(peer: Peer, *, actor: Scope, changes: dict) -> Peer:
    """Change a peer's settings (not its owner, role or suspension)."""
    ensure_manages(actor, peer.reseller_id)
    _check_operator_settings(actor, changes)
    current = Peer.objects.select_for_update().get(pk=peer.pk)
    apply_changes(current, changes, allowed=PEER_SETTINGS)
    save_object(current, actor=actor, action="peer.changed")
    _check_price_list_currency(current, current.account.currency)
    if "tech_prefix" in changes:
        # Source-address identification depends on the tech prefix: re-check for clashes.
        for endpoint in current.endpoints.all():
            endpoint.full_clean()
    # Disabling takes the peer's addresses and logins out of OpenSIPS's tables and disables
    # its gateways; the name is in its gateways' descriptions (apps.opensips.provisioning).
    _announce_peer(current, *changes)
    return current


@retry_on_conflict
def assign_peer_to_nodes(peer: Peer, nodes, *, actor: Scope) -> Peer:
    """Serve `peer` on exactly `nodes` (manual load balancing; the operator's decision)."""
    ensure_manages(actor, None)
    before = sorted(peer.nodes.values_list("name", flat=True))
    peer.nodes.set(nodes)
    after = sorted(node.name for node in nodes)
    if before != after:
        audit.record(actor, "peer.nodes_assigned", peer, before=before, after=after)
        _announce_peer(peer, "nodes")
    return peer


@retry_on_conflict
def suspend_peer(peer: Peer, *, actor: Scope, reason: str) -> Peer:
    """Stop new calls from and to `peer` on every node; live calls are not touched."""
    ensure_manages(actor, peer.reseller_id)
    if not reason.strip():
        raise DomainError("Say why the peer is suspended.", field="reason")
    Peer.objects.filter(pk=peer.pk).update(
        suspended_at=timezone.now(), suspended_reason=reason[:200], updated_at=timezone.now()
    )
    peer.refresh_from_db()
    audit.record(actor, "peer.suspended", peer, reason=reason)
    _announce_peer(peer, "suspended_at", "suspended_reason")
    return peer


@retry_on_conflict
def resume_peer(peer: Peer, *, actor: Scope) -> Peer:
    """Lift a suspension."""
    ensure_manages(actor, peer.reseller_id)
    Peer.objects.filter(pk=peer.pk).update(suspended_at=None, suspended_reason="", updated_at=timezone.now())
    peer.refresh_from_db()
    audit.record(actor, "peer.resumed", peer)
    _announce_peer(peer, "suspended_at", "suspended_reason")
    return peer


# Endpoints, SIP accounts, gateways and rewrite rules share one shape: they belong to a
# peer, whoever manages the peer manages them, and every change is audited.


def _save_child(obj: Model, *, actor: Scope, verb: str) -> Model:
    ensure_manages(actor, obj.peer.reseller_id)
    action = f"{obj._meta.model_name}.{verb}"
    if isinstance(obj, Registration):
        saved = _save_registration(obj, actor=actor, action=action)
    else:
        saved = save_object(obj, actor=actor, action=action)
    announce(obj._meta.label, [saved.pk])
    return saved


@retry_on_conflict
def add_endpoint(peer: Peer, *, actor: Scope, ip: str, mask: int = 32, **fields) -> Endpoint:
    """Let calls from `ip/mask` be identified as `peer`."""
    endpoint = apply_changes(
        Endpoint(peer=peer, ip=ip, mask=mask), fields, allowed=("port", "transport", "enabled", "description")
    )
    return _save_child(endpoint, actor=actor, verb="created")


@retry_on_conflict
def add_gateway(peer: Peer, *, actor: Scope, name: str, host: str, **fields) -> Gateway:
    """Add a destination for calls terminated by supplier `peer`."""
    gateway = apply_changes(
        Gateway(peer=peer, name=name, host=host),
        fields,
        allowed=editable_fields(Gateway(), exclude=("peer_id", "name", "host")),
    )
    return _save_child(gateway, actor=actor, verb="created")


@retry_on_conflict
def add_rewrite_rule(
    peer: Peer, *, actor: Scope, field: str, pattern: str, replacement: str = "", **fields
) -> RewriteRule:
    """Rewrite a number of `peer`'s calls with a regular expression."""
    rule = apply_changes(
        RewriteRule(peer=peer, field=field, pattern=pattern, replacement=replacement),
        fields,
        allowed=("direction", "position", "enabled"),
    )
    return _save_child(rule, actor=actor, verb="created")


@retry_on_conflict
def update_child(obj: Model, *, actor: Scope, changes: dict) -> Model:
    """Change an endpoint, gateway, SIP account or rewrite rule (never its peer)."""
    current = type(obj).objects.select_for_update().get(pk=obj.pk)
    # A SIP account's digests are made of its username and domain: those change only with
    # a new password, so they are not editable here.
    locked = ("peer_id", "username", "domain") if isinstance(current, SipAccount) else ("peer_id",)
    allowed = editable_fields(current, exclude=locked)
    apply_changes(current, changes, allowed=allowed)
    return _save_child(current, actor=actor, verb="changed")


@retry_on_conflict
def remove_child(obj: Model, *, actor: Scope) -> None:
    """Delete an endpoint, gateway, SIP account or rewrite rule."""
    ensure_manages(actor, obj.peer.reseller_id)
    audit.record(actor, f"{obj._meta.model_name}.deleted", obj)
    pk = obj.pk
    obj.delete()
    announce(obj._meta.label, [pk])


def sip_digests(username: str, domain: str, password: str) -> tuple[str, str]:
    """Return the MD5 and SHA-256 HA1 digests OpenSIPS auth_db checks (realm = domain)."""
    material = f"{username}:{domain}:{password}".encode()
    return hashlib.md5(material).hexdigest(), hashlib.sha256(material).hexdigest()


def _check_sip_password(password: str) -> None:
    if len(password) < 10:
        raise DomainError("A SIP password has at least 10 characters.", field="password")
    if password.isdigit() or password.isalpha():
        raise DomainError("Mix letters and digits in a SIP password.", field="password")


@retry_on_conflict
def add_sip_account(
    peer: Peer, *, actor: Scope, username: str, domain: str, password: str, enabled: bool = True
) -> SipAccount:
    """Create a digest login for `peer`; the clear password is hashed and forgotten."""
    _check_sip_password(password)
    ha1, ha1_sha256 = sip_digests(username, domain, password)
    account = SipAccount(
        peer=peer, username=username, domain=domain, ha1=ha1, ha1_sha256=ha1_sha256, enabled=enabled
    )
    return _save_child(account, actor=actor, verb="created")


@retry_on_conflict
def set_sip_password(account: SipAccount, *, actor: Scope, password: str) -> SipAccount:
    """Replace a SIP account's password (stored as digests only)."""
    if not (actor.is_customer and actor.peer_id == account.peer_id):
        ensure_manages(actor, account.peer.reseller_id)
    _check_sip_password(password)
    account.ha1, account.ha1_sha256 = sip_digests(account.username, account.domain, password)
    account.save(update_fields=["ha1", "ha1_sha256", "updated_at"])
    audit.record(actor, "sipaccount.password_changed", account)
    announce("peers.SipAccount", [account.pk], fields=["ha1", "ha1_sha256"])
    return account


def _save_registration(registration: Registration, *, actor: Scope, action: str) -> Registration:
    """save_object() for a registration, whose clear password must not reach the audit log."""
    before = Registration.objects.filter(pk=registration.pk).first() if registration.pk else None
    registration.full_clean()
    changes = field_changes(before, registration, editable_fields(registration))
    if "password" in changes:
        changes["password"] = "(changed)"  # noqa: S105 - a marker, not a password
    registration.save()
    if before is None or changes:
        audit.record(actor, action, registration, changes=changes)
    return registration


@retry_on_conflict
def add_registration(
    peer: Peer, *, actor: Scope, registrar: str, aor: str, node=None, **fields
) -> Registration:
    """Register to supplier `peer`'s registrar: from `node` (dedicated IP) or the shared IP."""
    registration = apply_changes(
        Registration(peer=peer, registrar=registrar, aor=aor, node=node),
        fields,
        allowed=("proxy", "username", "password", "expiry", "enabled", "node_id"),
    )
    return _save_child(registration, actor=actor, verb="created")


# --- Blocklists ---------------------------------------------------------------------------
# A list belongs to a reseller or to the operator (reseller NULL). Whoever owns it edits it
# and its entries; it is attached only to peers of the same owner, except that the
# operator may attach its own lists to any peer.

BLOCKLIST_SETTINGS = ("name", "description", "applies_to_all")
# Rows per INSERT and per `prefix IN (...)`: under every backend's parameter limit (SQLite: 999).
ENTRY_BATCH = 500
# Invalid prefixes named in one refusal; a pasted file can hold thousands.
SHOWN_ERRORS = 20


@retry_on_conflict
def create_blocklist(
    *,
    actor: Scope,
    name: str,
    kind: str,
    reseller_id: int | None = None,
    applies_to_all: bool = False,
    description: str = "",
) -> Blocklist:
    """Create an empty blocklist; a reseller's staff always create lists of their own."""
    if actor.is_reseller:
        reseller_id = actor.reseller_id
    ensure_manages(actor, reseller_id)
    blocklist = Blocklist(
        name=name,
        kind=kind,
        reseller_id=reseller_id,
        applies_to_all=applies_to_all,
        description=description,
    )
    save_object(blocklist, actor=actor, action="blocklist.created")
    announce("peers.Blocklist", [blocklist.pk])
    return blocklist


@retry_on_conflict
def update_blocklist(blocklist: Blocklist, *, actor: Scope, changes: dict) -> Blocklist:
    """Rename a blocklist, describe it, or make it apply to every call (not its kind or owner)."""
    ensure_manages(actor, blocklist.reseller_id)
    current = Blocklist.objects.select_for_update().get(pk=blocklist.pk)
    apply_changes(current, changes, allowed=BLOCKLIST_SETTINGS)
    save_object(current, actor=actor, action="blocklist.changed")
    announce("peers.Blocklist", [current.pk], fields=changes)
    return current


def _lock_blocklist(blocklist: Blocklist, actor: Scope) -> Blocklist:
    # Entries of one list are added and removed one caller at a time, so that "already
    # present" stays true until the insert (no unique-index error halfway through a paste).
    ensure_manages(actor, blocklist.reseller_id)
    return Blocklist.objects.select_for_update().get(pk=blocklist.pk)


def _distinct(prefixes: Iterable) -> list[str]:
    return list(dict.fromkeys(str(prefix).strip() for prefix in prefixes))


def _entries_changed(blocklist: Blocklist) -> None:
    Blocklist.objects.filter(pk=blocklist.pk).update(updated_at=timezone.now())
    # The entries are inserted and deleted in bulk, by prefix: no ids to name.
    announce("peers.BlocklistEntry")
    announce("peers.Blocklist", [blocklist.pk], fields=["entries"])


@retry_on_conflict
def add_blocklist_entries(blocklist: Blocklist, prefixes: Iterable, *, actor: Scope, note: str = "") -> int:
    """Block `prefixes` (digits only) on `blocklist`, all or nothing; return how many were new.

    Prefixes repeated in `prefixes` or already on the list are skipped, not refused.
    """
    current = _lock_blocklist(blocklist, actor)
    wanted = _distinct(prefixes)
    rows, errors = [], {}
    for prefix in wanted:
        entry = BlocklistEntry(blocklist=current, prefix=prefix, note=note)
        try:
            entry.full_clean(exclude=["blocklist"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                if field == "prefix":
                    errors.setdefault("prefixes", []).extend(f"{prefix or '(empty)'}: {m}" for m in messages)
                else:
                    errors.setdefault(field, messages)
            continue
        rows.append(entry)
    if errors:
        if len(errors.get("prefixes", ())) > SHOWN_ERRORS:
            hidden = len(errors["prefixes"]) - SHOWN_ERRORS
            errors["prefixes"] = [*errors["prefixes"][:SHOWN_ERRORS], f"... and {hidden} more."]
        raise ValidationError(errors)
    present: set[str] = set()
    for start in range(0, len(wanted), ENTRY_BATCH):
        chunk = wanted[start : start + ENTRY_BATCH]
        present.update(current.entries.filter(prefix__in=chunk).values_list("prefix", flat=True))
    rows = [entry for entry in rows if entry.prefix not in present]
    if not rows:
        return 0
    BlocklistEntry.objects.bulk_create(rows, batch_size=ENTRY_BATCH)
    _entries_changed(current)
    audit.record(actor, "blocklist.entries_added", current, count=len(rows), note=note)
    return len(rows)


@retry_on_conflict
def remove_blocklist_entries(blocklist: Blocklist, prefixes: Iterable, *, actor: Scope) -> int:
    """Unblock `prefixes` on `blocklist`; prefixes not on it are ignored. Return how many went."""
    current = _lock_blocklist(blocklist, actor)
    wanted = _distinct(prefixes)
    removed: list[str] = []
    for start in range(0, len(wanted), ENTRY_BATCH):
        chunk = current.entries.filter(prefix__in=wanted[start : start + ENTRY_BATCH])
        removed += chunk.values_list("prefix", flat=True)
        chunk.delete()
    if not removed:
        return 0
    _entries_changed(current)
    # The rows are gone: the audit entry is the only record of what was unblocked.
    audit.record(actor, "blocklist.entries_removed", current, count=len(removed), prefixes=sorted(removed))
    return len(removed)


def _may_attach(actor: Scope, blocklist: Blocklist, peer: Peer) -> bool:
    if blocklist.reseller_id == peer.reseller_id:
        return True
    return blocklist.reseller_id is None and actor.is_operator


@retry_on_conflict
def set_peer_blocklists(peer: Peer, blocklists: Iterable[Blocklist], *, actor: Scope) -> Peer:
    """Check `peer`'s calls against exactly `blocklists`.

    A list is attached only to peers of its own owner; the operator's lists go on any peer,
    by the operator only. Reseller staff do not see the operator's lists, so the ones the
    operator attached stay when reseller staff set theirs.
    """
    ensure_manages(actor, peer.reseller_id)
    current = Peer.objects.select_for_update().get(pk=peer.pk)
    wanted = {blocklist.pk: blocklist for blocklist in blocklists}
    refused = sorted(b.name for b in wanted.values() if not _may_attach(actor, b, current))
    if refused:
        raise DomainError(
            f"A blocklist of another owner cannot be attached to this peer: {', '.join(refused)}.",
            field="blocklists",
        )
    attached = {blocklist.pk: blocklist for blocklist in current.blocklists.all()}
    if not actor.is_operator:
        wanted |= {pk: b for pk, b in attached.items() if b.reseller_id != actor.reseller_id}
    if set(wanted) != set(attached):
        current.blocklists.set(list(wanted.values()))
        _announce_peer(current, "blocklists")
        audit.record(
            actor,
            "peer.blocklists_set",
            current,
            before=sorted(b.name for b in attached.values()),
            after=sorted(b.name for b in wanted.values()),
        )
    return current
