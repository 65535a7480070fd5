"""Money held by live calls: reserve when call control grants a call, release when it is over.

This is call control's one database round trip, so it speaks SQL through Django's
connection rather than building model instances: one transaction that locks the account
row, reads its money and live calls, writes the reservation and moves `Account.reserved`.

Why the account row is written: on one server the row lock serialises reservations, but
Galera does not share locks between nodes; it certifies write-sets at commit. Two nodes
reserving on one account at once both UPDATE this row, so the second commit fails with a
deadlock error and `retry_on_conflict` runs it again, now seeing the first reservation.
That is what keeps ten concurrent calls of an account with money for one minute to one
minute in total, on one node or across nodes.

No orphan money (docs/CALL_CONTROL.md, "A release before its reservation"): a release by
Call-ID that finds nothing leaves a `ReleaseMarker`, and a reservation asked for before that
marker was left is refused (`CallReleased`); a reservation with an answer deadline expires at
it unless OpenSIPS reports the answer (`mark_answered`).
"""

# ruff: noqa: S608 - table names come from the models; every value is a parameter.

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.billing.models import Account, ReleaseMarker, Reservation
from apps.bundles.models import Usage
from apps.bundles.offers import MINUTES, Offer, seconds_value
from apps.bundles.services.usage import ensure_usage
from apps.cdr import lost
from apps.core.db import retry_on_conflict, statement_transaction
from apps.core.errors import DomainError
from apps.core.models import money_from_db, money_to_db
from apps.core.money import MAX_BALANCE
from apps.rates.tariffs import Tariff, affordable_duration, rate_call

_ACCOUNT = Account._meta.db_table
_RESERVATION = Reservation._meta.db_table
_MARKER = ReleaseMarker._meta.db_table
_USAGE = Usage._meta.db_table
_PEER = Reservation._meta.get_field("customer").related_model._meta.db_table

# LOCK ORDER. Reservations (by id) before bundles' usage rows (by id, apps.bundles) before
# accounts (by id), and each account row held for
# as short a time as possible: it is the one row every call of a busy customer writes, so
# the round trips between its update and the commit are what limit that customer's calls a
# second. A reservation has no foreign key to its account in the database (see the model):
# InnoDB would share-lock the account row to check it on every insert and every change of
# `released_at` (an index holding the account), which queued each reservation behind the
# account's writer, and made two releases of one account deadlock (issue 13).

# How long a release that found nothing keeps refusing the reservation it overtook: far
# longer than any authorize can still be running (OpenSIPS waits 2 s), short enough that
# the table stays small.
MARKER_LIFE = timedelta(minutes=10)


class InsufficientFunds(DomainError):
    """The account's available money does not pay for the first billable period."""


class SpendLimitReached(InsufficientFunds):
    """A daily or monthly spend limit (the customer's or its reseller's) leaves nothing for a call."""


class TooManyCalls(DomainError):
    """The customer already has as many live calls as its limit allows."""


class CallReleased(DomainError):
    """OpenSIPS released the call while its reservation was being made: nothing is held."""


@dataclass(frozen=True, slots=True)
class Grant:
    reservation_id: int | None  # None when only looked at (check routing)
    seconds: int
    amount: Decimal
    # Before this call; None when the whole call was reserved without reading them (the
    # account had the money for the maximum duration and no limit of live calls).
    available: Decimal | None
    live_calls: int | None
    limited_by: str = ""  # the spend limit that capped the call ("" when its money did)
    bundle: str = ""  # what a bundle of the customer's had left for it, as check routing shows it


@dataclass(frozen=True, slots=True)
class Hold:
    """What a reservation asks for: the call, its tariff and where it is going."""

    account_id: int
    customer_id: int
    call_id: str
    tariff: Tariff
    ceiling: int
    grace: int
    max_calls: int | None = None
    node_id: int | None = None
    prefix: str = ""
    destination: str = ""
    route_id: int | None = None
    supplier_id: int | None = None
    # What the rater charges (docs/BILLING.md): the number priced, the sell tariff, and the
    # buy tariff of each supplier offered as (prefix, tariff) by supplier id.
    callee: str | None = None
    sell_tariff: Tariff | None = None
    buy_tariffs: dict[int, tuple[str, Tariff]] = field(default_factory=dict)
    # Seconds the call has to be answered (`answer_within`); None: no deadline before the
    # maximum duration. Only for nodes whose OpenSIPS reports the answer (`mark_answered`).
    answer_within: int | None = None
    caller: str | None = None
    # Spend limits (docs/FRAUD.md): the customer's day and month (its first day) on its own
    # clock when its account or its reseller has a limit, else None (no limit is read); the
    # reseller's (daily, monthly, its customers' account ids) when the reseller has one.
    spend_day: date | None = None
    spend_month: date | None = None
    reseller_limits: tuple | None = None
    # The customer's bundle that covers the call (apps.bundles.offers.Offer), and the day of
    # the call on the customer's clock, which names the bundle's period.
    bundle: Offer | None = None
    bundle_day: date | None = None


