"""The only write path for DIDs: stock, assignment to customers, targets and monthly fees.

Who may do what:

- the operator buys and drops numbers (create_did, delete_did), chooses who delivers them
  and at what price (supplier, buy_*), and assigns numbers from stock to any customer;
- a reseller manages the DIDs of its own customers: it moves them between its customers,
  releases them back to stock, sets what the customer pays (sell_*) and where calls go;
- a customer sets where the calls to its own DIDs go (set_targets).

A DID's monthly prices are charged as recurring fees (apps.billing.services.fees), one
on the customer's account (`sell_fee`) and one on the supplier's (`buy_fee`), kept in
step with the DID by `_sync_fee`. Fees are charged in advance, one reference per period:
a new price applies from the next period not charged yet, and a fee that stops is ended
on the last day already charged (at the earliest today), so no period is charged twice
and none is taken back here. Corrections of past periods are adjustments.
"""

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import RecurringFee
from apps.billing.services import fees
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError, NotAllowed
from apps.core.money import MAX_AMOUNT, check_amount, check_price
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.dids.models import Did, DidTarget, Hunting
from apps.peers.models import Gateway, Peer, SipAccount
from apps.tenancy.scope import Scope

DID_SETTINGS = (
    "number",
    "last_number",
    "supplier_id",
    "buy_monthly",
    "sell_monthly",
    "buy_per_minute",
    "sell_per_minute",
    "min_seconds",
    "increment_seconds",
    "hunting",
    "enabled",
    "description",
)
# What a reseller sets on its customers' DIDs: what the customer pays. The rest is what
# the operator bought (number, supplier, buy prices) or shared by both tariffs (min/increment).
RESELLER_SETTINGS = ("sell_monthly", "sell_per_minute", "hunting")
MONTHLY_PRICES = ("buy_monthly", "sell_monthly")
PER_MINUTE_PRICES = ("buy_per_minute", "sell_per_minute")
STOCK_HAS_NO_TARGETS = "A DID in stock has no targets: assign it to a customer first."
# A failover list longer than this would keep a caller waiting minutes before the last try.
MAX_TARGETS = 10
# Which fields of the DID each fee follows; the fee's name follows the number.
FEE_INPUTS = {
    "sell": ("sell_monthly", "number", "last_number"),
    "buy": ("buy_monthly", "supplier_id", "number", "last_number"),
}

# (a SIP account or gateway of the DID's customer, seconds before the next one or None)
Target = tuple[SipAccount | Gateway, int | None]


# Every write below ends with announce() (apps.core.changes): call control's snapshot holds
# the DIDs and their targets, and rebuilds from the announcement.


def _announce_did(did_id: int, *fields: str) -> None:
    announce("dids.Did", [did_id], fields=fields)


def _today() -> date:
    return timezone.localdate()


# --- who may do what -------------------------------------------------------------------------


def _ensure_operator(actor: Scope, message: str) -> None:
    if not actor.is_operator:
        raise NotAllowed(message)


def _ensure_manages(actor: Scope, did: Did) -> None:
    """Refuse unless `actor` is the operator or the reseller of the DID's customer."""
    if actor.is_operator:
        return
    if did.customer_id is None:
        raise NotAllowed("Only the operator manages DIDs in stock.")
    ensure_manages(actor, did.customer.reseller_id)


def _ensure_may_route(actor: Scope, did: Did) -> None:
    """Refuse unless `actor` may say where the DID's calls go: its managers or its customer."""
    if actor.is_customer and did.customer_id is not None and actor.peer_id == did.customer_id:
        return
    _ensure_manages(actor, did)


def _check_settings(actor: Scope, changes: dict) -> None:
    if actor.is_operator:
        return
    if actor.is_customer:
        raise NotAllowed("Customers set only where the calls to their DIDs go.")
    for name in changes:
        if name not in RESELLER_SETTINGS:
            field = name.removesuffix("_id")
            raise NotAllowed(f"Only the operator sets {field.replace('_', ' ')}.", field=field)


def _check_prices(did: Did) -> None:
    for name in MONTHLY_PRICES:
        value = getattr(did, name)
        setattr(did, name, check_amount(value, field=name, maximum=MAX_AMOUNT, minimum=Decimal(0)))
    for name in PER_MINUTE_PRICES:
        setattr(did, name, check_price(getattr(did, name), field=name))


def _check_fields(did: Did) -> None:
    # Field by field first: Did.clean() counts a block's numbers with int(), which a number
    # with a letter in it would turn into a ValueError instead of a message on the field.
    did.clean_fields(exclude=["supplier", "customer", "buy_fee", "sell_fee"])


def _locked(did: Did) -> Did:
    return Did.objects.select_for_update().get(pk=did.pk)


# --- the DID itself --------------------------------------------------------------------------