def answer_within(setup_timeouts: list[int | None], *, ringing: int, margin: int) -> int:
    """Seconds within which a call offered to these routes is answered or has failed.

    Each attempt waits for a first reply at most its setup timeout, and once it rings at
    most `ringing` (OpenSIPS's fr_inv_timeout), after which the attempt fails over or the
    call ends: the sum over the attempts of the longer of the two, plus `margin`.
    """
    return sum(max(timeout or 0, ringing) for timeout in setup_timeouts) + margin


def tariff_json(prefix: str, tariff: Tariff) -> dict:
    """A tariff as a reservation carries it: amounts as strings, exact."""
    return {
        "prefix": prefix,
        "price": str(tariff.price),
        "fee": str(tariff.connection_fee),
        "min": tariff.min_seconds,
        "inc": tariff.increment_seconds,
        "free": tariff.free_seconds,
    }


def tariff_from_json(data: dict) -> Tariff:
    """The Tariff of `tariff_json`; ValueError, TypeError or KeyError if it is not one."""
    return Tariff(
        Decimal(data["price"]), Decimal(data["fee"]), int(data["min"]), int(data["inc"]), int(data["free"])
    )


def _json_param(name: str, value: dict | None):
    # As the field adapts it: a JSON string on MariaDB and SQLite, jsonb on PostgreSQL.
    return Reservation._meta.get_field(name).get_db_prep_save(value, connection)


def _decided_params(hold: Hold) -> list:
    sell = buy = None
    if hold.sell_tariff is not None:
        sell = tariff_json(hold.prefix, hold.sell_tariff)
        buy = {
            str(supplier): tariff_json(prefix, tariff)
            for supplier, (prefix, tariff) in hold.buy_tariffs.items()
        }
    return [
        None if hold.callee is None else hold.callee[:64],
        _json_param("sell_tariff", sell),
        _json_param("buy_tariffs", buy),
    ]


def _decimal(value) -> Decimal:
    # A money column as stored (integer micro-units on SQLite), read as the ORM reads it.
    return money_from_db(value)


def _money_param(value: Decimal):
    return money_to_db(value)