@retry_on_conflict
def create_did(
    *,
    actor: Scope,
    number: str,
    customer: Peer | None = None,
    targets: Iterable[Target] = (),
    **settings,
) -> Did:
    """Put a number or a block of numbers in stock, or straight on `customer` with `targets`."""
    _ensure_operator(actor, "Only the operator adds DIDs.")
    targets = list(targets)
    if targets and customer is None:
        raise DomainError(STOCK_HAS_NO_TARGETS, field="targets")
    did = apply_changes(Did(number=number), settings, allowed=DID_SETTINGS)
    _check_prices(did)
    _check_fields(did)
    save_object(did, actor=actor, action="did.created")
    _sync_fees(did, actor=actor, sides=("buy",))
    _announce_did(did.pk)
    if customer is not None:
        _assign(did, customer, targets, actor=actor)
    return did


@retry_on_conflict
def update_did(did: Did, *, actor: Scope, changes: dict) -> Did:
    """Change a DID's number, supplier, prices or settings (not its customer or targets)."""
    _check_settings(actor, changes)
    current = _locked(did)
    _ensure_manages(actor, current)
    apply_changes(current, changes, allowed=DID_SETTINGS)
    _check_prices(current)
    _check_fields(current)
    save_object(current, actor=actor, action="did.changed")
    sides = [side for side, inputs in FEE_INPUTS.items() if any(name in changes for name in inputs)]
    _sync_fees(current, actor=actor, sides=sides)
    _announce_did(current.pk, *changes)
    return current


@retry_on_conflict
def delete_did(did: Did, *, actor: Scope) -> None:
    """Give a number in stock back to its supplier: its supplier's fee ends, the row goes."""
    _ensure_operator(actor, "Only the operator deletes DIDs.")
    current = _locked(did)
    if current.customer_id is not None:
        raise DomainError(
            f"{current} belongs to {current.customer}: release it to stock before deleting it.",
            field="customer",
        )
    if current.buy_fee_id is not None:
        _end_fee(current.buy_fee, actor=actor)
    target_ids = list(current.targets.values_list("pk", flat=True))
    audit.record(actor, "did.deleted", current)
    pk = current.pk
    current.delete()
    if target_ids:
        announce("dids.DidTarget", target_ids)
    _announce_did(pk)


# --- assignment ------------------------------------------------------------------------------


@retry_on_conflict
def assign_did(did: Did, customer: Peer, *, actor: Scope, targets: Iterable[Target] = ()) -> Did:
    """Give `did` to `customer`, its calls going to `targets` (replacing any earlier ones).

    The operator assigns from stock to anyone; a reseller moves a DID between its own
    customers. The customer's monthly fee starts today; a previous customer's ends.
    """
    current = _locked(did)
    if not actor.is_operator:
        _ensure_manages(actor, current)
        if customer.reseller_id != actor.reseller_id:
            raise NotAllowed("A DID is assigned to one of your own customers.", field="customer")
    _assign(current, customer, list(targets), actor=actor)
    return current


def _assign(current: Did, customer: Peer, targets: list[Target], *, actor: Scope) -> None:
    if customer.pk != current.customer_id:
        before = current.customer
        old_targets = list(current.targets.values_list("pk", flat=True))
        current.targets.all().delete()  # the previous customer's accounts and gateways
        if old_targets:
            announce("dids.DidTarget", old_targets)
        current.customer = customer
        current.full_clean()
        current.save(update_fields=["customer", "updated_at"])
        audit.record(actor, "did.assigned", current, before=str(before or ""), after=str(customer))
        _sync_fees(current, actor=actor, sides=("sell",))
        _announce_did(current.pk, "customer")
    _replace_targets(current, targets, actor=actor)


@retry_on_conflict
def release_did(did: Did, *, actor: Scope) -> Did:
    """Take `did` back to stock: its calls are refused, its targets go, its customer's fee ends."""
    current = _locked(did)
    _ensure_manages(actor, current)
    if current.customer_id is None:
        return current
    before = current.customer
    target_ids = list(current.targets.values_list("pk", flat=True))
    current.targets.all().delete()
    if target_ids:
        announce("dids.DidTarget", target_ids)
    current.customer = None
    current.save(update_fields=["customer", "updated_at"])
    audit.record(actor, "did.released", current, before=str(before))
    _sync_fees(current, actor=actor, sides=("sell",))
    _announce_did(current.pk, "customer")
    return current


# --- targets ---------------------------------------------------------------------------------


@retry_on_conflict
def set_targets(did: Did, targets: Iterable[Target], *, actor: Scope, hunting: str | None = None) -> Did:
    """Send the calls to `did` to `targets`, tried in order: (SIP account or gateway, timeout);
    with `hunting` "all", its SIP accounts ring at once (Did.hunting).

    An empty list leaves the DID without targets: its calls are refused.
    """
    current = _locked(did)
    _ensure_may_route(actor, current)
    _replace_targets(current, list(targets), actor=actor)
    if hunting is not None and hunting != current.hunting:
        if hunting not in Hunting.values:
            raise DomainError(f"Hunting is one of {', '.join(Hunting.values)}.", field="hunting")
        before = current.hunting
        current.hunting = hunting
        Did.objects.filter(pk=current.pk).update(hunting=hunting)
        audit.record(actor, "did.changed", current, before={"hunting": before}, after={"hunting": hunting})
        _announce_did(current.pk, "hunting")
    return current