def _datetime_param(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _available(mode: str, balance: Decimal, credit_limit: Decimal, reserved: Decimal) -> Decimal:
    spendable = balance + (credit_limit if mode == Account.Mode.POSTPAID else 0)
    return spendable - reserved


@dataclass(frozen=True, slots=True)
class Headroom:
    """What a spend limit leaves for new calls: the limit less what was spent and is held."""

    left: Decimal
    name: str  # "daily spend limit", "reseller's monthly spend limit"
    detail: str


def _read_account(cursor, hold: Hold, *, lock: bool) -> tuple[Decimal, int, int | None, Headroom | None]:
    """(available, live calls, id of an active reservation of this Call-ID, the tightest
    spend limit's headroom or None) of the account."""
    lock_clause = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    spend, params = "", [hold.call_id]
    if hold.spend_day is not None:
        # Counters of an earlier day or month are worth nothing today (docs/FRAUD.md).
        spend = (
            ", a.daily_spend_limit, a.monthly_spend_limit,"
            " CASE WHEN a.spent_day_of = %s THEN a.spent_day ELSE 0 END,"
            " CASE WHEN a.spent_month_of = %s THEN a.spent_month ELSE 0 END"
        )
        params += [_date_param(hold.spend_day), _date_param(hold.spend_month)]
    cursor.execute(
        f"SELECT a.mode, a.balance, a.credit_limit, a.reserved,"
        f" (SELECT COUNT(*) FROM {_RESERVATION} r"
        f"   WHERE r.account_id = a.id AND r.released_at IS NULL),"
        f" (SELECT MIN(r.id) FROM {_RESERVATION} r"
        f"   WHERE r.account_id = a.id AND r.released_at IS NULL AND r.call_id = %s){spend}"
        f" FROM {_ACCOUNT} a WHERE a.id = %s{lock_clause}",
        [*params, hold.account_id],
    )
    row = cursor.fetchone()
    if row is None:
        raise InsufficientFunds("The customer has no account.")
    mode, balance, credit_limit, reserved, live_calls, existing, *limits = row
    reserved = _decimal(reserved)
    available = _available(mode, _decimal(balance), _decimal(credit_limit), reserved)
    headroom = None
    if limits:
        daily, monthly, spent_day, spent_month = (None if v is None else _decimal(v) for v in limits)
        headroom = _tightest(
            [
                _headroom("daily spend limit", daily, spent_day, reserved, "today"),
                _headroom("monthly spend limit", monthly, spent_month, reserved, "this month"),
                *_reseller_headroom(cursor, hold),
            ]
        )
    return available, live_calls, existing, headroom


def _headroom(
    name: str, limit: Decimal | None, spent: Decimal, reserved: Decimal, when: str
) -> Headroom | None:
    if limit is None:
        return None
    return Headroom(
        limit - spent - reserved,
        name,
        f"{name} {limit}: {spent} spent {when}, {reserved} held by live calls",
    )


def _reseller_headroom(cursor, hold: Hold) -> list[Headroom | None]:
    """The reseller's limits against all its customers' spending (one query, only when it has one).

    The sums add amounts of the customers' accounts as they are: one currency is assumed
    (the reseller's), and each customer's day is its own. The reseller's own account with
    the operator bounds what its customers' live calls hold together: its balance and
    credit, less their reservations. Those are at the customers' prices, more than the
    reseller pays when it sells at a margin: the bound errs on the operator's side. It is
    read, not locked (as the spend limits are): two calls authorized at once on two nodes
    may both take the last of it, by a call's worth.
    """
    if not hold.reseller_limits:
        return []
    daily, monthly, account_ids, credit_account_id = hold.reseller_limits
    if not account_ids:
        return []
    credit = "NULL, NULL, NULL"
    params = [_date_param(hold.spend_day), _date_param(hold.spend_month)]
    if credit_account_id is not None:
        credit = (
            f"(SELECT mode FROM {_ACCOUNT} WHERE id = %s), (SELECT balance FROM {_ACCOUNT} WHERE id = %s),"
            f" (SELECT credit_limit FROM {_ACCOUNT} WHERE id = %s)"
        )
        params += [credit_account_id] * 3
    cursor.execute(
        f"SELECT SUM(CASE WHEN spent_day_of = %s THEN spent_day ELSE 0 END),"
        f" SUM(CASE WHEN spent_month_of = %s THEN spent_month ELSE 0 END), SUM(reserved), {credit}"
        f" FROM {_ACCOUNT} WHERE id IN ({', '.join(['%s'] * len(account_ids))})",
        [*params, *account_ids],
    )
    # The limits come from the snapshot (the ORM); the sums are raw column values.
    spent_day, spent_month, reserved, mode, balance, credit_limit = cursor.fetchone()
    spent_day, spent_month, reserved = (_decimal(value or 0) for value in (spent_day, spent_month, reserved))
    headrooms = [
        _headroom("reseller's daily spend limit", daily, spent_day, reserved, "today"),
        _headroom("reseller's monthly spend limit", monthly, spent_month, reserved, "this month"),
    ]
    if mode is not None:
        spendable = _available(mode, _decimal(balance), _decimal(credit_limit), Decimal(0))
        headrooms.append(
            Headroom(
                spendable - reserved,
                "reseller's credit",
                f"reseller's account with us: {spendable} to spend, "
                f"{reserved} held by its customers' live calls",
            )
        )
    return headrooms


def _tightest(headrooms: list[Headroom | None]) -> Headroom | None:
    found = [h for h in headrooms if h is not None]
    return min(found, key=lambda h: h.left) if found else None


def _date_param(value: date):
    return connection.ops.adapt_datefield_value(value)


def _decide(
    hold: Hold, available: Decimal, live_calls: int, headroom: Headroom | None = None
) -> tuple[int, Decimal, str]:
    """(seconds, amount, the spend limit that capped them or "")."""
    if hold.max_calls is not None and live_calls >= hold.max_calls:
        raise TooManyCalls(f"{live_calls} live calls, the limit is {hold.max_calls}.")
    limited_by = ""
    if headroom is not None and headroom.left < available:
        granted = affordable_duration(hold.tariff, max(headroom.left, Decimal(0)), ceiling=hold.ceiling)
        if granted is None:
            raise SpendLimitReached(f"The {headroom.detail}.")
        whole = affordable_duration(hold.tariff, available, ceiling=hold.ceiling)
        if whole is not None and whole[0] > granted[0]:
            limited_by = headroom.name
        return (*granted, limited_by)
    granted = affordable_duration(hold.tariff, available, ceiling=hold.ceiling)
    if granted is None:
        raise InsufficientFunds(f"Available {available} does not pay for the first billable period.")
    return (*granted, limited_by)


def _call_control_budget() -> float:
    return settings.CALL_CONTROL_RETRY_BUDGET


@retry_on_conflict(own_transactions=True, budget=_call_control_budget)
def reserve(hold: Hold, *, now: datetime | None = None) -> Grant:
    """Hold the money of the longest call the account can pay for, and return the grant.

    Asking again for a Call-ID that already holds money on the account returns that
    reservation (OpenSIPS may retry a request whose answer it did not get).

    Most calls of a busy account take the short way: an account that has the money for a
    call of the maximum duration and no limit of live calls gets it with the reservation's
    insert (which checks the release marker) and then the account's conditional update
    (which checks the money on the locked row), the commit right after it; on MariaDB the
    three are one stored procedure, one round trip (billing 0014). Anything else, or a
    short way that did not apply, takes the long way in a transaction of its own: the
    account read under its lock, then decided in Python.
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        grant = _reserve_whole_call(cursor, hold, now)
        if grant is None:
            # A call a bundle covers counts on what the bundle has left only when the money
            # does not pay for the whole call: that is read and held under the lock of the
            # bundle period's usage row (made here, before the transaction). A customer with
            # the money takes the short way, and the rater still takes the call off the bundle.
            usage_id = None if hold.bundle is None else ensure_usage(hold.bundle, hold.bundle_day)
            with statement_transaction():
                grant = _reserve_what_is_left(cursor, hold, now, usage_id)
    return grant


def _reserve_whole_call(cursor, hold: Hold, now: datetime) -> Grant | None:
    """The short way: the maximum duration, if the account pays for it. None: take the long way."""
    if hold.max_calls is not None:
        # A live-call limit is counted exactly under the lock, on the long way.
        return None
    whole = _whole_call(hold.tariff, hold.ceiling)
    if whole is None or whole[0] != hold.ceiling:
        return None
    seconds, amount = whole
    if hold.reseller_limits:
        # What the reseller's limits and credit leave is a sum over other accounts, read
        # without their locks on either way: read it first, and take the long way only
        # when it does not pay for the whole call (the customer's own lock is not held
        # meanwhile, so a reseller's busy customer does not queue on its account row).
        tightest = _tightest(_reseller_headroom(cursor, hold))
        if tightest is not None and tightest.left < amount:
            return None
    if connection.vendor == "mysql":
        spend = [None, None] if hold.spend_day is None else [hold.spend_day, hold.spend_month]
        reservation_id = _call(
            cursor,
            "billing_reserve_whole_call",
            [*_insert_values(hold, now, seconds, amount), Account.Mode.POSTPAID, *map(_date_param, spend)],
        )
    else:
        with statement_transaction():
            reservation_id = _reserve_whole_call_in_statements(cursor, hold, now, seconds, amount)
    if reservation_id is None:
        return None  # a retried Call-ID, a release marker, or less money: the long way tells
    return Grant(reservation_id, seconds, amount, None, None)


@functools.lru_cache(maxsize=4096)
def _whole_call(tariff: Tariff, ceiling: int) -> tuple[int, Decimal] | None:
    """(seconds, cost) of the longest call `tariff` bills up to `ceiling`, money no object.

    The same few tariffs price almost every call, and exact arithmetic on fractions is a
    good part of an authorization's CPU: remembered per (tariff, ceiling).
    """
    return affordable_duration(tariff, Decimal(MAX_BALANCE), ceiling=ceiling)


def _reserve_whole_call_in_statements(
    cursor, hold: Hold, now: datetime, seconds: int, amount: Decimal
) -> int | None:
    """The short way as billing_reserve_whole_call does it, in the caller's transaction."""
    reservation_id = _insert(cursor, hold, now, seconds, amount, short=True)
    if reservation_id is None:
        return None
    money = _money_param(amount)
    limits, params = "", []
    if hold.spend_day is not None:
        # The account's own spend limits, checked by the same statement: what each leaves
        # (the limit less today's or this month's spending and what live calls hold) pays
        # for the whole call. Near a limit the long way cuts the call to what is left.
        limits = (
            " AND (daily_spend_limit IS NULL"
            "  OR daily_spend_limit - CASE WHEN spent_day_of = %s THEN spent_day ELSE 0 END - reserved >= %s)"
            " AND (monthly_spend_limit IS NULL OR monthly_spend_limit"
            "  - CASE WHEN spent_month_of = %s THEN spent_month ELSE 0 END - reserved >= %s)"
        )
        params = [_date_param(hold.spend_day), money, _date_param(hold.spend_month), money]
    cursor.execute(
        f"UPDATE {_ACCOUNT} SET reserved = reserved + %s WHERE id = %s"
        f" AND balance + CASE WHEN mode = %s THEN credit_limit ELSE 0 END - reserved >= %s{limits}",
        [money, hold.account_id, Account.Mode.POSTPAID, money, *params],
    )
    if cursor.rowcount != 1:
        # Less money or spend limit than that (or no account): undo the insert.
        cursor.execute(f"DELETE FROM {_RESERVATION} WHERE id = %s", [reservation_id])
        return None
    return reservation_id


def _call(cursor, procedure: str, params: list):
    """CALL a stored procedure of billing 0014; the one value it selects."""
    cursor.execute(f"CALL {procedure}({', '.join(['%s'] * len(params))})", params)
    value = cursor.fetchone()[0]
    while cursor.nextset():  # the CALL's own status follows its result
        pass
    return value


def _reserve_what_is_left(cursor, hold: Hold, now: datetime, usage_id: int | None = None) -> Grant:
    """The long way: read the account under its lock and grant what its money pays for,
    and what the bundle's period (`usage_id`, locked first: LOCK ORDER) has left."""
    bundle = None if usage_id is None else _bundle_left(cursor, hold, usage_id, lock=True)
    available, live_calls, existing, headroom = _read_account(cursor, hold, lock=True)
    if existing is not None:
        cursor.execute(f"SELECT amount, max_duration FROM {_RESERVATION} WHERE id = %s", [existing])
        amount, seconds = cursor.fetchone()
        return Grant(existing, seconds, _decimal(amount), available + _decimal(amount), live_calls - 1)
    seconds, amount, limited_by, held = _decide_with_bundle(hold, available, live_calls, headroom, bundle)
    cursor.execute(
        f"UPDATE {_ACCOUNT} SET reserved = reserved + %s WHERE id = %s",
        [_money_param(amount), hold.account_id],
    )
    reservation_id = _insert(cursor, hold, now, seconds, amount, short=False, bundle=held)
    if reservation_id is None:
        # Raising rolls back the account's update too: nothing was ever held.
        raise CallReleased(f"Call {hold.call_id} was released before its reservation was made.")
    if held is not None:
        # A write to the period's row: two nodes holding the last of it at once conflict in
        # Galera's certification (row locks are not shared between nodes), and one decides again.
        cursor.execute(f"UPDATE {_USAGE} SET authorized = authorized + 1 WHERE id = %s", [usage_id])
    return Grant(
        reservation_id,
        seconds,
        amount,
        _shown(available, headroom),
        live_calls,
        limited_by,
        "" if bundle is None else bundle.describe(),
    )


@dataclass(frozen=True, slots=True)
class BundleLeft:
    """What a bundle's period has for a call: its included seconds or money less what calls
    used and what live calls hold, and what that is worth to this call in money."""

    usage_id: int | None
    offer: Offer
    seconds: int
    money: Decimal
    value: Decimal

    def describe(self) -> str:
        left = f"{self.seconds} s" if self.offer.kind == MINUTES else f"{self.money}"
        return f"bundle {self.offer.name}: {left} left"


def _bundle_left(cursor, hold: Hold, usage_id: int | None, *, lock: bool) -> BundleLeft:
    offer = hold.bundle
    if usage_id is None:  # check routing, before the period's first call: nothing used yet
        seconds, money_left = offer.included(*offer.period_of(hold.bundle_day))
    else:
        lock_clause = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
        cursor.execute(
            f"SELECT included_seconds, included_money, used_seconds, used_money"
            f" FROM {_USAGE} WHERE id = %s{lock_clause}",
            [usage_id],
        )
        included_seconds, included_money, used_seconds, used_money = cursor.fetchone()
        cursor.execute(
            f"SELECT COALESCE(SUM(bundle_seconds), 0), COALESCE(SUM(bundle_money), 0)"
            f" FROM {_RESERVATION} WHERE bundle_usage_id = %s AND released_at IS NULL",
            [usage_id],
        )
        held_seconds, held_money = cursor.fetchone()
        # int(): MariaDB sums integers as DECIMAL.
        seconds = max(included_seconds - used_seconds - int(held_seconds), 0)
        money_left = max(_decimal(included_money) - _decimal(used_money) - _decimal(held_money), Decimal(0))
    if offer.kind == MINUTES:
        return BundleLeft(usage_id, offer, seconds, Decimal(0), seconds_value(hold.tariff.price, seconds))
    return BundleLeft(usage_id, offer, 0, money_left, money_left)


def _decide_with_bundle(
    hold: Hold, available: Decimal, live_calls: int, headroom: Headroom | None, bundle: BundleLeft | None
) -> tuple[int, Decimal, str, tuple[int, int, Decimal] | None]:
    """`_decide` counting what the bundle has left as money the call may spend first;
    (seconds, money to hold, limit that capped them, (usage id, seconds, money) the call
    holds of the bundle or None)."""
    if bundle is None or bundle.value <= 0:
        return (*_decide(hold, available, live_calls, headroom), None)
    if headroom is not None:  # a spend limit bounds money spent: the bundle's is not
        headroom = dataclasses.replace(headroom, left=headroom.left + bundle.value)
    seconds, cost, limited_by = _decide(hold, available + bundle.value, live_calls, headroom)
    counted = min(bundle.value, cost)
    if bundle.offer.kind == MINUTES:
        held = (
            bundle.usage_id,
            min(bundle.seconds, rate_call(hold.tariff, seconds * 1000).seconds),
            Decimal(0),
        )
    else:
        held = (bundle.usage_id, 0, counted)
    return seconds, cost - counted, limited_by, held


def _shown(available: Decimal, headroom: Headroom | None) -> Decimal:
    """What the call could spend: the money, or less when a spend limit leaves less."""
    return available if headroom is None else min(available, max(headroom.left, Decimal(0)))


def _insert_values(hold: Hold, now: datetime, seconds: int, amount: Decimal) -> list:
    """The reservation's values, in the order of `_insert`'s columns and the procedure's parameters."""
    if hold.answer_within is None:
        expires_at = now + timedelta(seconds=seconds + hold.grace)
    else:
        expires_at = now + timedelta(seconds=min(hold.answer_within, seconds + hold.grace))
    return [
        hold.account_id,
        hold.customer_id,
        hold.node_id,
        hold.call_id,
        _money_param(amount),
        seconds,
        hold.prefix,
        hold.destination[:100],
        hold.route_id,
        hold.supplier_id,
        *_decided_params(hold),
        None if hold.caller is None else hold.caller[:64],
        _datetime_param(now),
        _datetime_param(expires_at),
    ]


def _insert(
    cursor,
    hold: Hold,
    now: datetime,
    seconds: int,
    amount: Decimal,
    *,
    short: bool,
    bundle: tuple | None = None,
) -> int | None:
    """Insert the reservation; its id, or None if it must not be made.

    On a node, the insert is also the check of the release marker: nothing is inserted if
    OpenSIPS released the Call-ID after this request was made (`release_or_mark` looks
    again after leaving its marker, so the check is as late as the transaction allows). On
    the short way nothing is inserted either if the account already holds money for the
    Call-ID (the long way returns that reservation).
    """
    values = _insert_values(hold, now, seconds, amount)
    names = (
        "account_id, customer_id, node_id, call_id, amount, max_duration, prefix, destination,"
        " route_id, supplier_id, callee, sell_tariff, buy_tariffs, caller, created_at, expires_at"
    )
    placeholders = ", ".join(["%s"] * len(values))
    if bundle is not None:  # (usage id, seconds, money) the call holds of a bundle's period
        usage_id, bundle_seconds, bundle_money = bundle
        names += ", bundle_usage_id, bundle_seconds, bundle_money"
        placeholders += ", %s, %s, %s"
        values += [usage_id, bundle_seconds, _money_param(bundle_money)]
    columns = f"INSERT INTO {_RESERVATION} ({names}, outcome, cut_result)"
    placeholders += ", '', ''"
    conditions, params = [], []
    if hold.node_id is not None:
        conditions.append(
            f"NOT EXISTS (SELECT 1 FROM {_MARKER} WHERE call_id = %s AND node_id = %s AND created_at >= %s)"
        )
        params += [hold.call_id, hold.node_id, _datetime_param(now)]
    if short:
        conditions.append(
            f"NOT EXISTS (SELECT 1 FROM {_RESERVATION} r"
            "  WHERE r.account_id = %s AND r.released_at IS NULL AND r.call_id = %s)"
        )
        params += [hold.account_id, hold.call_id]
    if not conditions:
        cursor.execute(f"{columns} VALUES ({placeholders}) RETURNING id", values)
        return cursor.fetchone()[0]
    dual = " FROM DUAL" if connection.vendor == "mysql" else ""
    cursor.execute(
        f"{columns} SELECT {placeholders}{dual} WHERE {' AND '.join(conditions)} RETURNING id",
        [*values, *params],
    )
    row = cursor.fetchone()
    return None if row is None else row[0]


def estimate(hold: Hold) -> Grant:
    """What `reserve` would grant now, without holding anything (check routing)."""
    bundle = None
    with connection.cursor() as cursor:
        if hold.bundle is not None:
            start, _ = hold.bundle.period_of(hold.bundle_day)
            usage_id = Usage.objects.filter(subscription_id=hold.bundle.subscription_id, period_start=start)
            bundle = _bundle_left(cursor, hold, usage_id.values_list("pk", flat=True).first(), lock=False)
        available, live_calls, _existing, headroom = _read_account(cursor, hold, lock=False)
    seconds, amount, limited_by, _held = _decide_with_bundle(hold, available, live_calls, headroom, bundle)
    shown = _shown(available, headroom)
    return Grant(
        None, seconds, amount, shown, live_calls, limited_by, "" if bundle is None else bundle.describe()
    )


def recent_calls(
    number: str,
    *,
    caller: bool,
    since: datetime,
    customer_id: int | None = None,
    reseller_id: int | None = None,
    call_id: str = "",
    up_to: int,
) -> int:
    """Calls reserved since `since` to this callee (or from this caller, `caller`): of one
    customer, of a reseller's customers, or of everyone (the repeated-number controller),
    counted up to `up_to` at most.

    One probe of the (callee or caller, created_at) index; the call asking is left out, so
    that a retried request does not count itself. The count stops at `up_to` (the
    controller's threshold): a number everyone calls (a call centre's, a televote's) would
    otherwise cost every call to it a read of every row of the window — at 200 calls/s to
    one number, 12,000 rows a call, and call control past OpenSIPS's timeout.
    """
    column = "caller" if caller else "callee"
    sql = f"SELECT 1 FROM {_RESERVATION} WHERE {column} = %s AND created_at >= %s AND call_id <> %s"
    params = [number[:64], _datetime_param(since), call_id]
    if customer_id is not None:
        sql += " AND customer_id = %s"
        params.append(customer_id)
    elif reseller_id is not None:
        sql += f" AND customer_id IN (SELECT id FROM {_PEER} WHERE reseller_id = %s)"
        params.append(reseller_id)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql} LIMIT %s) counted", [*params, up_to])
        return cursor.fetchone()[0]