def _replace_targets(current: Did, targets: list[Target], *, actor: Scope) -> None:
    rows = _target_rows(current, targets)
    existing = list(current.targets.all())
    if _shape(existing) == _shape(rows):
        return
    current.targets.all().delete()
    for row in rows:
        row.save()
    audit.record(
        actor,
        "did.targets_set",
        current,
        before=[str(row) for row in existing],
        after=[str(row) for row in rows],
    )
    announce("dids.DidTarget", [row.pk for row in existing] + [row.pk for row in rows])
    _announce_did(current.pk, "targets")


def _shape(rows) -> list[tuple]:
    return [(row.sip_account_id, row.gateway_id, row.setup_timeout) for row in rows]


def _target_rows(did: Did, targets: list[Target]) -> list[DidTarget]:
    """Validated DidTarget rows of `targets`, or a ValidationError on `targets` naming each one."""
    if targets and did.customer_id is None:
        raise DomainError(STOCK_HAS_NO_TARGETS, field="targets")
    if len(targets) > MAX_TARGETS:
        raise DomainError(f"At most {MAX_TARGETS} targets.", field="targets")
    rows, errors, seen = [], [], {}
    for position, (target, setup_timeout) in enumerate(targets):
        label = f"Target {position + 1}"
        row = DidTarget(did=did, position=position, setup_timeout=setup_timeout)
        if isinstance(target, SipAccount):
            row.sip_account = target
        elif isinstance(target, Gateway):
            row.gateway = target
        else:
            errors.append(f"{label}: choose a SIP account or a gateway.")
            continue
        if setup_timeout is not None and not 1 <= setup_timeout <= 300:
            errors.append(f"{label}: a setup timeout is between 1 and 300 seconds.")
            continue
        key = (row.sip_account_id, row.gateway_id)
        if key in seen:
            errors.append(f"{label}: {target} is already target {seen[key]}.")
            continue
        seen[key] = position + 1
        try:
            row.full_clean(exclude=["did"])
        except ValidationError as exc:
            errors.extend(f"{label}: {message}" for message in exc.messages)
            continue
        rows.append(row)
    if errors:
        raise ValidationError({"targets": errors})
    return rows


# --- monthly fees ----------------------------------------------------------------------------


def _sync_fees(did: Did, *, actor: Scope, sides: Iterable[str]) -> None:
    """Make the DID's fees on `sides` ("sell", "buy") match who pays and how much."""
    links = {}
    for side in sides:
        fee_id = getattr(did, f"{side}_fee_id")
        kept = _sync_fee(did, side, actor=actor)
        if kept != fee_id:
            links[f"{side}_fee_id"] = kept
    if links:
        Did.objects.filter(pk=did.pk).update(**links)
        for name, value in links.items():
            setattr(did, name, value)


def _sync_fee(did: Did, side: str, *, actor: Scope) -> int | None:
    """Return the id of the fee `side` of `did` should link to, after adding or changing it."""
    payer = did.customer if side == "sell" else did.supplier
    amount = getattr(did, f"{side}_monthly")
    fee = RecurringFee.objects.filter(pk=getattr(did, f"{side}_fee_id")).select_related("account").first()
    wanted = payer is not None and amount > 0
    starts_on = _today()
    if fee is not None and fee.ends_on is not None:
        # Ended by hand in the billing admin: a new fee takes over from the day after.
        starts_on = max(starts_on, fee.ends_on + timedelta(days=1))
        fee = None
    if fee is not None and (not wanted or fee.account.peer_id != payer.pk):
        _end_fee(fee, actor=actor)
        fee = None
    if not wanted:
        return None
    name = f"DID {did}"
    if fee is None:
        fee = fees.add_fee(
            payer.account,
            actor=actor,
            name=name,
            amount=amount,
            period=RecurringFee.Period.MONTHLY,
            starts_on=starts_on,
        )
    elif fee.amount != amount or fee.name != name:
        # A new amount applies from the next period not charged yet (change_fee).
        fees.change_fee(fee, actor=actor, changes={"amount": amount, "name": name})
    return fee.pk


def _end_fee(fee: RecurringFee, *, actor: Scope) -> None:
    """Stop charging `fee`: today, or the last day of the period already charged if later."""
    ends_on = max(_today(), _charged_through(fee) or fee.starts_on)
    if fee.ends_on is not None and fee.ends_on <= ends_on:
        return  # it stops by then already
    fees.end_fee(fee, actor=actor, ends_on=ends_on)


def _charged_through(fee: RecurringFee) -> date | None:
    """The last day of the latest period of `fee` on the ledger, or None."""
    last_posted = fees.last_posted_day(fee)
    if last_posted is None:
        return None
    return fees.periods_due(fee, last_posted)[-1].last_day