@retry_on_conflict(own_transactions=True, budget=_call_control_budget)
def release(
    reservation_id: int, *, outcome: str, now: datetime | None = None, call_id: str | None = None
) -> bool:
    """Give a reservation's money back to its account; False if it was already released.

    With `call_id`, only if the reservation is that call's (OpenSIPS names both: a node
    cannot release another call's money by number). On MariaDB one stored procedure, one
    round trip (billing 0014).
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            return bool(
                _call(cursor, "billing_release", [reservation_id, call_id, outcome, _datetime_param(now)])
            )
        with statement_transaction():
            # Closing the reservation first makes two releases of it (the CDR's rating and
            # the expiry sweep, on two nodes) return the money once: the second updates no
            # row. The account comes last and is held until the commit only (LOCK ORDER).
            same_call = "" if call_id is None else " AND call_id = %s"
            cursor.execute(
                f"UPDATE {_RESERVATION} SET released_at = %s, outcome = %s"
                f" WHERE id = %s AND released_at IS NULL{same_call}",
                [_datetime_param(now), outcome, reservation_id, *([] if call_id is None else [call_id])],
            )
            if cursor.rowcount != 1:
                return False
            cursor.execute(f"SELECT account_id, amount FROM {_RESERVATION} WHERE id = %s", [reservation_id])
            account_id, amount = cursor.fetchone()
            cursor.execute(
                f"UPDATE {_ACCOUNT} SET reserved = reserved - %s WHERE id = %s",
                [_money_param(_decimal(amount)), account_id],
            )
    return True


def release_many(ids: list[int], *, outcome: str, now: datetime | None = None) -> int:
    """Release several reservations in the caller's transaction; how many were still held.

    The rater's form of `release`: `close_many`, then the accounts locked in account order
    like every other writer of accounts, and `give_back`.
    """
    back = close_many(ids, outcome=outcome, now=now)
    accounts = sorted(back)
    list(Account.objects.select_for_update().filter(pk__in=accounts).order_by("pk").values_list("pk"))
    give_back(back)
    return sum(count for count, _ in back.values())


Returned = dict[int, tuple[int, Decimal]]  # by account: (reservations, money) to give back


def close_many(ids: list[int], *, outcome: str, now: datetime | None = None) -> Returned:
    """Close the reservations among `ids` still open; (how many, money held) by account.

    Touches the reservations only: the caller gives the money back with `give_back` once
    it holds the accounts' locks (LOCK ORDER).
    """
    if not ids:
        return {}
    held = list(
        Reservation.objects.select_for_update()
        .filter(pk__in=ids, released_at__isnull=True)
        .order_by("pk")
        .values_list("pk", "account_id", "amount")
    )
    back: Returned = {}
    for _, account_id, amount in held:
        count, total = back.get(account_id, (0, Decimal(0)))
        back[account_id] = (count + 1, total + amount)
    if held:
        closed = Reservation.objects.filter(pk__in=[pk for pk, _, _ in held])
        closed.update(released_at=now or timezone.now(), outcome=outcome)
    return back


def give_back(back: Returned) -> None:
    """Take closed reservations' money (`close_many`) off their accounts' `reserved`.

    One statement for all the accounts; the caller holds their locks, taken in id order.
    """
    if not back:
        return
    accounts = sorted(back)
    params = [value for pk in accounts for value in (pk, _money_param(back[pk][1]))]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_ACCOUNT} SET reserved = reserved - CASE id"
            f" {' '.join(['WHEN %s THEN %s'] * len(accounts))} END"
            f" WHERE id IN ({', '.join(['%s'] * len(accounts))})",
            params + accounts,
        )


def lock_many(ids: list[int]) -> None:
    """Lock these reservations in the caller's transaction, before it locks their accounts.

    The rater locks the reservations of its batch first (LOCK ORDER) and closes them
    before it posts charges, which locks the accounts last.
    """
    list(Reservation.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))


def release_call(call_id: str, *, customer_id: int | None = None, outcome: str) -> int:
    """Release the active reservations of a Call-ID (of one customer if given); how many."""
    rows = Reservation.objects.active().filter(call_id=call_id)
    if customer_id is not None:
        rows = rows.filter(customer_id=customer_id)
    return sum(release(pk, outcome=outcome) for pk in rows.values_list("pk", flat=True))


def release_or_mark(call_id: str, *, node_id: int, outcome: str, now: datetime | None = None) -> int:
    """Release a Call-ID's active reservations; when there is none, refuse the one to come.

    OpenSIPS releases by Call-ID when call control's answer came too late or never; the
    reservation of that answer may still be on its way. The marker makes `reserve` refuse
    it. Looking again once the marker is committed catches a reservation that committed
    between the first look and the marker (it could not see the marker yet).
    """
    released = release_call(call_id, outcome=outcome)
    if released:
        return released
    ReleaseMarker.objects.create(node_id=node_id, call_id=call_id, created_at=now or timezone.now())
    return release_call(call_id, outcome=outcome)


@retry_on_conflict
def mark_answered(reservation_id: int, *, call_id: str, grace: int, now: datetime | None = None) -> bool:
    """Record that a call was answered: its money is held for its maximum duration from now.

    False when the reservation is not this Call-ID's, was already released, or was already
    answered (OpenSIPS may send the notice twice).
    """
    now = now or timezone.now()
    seconds = (
        Reservation.objects.active()
        .filter(pk=reservation_id, call_id=call_id, answered_at__isnull=True)
        .values_list("max_duration", flat=True)
        .first()
    )
    if seconds is None:
        return False
    return bool(
        Reservation.objects.active()
        .filter(pk=reservation_id, answered_at__isnull=True)
        .update(answered_at=now, expires_at=now + timedelta(seconds=seconds + grace))
    )


def expire_reservations(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Release reservations past their deadline with no CDR, and forget old markers; how many.

    One whose call its node recorded as answered leaves an estimated CDR (apps.cdr.lost).

    The deadline is the answer deadline of a call not (yet) reported answered, or the
    maximum duration and grace of one that was, or of one that had no answer deadline.
    """
    now = now or timezone.now()
    ReleaseMarker.objects.filter(created_at__lt=now - MARKER_LIFE).delete()
    expired = list(Reservation.objects.expired(now).order_by("expires_at")[:limit])
    for reservation in expired:
        # A call its node recorded as answered gets its estimated CDR (apps.cdr.lost).
        lost.estimate(reservation, now=now)
    return sum(release(r.pk, outcome=Reservation.Outcome.EXPIRED, now=now) for r in expired)
